"""Reads the rows of one brokerage event's dashboard (and report), in one read-only snapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.reporting import dashboard, offices

LATEST_DEAD_LETTERS = 5


@dataclass(frozen=True)
class EventData:
    """An event's rows, each registration's support office, and the offices it declared."""

    rows: offices.EventRows
    office_of: dict[str, str | None]
    declared: list[dict[str, Any]]


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


async def event_rows(conn: asyncpg.Connection, event_id: str) -> EventData | None:
    """Everything reporting holds about `event_id` (None when it does not know it)."""
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

    assigned = await conn.fetch(
        "SELECT registration_id, office_id FROM access_registrations WHERE event_id = $1",
        event_id,
    )
    return EventData(
        rows=offices.EventRows(
            event=event,
            registrations=await rows("registrations"),
            meetings=await rows("meetings"),
            placements=await rows("placements"),
            requests=await rows("requests"),
            attendance=await rows("attendance"),
            not_held=await rows("not_held"),
            feedback=await rows("feedback"),
            outcomes=await rows("outcomes"),
            side_programme=await rows("side_programme"),
        ),
        office_of={r["registration_id"]: r["office_id"] for r in assigned},
        declared=json.loads(found["support_offices"]) if found["support_offices"] else [],
    )


async def load(
    pool: asyncpg.Pool, event_id: str, office: str | None = None
) -> dict[str, Any] | None:
    """The dashboard of `event_id`, or None when reporting does not know that event.

    With `office`, the dashboard of that support office's participants only (a
    co-organiser's view: no notification or dead-letter figures, which are the
    platform's and the lead organiser's); without, the whole event with its figures
    by support office.
    """
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        data = await event_rows(conn, event_id)
        if data is None:
            return None
        every = data.rows
        names = {r["registration_id"]: r["name"] for r in every.registrations}
        if office is not None:
            part = offices.share(every, data.office_of, office)
            nobody = dashboard.DeadLetters(count=0, latest=[])
            built = dashboard.build(
                event=part.event,
                report=part.report(),
                registrations=part.registrations,
                meetings=part.meetings,
                placements=part.placements,
                not_held=part.not_held,
                ratings=part.feedback,
                notification_counts=[],
                event_dead_letters=nobody,
                platform_dead_letters=nobody,
                generated_at=datetime.now(UTC),
                names=names,
            )
            listed = offices.offices_of(data.declared, data.office_of)
            built["office"] = next(
                (o for o in listed if o["office_id"] == office),
                {"office_id": office, "name": office},
            )
            return built
        counts = await conn.fetch(
            "SELECT channel, kind, outcome, count(*) AS n FROM notification_outcomes"
            " WHERE event_id = $1 GROUP BY channel, kind, outcome",
            event_id,
        )
        built = dashboard.build(
            event=every.event,
            report=every.report(),
            registrations=every.registrations,
            meetings=every.meetings,
            placements=every.placements,
            not_held=every.not_held,
            ratings=every.feedback,
            notification_counts=counts,
            event_dead_letters=await _dead_letters(conn, "d.record_key = $1", event_id),
            platform_dead_letters=await _dead_letters(conn, _PLATFORM_WIDE),
            generated_at=datetime.now(UTC),
            names=names,
        )
        built["office"] = None
        built["by_office"] = offices.by_office(every, data.declared, data.office_of)
        return built
