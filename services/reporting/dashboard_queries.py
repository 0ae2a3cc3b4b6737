"""Reads the rows of one brokerage event's dashboard, in one read-only snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.reporting import dashboard, report

LATEST_DEAD_LETTERS = 5

# A dead letter is platform-wide when its key names no brokerage event reporting knows.
_PLATFORM_WIDE = (
    "(d.record_key IS NULL OR NOT EXISTS"
    " (SELECT 1 FROM brokerage_events b WHERE b.event_id = d.record_key))"
)


async def _dead_letters(
    conn: asyncpg.Connection, where: str, *args: object
) -> dashboard.DeadLetters:
    count = await conn.fetchval(f"SELECT count(*) FROM dead_letters d WHERE {where}", *args)
    latest = await conn.fetch(
        f"SELECT * FROM dead_letters d WHERE {where}"
        ' ORDER BY dead_lettered_at DESC, "offset" DESC'
        f" LIMIT {LATEST_DEAD_LETTERS}",
        *args,
    )
    return dashboard.DeadLetters(count=count, latest=list(latest))


async def load(pool: asyncpg.Pool, event_id: str) -> dict[str, Any] | None:
    """The dashboard of `event_id`, or None when reporting does not know that event."""
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        found = await conn.fetchrow("SELECT * FROM brokerage_events WHERE event_id = $1", event_id)
        if found is None:
            return None
        event = {
            **dict(found),
            "days": json.loads(found["days"]),
            "sessions": json.loads(found["sessions"]) if found["sessions"] else None,
        }

        async def rows(table: str) -> list[asyncpg.Record]:
            return list(await conn.fetch(f"SELECT * FROM {table} WHERE event_id = $1", event_id))

        registrations = await rows("registrations")
        meetings = await rows("meetings")
        placements = await rows("placements")
        not_held = await rows("not_held")
        ratings = await rows("feedback")
        the_report = report.build(
            event,
            registrations,
            meetings,
            placements,
            await rows("requests"),
            await rows("attendance"),
            not_held,
            ratings,
            await rows("outcomes"),
            await rows("side_programme"),
        )
        counts = await conn.fetch(
            "SELECT channel, kind, outcome, count(*) AS n FROM notification_outcomes"
            " WHERE event_id = $1 GROUP BY channel, kind, outcome",
            event_id,
        )
        return dashboard.build(
            event=event,
            report=the_report,
            registrations=registrations,
            meetings=meetings,
            placements=placements,
            not_held=not_held,
            ratings=ratings,
            notification_counts=counts,
            event_dead_letters=await _dead_letters(conn, "d.record_key = $1", event_id),
            platform_dead_letters=await _dead_letters(conn, _PLATFORM_WIDE),
            generated_at=datetime.now(UTC),
        )
