"""TOPIC_PREFIX: a service publishes, consumes and dead-letters only under its prefix.

The fresh topics `t<hex>.events` and `t<hex>.events.dlq` are the canonical
`<hex>.events` and `<hex>.events.dlq` under the prefix `t`. A runtime with that
prefix, for events produced by `<hex>`, must find its whole traffic there: the
outbox rows keep the canonical name, the relay sends under the prefix, the consumer
reads under it, and a dead letter goes to the prefixed `.dlq` topic.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from services.reporting import deadletters
from shared import eventstore
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import Subscription
from shared.runtime import ServiceRuntime
from shared.settings import MatchingSettings
from shared.topics import prefixed, prefixed_all
from tests.integration.support import (
    TEST_TOPIC_PREFIX,
    CounterIncremented,
    FreshDatabase,
    FreshTopics,
    Infra,
    apply_counter,
    counter_model,
    headers_of,
    projection,
    read_topic,
    registry_for,
    topic_under_test,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_prefixed_names() -> None:
    assert prefixed("", "registration.events") == "registration.events"
    assert prefixed("test.", "registration.events") == "test.registration.events"
    assert prefixed_all("x.", ("a.events", "b.events")) == ("x.a.events", "x.b.events")
    assert topic_under_test("matching.events") == f"{TEST_TOPIC_PREFIX}matching.events"


def test_reporting_reads_the_dead_letters_of_its_own_prefix() -> None:
    def runtime(prefix: str) -> Any:
        return SimpleNamespace(settings=SimpleNamespace(topic_prefix=prefix))

    assert deadletters.topics_of(runtime("")) == deadletters.TOPICS
    assert "registration.events.dlq" in deadletters.TOPICS
    assert deadletters.topics_of(runtime("test.")) == tuple(
        f"test.{topic}" for topic in deadletters.TOPICS
    )


async def test_runtime_publishes_consumes_and_dead_letters_under_its_prefix(
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    kafka_admin: AIOKafkaAdminClient,
    tmp_path: Path,
) -> None:
    prefix, producer = topics.producer[:1], topics.producer[1:]
    canonical = f"{producer}.events"
    assert prefixed(prefix, canonical) == topics.events
    model = counter_model(producer)

    async def apply(conn: asyncpg.Connection, envelope: Envelope, payload: EventPayload) -> None:
        assert isinstance(payload, CounterIncremented)
        if payload.poison:
            raise ValueError("poison")
        await apply_counter(conn, envelope, payload)

    settings = MatchingSettings(
        kafka_bootstrap_servers=infra.bootstrap_servers,
        matching_database_url=database.dsn,
        otel_traces_exporter="none",
        consumer_group_suffix=f"-{topics.producer}",  # not the real matching group
        consumer_max_attempts=1,
        topic_prefix=prefix,
    )
    runtime = ServiceRuntime(
        "matching",
        settings,
        migrations=tmp_path,
        # Canonical names, as every service's bootstrap gives them.
        subscriptions=[Subscription((canonical,), {model.ce_type(): apply}, registry_for(model))],
    )
    good = Envelope.wrap(model(counter="prefixed", amount=2), key="k")
    bad = Envelope.wrap(model(counter="prefixed", poison=True), key="k")
    group = f"matching-{topics.producer}"
    labels = {"service": group, "topic": topics.events, "event_type": model.ce_type()}
    await runtime.start()
    try:
        # Metrics name the topics as read, prefix included: exported from the start.
        assert REGISTRY.get_sample_value("events_processed_total", labels) == 0
        async with database.pool.acquire() as conn, conn.transaction():
            await eventstore.append(conn, "prefix-1", 0, [good, bad])
        rows = await database.pool.fetch("SELECT topic FROM outbox")
        assert {r["topic"] for r in rows} == {canonical}  # the canonical name is stored

        async def projected() -> bool:
            return (await projection(database.pool)).get("prefixed") == 2

        await wait_until(projected, limit=30, what="the event consumed from the prefixed topic")

        async def dead_lettered() -> bool:
            return bool(await read_topic(infra.bootstrap_servers, topics.dlq))

        await wait_until(dead_lettered, limit=30, what="the poison on the prefixed .dlq topic")
    finally:
        await runtime.stop()

    published = await read_topic(infra.bootstrap_servers, topics.events)
    assert [headers_of(r)["ce_id"] for r in published] == [good.id, bad.id]
    (dead,) = await read_topic(infra.bootstrap_servers, topics.dlq)
    assert headers_of(dead)["ce_id"] == bad.id
    assert headers_of(dead)["dlq_original_topic"] == topics.events
    # Nothing went to (or asked for) the unprefixed names.
    assert not {canonical, f"{canonical}.dlq"} & set(await kafka_admin.list_topics())
    assert (REGISTRY.get_sample_value("events_processed_total", labels) or 0) >= 1
