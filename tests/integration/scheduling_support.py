"""What the scheduling service's database tests share: a connection to a fresh database
with scheduling's migrations, envelopes for a test event, and its agenda stream read back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from services.scheduling import handlers, rebuild
from shared.contracts.base import EventPayload
from shared.db import migrate
from shared.envelope import Envelope
from tests.integration.support import Infra, fresh_databases


@pytest.fixture
async def conn(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    """One connection to a fresh database with scheduling's migrations."""
    name = f"test_scheduling_{datetime.now():%H%M%S%f}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        pool = await asyncpg.create_pool(dsns[name], min_size=1, max_size=1)
        assert pool is not None
        await migrate(pool, rebuild.PLAN.migrations)
        async with pool.acquire() as connection:
            yield connection
        await pool.close()


def envelope_of(event_id: str, payload: EventPayload) -> tuple[Envelope, EventPayload]:
    return Envelope.wrap(payload, key=event_id, subject=f"test-{event_id}"), payload


async def agenda_rows(conn: asyncpg.Connection, event_id: str, tag: str) -> list[tuple[Any, ...]]:
    """The agenda stream's events in order: version, type, meeting (`tag` left out),
    slot, table, and the causation and correlation ids of the accept that caused it."""
    rows = await conn.fetch(
        "SELECT version, event_type, data, metadata FROM events WHERE stream_id = $1"
        " ORDER BY version",
        handlers.stream_of(event_id),
    )
    out = []
    for r in rows:
        data, meta = json.loads(r["data"]), json.loads(r["metadata"])
        out.append(
            (
                r["version"],
                r["event_type"],
                data["meeting_id"].removeprefix(tag),
                data.get("slot_id"),
                data.get("table"),
                meta["causation_id"],
                meta["correlation_id"],
            )
        )
    return out
