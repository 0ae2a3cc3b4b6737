"""Webhook endpoints from before they were events (a plain table, secrets in clear) are
recorded as events when the service starts (real PostgreSQL): migration 004 keeps them
aside, `commands.upgrade_legacy_webhooks` records each (removed too if it was stopped)
with its id, time, URL and secret sealed, and drops the table of secrets in clear."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.notification import commands, views
from services.notification.rebuild import PLAN
from shared.db import migrate
from tests.integration.support import Infra, fresh_databases

pytestmark = pytest.mark.integration

EVENT = "ev-upgrade"
BEFORE = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
async def pool(infra: Infra, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    name = f"test_webhook_upgrade_{datetime.now():%H%M%S%f}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        created = await asyncpg.create_pool(dsns[name], min_size=1, max_size=2)
        assert created is not None
        try:
            # The schema as it stood before 004 (same migration names, so 004 comes next).
            before = tmp_path / PLAN.migrations.parent.name / PLAN.migrations.name
            before.mkdir(parents=True)
            for path in sorted(PLAN.migrations.glob("00[1-3]_*.sql")):
                shutil.copy(path, before / path.name)
            await migrate(created, before)
            yield created
        finally:
            await created.close()


async def test_endpoints_of_before_become_events_and_their_clear_secrets_go(
    pool: asyncpg.Pool,
) -> None:
    kept, stopped = str(uuid.uuid4()), str(uuid.uuid4())
    async with pool.acquire() as conn:
        for ident, active, at in ((kept, True, BEFORE), (stopped, False, BEFORE + timedelta(1))):
            await conn.execute(
                "INSERT INTO webhook_endpoints (endpoint_id, event_id, url, kinds, secret,"
                " created_by, active, created_at) VALUES ($1, $2, $3, $4, $5, 'organiser:o',"
                " $6, $7)",
                ident,
                EVENT,
                f"https://hooks.example/{ident}",
                ["meeting.placed"],
                f"whsec_{ident}",
                active,
                at,
            )
    await migrate(pool, PLAN.migrations)
    async with pool.acquire() as conn:
        assert await commands.upgrade_legacy_webhooks(conn) == 2
        assert await commands.upgrade_legacy_webhooks(conn) == 0  # once
        assert await conn.fetchval("SELECT to_regclass('webhook_endpoints_legacy')") is None
        stored = await conn.fetch(
            "SELECT stream_id, event_type, data::text AS data FROM events"
            " ORDER BY stream_id, version"
        )
        listed = {e["id"]: e for e in await views.webhooks(conn, EVENT)}
    assert sorted((r["stream_id"], r["event_type"].split(".")[3]) for r in stored) == sorted(
        [
            (f"webhook-{kept}", "WebhookEndpointRegistered"),
            (f"webhook-{stopped}", "WebhookEndpointRegistered"),
            (f"webhook-{stopped}", "WebhookEndpointRemoved"),
        ]
    )
    assert not any("whsec_" in r["data"] or "hooks.example" in r["data"] for r in stored)
    assert listed[kept]["url"] == f"https://hooks.example/{kept}" and listed[kept]["active"]
    assert listed[kept]["created_at"] == BEFORE.isoformat()
    assert (listed[stopped]["url"], listed[stopped]["active"]) == (None, False)
