"""The service runtime's warm-up: run once at start, before the consumers, never fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.contracts.registry import PayloadRegistry
from shared.inbox import Subscription
from shared.runtime import ServiceRuntime
from shared.settings import MatchingSettings
from tests.integration.support import FreshDatabase, FreshTopics, Infra

pytestmark = pytest.mark.integration


async def test_warm_up_runs_before_the_consumers_and_a_failing_one_is_not_fatal(
    infra: Infra, database: FreshDatabase, topics: FreshTopics, tmp_path: Path
) -> None:
    settings = MatchingSettings(
        kafka_bootstrap_servers=infra.bootstrap_servers,
        matching_database_url=database.dsn,
        otel_traces_exporter="none",
        consumer_group_suffix=f"-{topics.producer}",  # not the real matching group
    )
    seen: list[str] = []

    async def failing(runtime: ServiceRuntime) -> None:
        seen.append("failing")
        raise RuntimeError("cache unavailable")

    async def recording(runtime: ServiceRuntime) -> None:
        seen.append(f"recording with {len(runtime.consumers)} consumers started")
        assert await runtime.pool.fetchval("SELECT 1") == 1  # the database is there already

    runtime = ServiceRuntime(
        "matching",
        settings,
        migrations=tmp_path,
        subscriptions=[Subscription((topics.events,), {}, PayloadRegistry())],
        warm_up=[failing, recording],
    )
    await runtime.start()
    try:
        assert seen == ["failing", "recording with 0 consumers started"]
        assert len(runtime.consumers) == 1
        assert all((await runtime.readiness()).values())
    finally:
        await runtime.stop()
