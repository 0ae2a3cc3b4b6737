"""Read side of the agenda: the event's grid, a participant's agenda, the unscheduled."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from services.scheduling.domain import WAITING, MeetingStatus
from services.scheduling.grid import EventGrid
from services.scheduling.handlers import load_grid, load_windows
from shared.access.policy import Grant, Scope
from shared.errors import NotFound, RuleViolation


async def _grid(conn: asyncpg.Connection, event_id: str) -> EventGrid:
    grid = await load_grid(conn, event_id)
    if grid is None:
        raise NotFound("brokerage event", event_id)
    return grid


def _meeting(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "meeting_id": row["meeting_id"],
        "participants": list(row["participants"]),
        "mode": row["mode"],
        "table": row["table_no"],
        "locked": row["locked"],
    }


def _within(grant: Grant) -> tuple[str, str | None, str | None]:
    """A filter on meetings to those the grant covers: $2 an office, $3 a participant."""
    return (
        " AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM access_registrations a"
        "   WHERE a.registration_id = ANY(participants) AND a.office_id = $2))"
        " AND ($3::text IS NULL OR $3 = ANY(participants))",
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )


async def agenda(conn: asyncpg.Connection, grant: Grant, event_id: str) -> dict[str, Any]:
    """Slots x tables, with the online meetings of each slot beside its tables (a
    co-organiser's view holds its office's participants' meetings only)."""
    grid = await _grid(conn, event_id)
    within, office, participant = _within(grant)
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND status = $4"
        + within
        + " ORDER BY slot_start, table_no NULLS LAST, meeting_id",
        event_id,
        office,
        participant,
        MeetingStatus.PLACED.value,
    )
    by_slot: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_slot.setdefault(r["slot_id"], []).append(r)
    slots = []
    for s in grid.slots:
        here = by_slot.get(s.id, [])
        tables: dict[int, dict[str, Any]] = {
            r["table_no"]: _meeting(r) for r in here if r["table_no"] is not None
        }
        slots.append(
            {
                "slot_id": s.id,
                "start": s.start.isoformat(),
                "end": s.end.isoformat(),
                "tables": [
                    {"table": n, "meeting": tables.get(n)} for n in range(1, grid.tables + 1)
                ],
                "online": [_meeting(r) for r in here if r["table_no"] is None],
            }
        )
    counts = await conn.fetch(
        "SELECT status, count(*) AS n FROM meetings WHERE event_id = $1"
        + within
        + " GROUP BY status",
        event_id,
        office,
        participant,
    )
    return {
        "event_id": event_id,
        "time_zone": grid.time_zone,
        "tables": grid.tables,
        "published": grid.published,
        "counts": {r["status"]: r["n"] for r in counts},
        "idle": idle_summary(grid, [(list(r["participants"]), r["slot_id"]) for r in rows]),
        "slots": slots,
    }


def idle_summary(grid: EventGrid, placed: list[tuple[list[str], str]]) -> dict[str, Any]:
    """Idle time per participant with placed meetings (free slots between its first and
    last meeting of a session, summed over the sessions), its total and distribution."""
    where: dict[str, tuple[str, int]] = {}
    for sid, slots in grid.sessions_of_slots():
        for k, s in enumerate(slots):
            where[s.id] = (sid, k)
    used: dict[tuple[str, str], list[int]] = {}
    people: dict[str, None] = {}
    for participants, slot_id in placed:
        sid, k = where[slot_id]
        for pid in participants:
            people.setdefault(pid, None)
            used.setdefault((pid, sid), []).append(k)
    by_participant = dict.fromkeys(people, 0)
    for (pid, _), ks in used.items():
        by_participant[pid] += max(ks) - min(ks) + 1 - len(ks)
    distribution: dict[str, int] = {}
    for v in sorted(by_participant.values()):
        distribution[str(v)] = distribution.get(str(v), 0) + 1
    values = list(by_participant.values())
    return {
        "total": sum(values),
        "max": max(values, default=0),
        "spread": max(values, default=0) - min(values, default=0),
        "distribution": distribution,  # idle slots -> participants with that many
        "by_participant": by_participant,
    }


async def windows(conn: asyncpg.Connection, event_id: str) -> dict[str, Any]:
    await _grid(conn, event_id)
    return {
        "event_id": event_id,
        "windows": {t: list(w) for t, w in (await load_windows(conn, event_id)).items()},
    }


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleViolation("tz", f"unknown time zone {name!r}") from exc


async def participant_agenda(
    conn: asyncpg.Connection,
    event_id: str,
    registration_id: str,
    tz: str | None,
) -> dict[str, Any]:
    """A participant's meetings, times in the event's zone and in `tz` (default: the event's)."""
    grid = await _grid(conn, event_id)
    own = _zone(tz) if tz else grid.zone
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND participants @> ARRAY[$2]::text[]"
        " AND status = $3 ORDER BY slot_start",
        event_id,
        registration_id,
        MeetingStatus.PLACED.value,
    )

    def times(prefix: str, start: datetime, end: datetime, zone: ZoneInfo) -> dict[str, str]:
        return {
            f"{prefix}start": start.astimezone(zone).isoformat(),
            f"{prefix}end": end.astimezone(zone).isoformat(),
        }

    return {
        "event_id": event_id,
        "registration_id": registration_id,
        "time_zone": grid.time_zone,
        "local_time_zone": str(own),
        "published": grid.published,
        "meetings": [
            {
                "meeting_id": r["meeting_id"],
                "with": [p for p in r["participants"] if p != registration_id],
                "mode": r["mode"],
                "table": r["table_no"],
                "slot_id": r["slot_id"],
                **times("", r["slot_start"], r["slot_end"], grid.zone),
                **times("local_", r["slot_start"], r["slot_end"], own),
            }
            for r in rows
        ],
    }


async def unscheduled(
    conn: asyncpg.Connection, grant: Grant, event_id: str
) -> list[dict[str, Any]]:
    await _grid(conn, event_id)
    within, office, participant = _within(grant)
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND status = ANY($4::text[])"
        + within
        + " ORDER BY accepted_at, meeting_id",
        event_id,
        office,
        participant,
        [s.value for s in WAITING],
    )
    return [
        {
            "meeting_id": r["meeting_id"],
            "participants": list(r["participants"]),
            "mode": r["mode"],
            "status": r["status"],
            "reason": r["reason"] or "waiting for the event's definition",
        }
        for r in rows
    ]


async def attendees(conn: asyncpg.Connection, grant: Grant, event_id: str) -> list[dict[str, Any]]:
    """Attendance as scheduling knows it, within the grant."""
    rows = await conn.fetch(
        "SELECT t.registration_id, attendance, approved FROM attendees t"
        " LEFT JOIN access_registrations a USING (registration_id) WHERE t.event_id = $1"
        " AND ($2::text IS NULL OR a.office_id = $2)"
        " AND ($3::text IS NULL OR t.registration_id = $3) ORDER BY t.registration_id",
        event_id,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    return [dict(r) for r in rows]
