"""Scheduling's printable and spreadsheet reads: each participant's agenda (one sheet
each), the table plan for the help desk (one sheet per session) and the meetings left
unscheduled with their reasons. Times in the event's zone, named in the headers; a
co-organiser sees its office's participants' meetings, a participant its own."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import asyncpg

from services.scheduling.domain import MeetingStatus
from services.scheduling.grid import EventGrid
from services.scheduling.views import _grid, _within, unscheduled
from shared.access.policy import Grant, Scope
from shared.sheets import Cell, Sheet


async def _names(conn: asyncpg.Connection, event_id: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT registration_id, coalesce(organisation_name, registration_id) AS name"
        " FROM access_registrations WHERE event_id = $1",
        event_id,
    )
    return {r["registration_id"]: r["name"] for r in rows}


async def _placed(conn: asyncpg.Connection, grant: Grant, event_id: str) -> list[asyncpg.Record]:
    within, office, participant = _within(grant)
    return list(
        await conn.fetch(
            "SELECT * FROM meetings WHERE event_id = $1 AND status = $4"
            + within
            + " ORDER BY slot_start, table_no NULLS LAST, meeting_id",
            event_id,
            office,
            participant,
            MeetingStatus.PLACED.value,
        )
    )


def _hhmm(grid: EventGrid, moment: Any) -> str:
    text: str = moment.astimezone(grid.zone).strftime("%H:%M")
    return text


def _day(grid: EventGrid, moment: Any) -> str:
    text: str = moment.astimezone(grid.zone).strftime("%Y-%m-%d")
    return text


async def participant_agendas(
    conn: asyncpg.Connection, grant: Grant, event_id: str
) -> tuple[EventGrid, list[Sheet]]:
    """One sheet per approved participant the grant covers, its meetings in time order."""
    grid = await _grid(conn, event_id)
    names = await _names(conn, event_id)
    people = await conn.fetch(
        "SELECT registration_id FROM access_registrations WHERE event_id = $1"
        " AND status = 'approved' AND ($2::text IS NULL OR office_id = $2)"
        " AND ($3::text IS NULL OR registration_id = $3)",
        event_id,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    meetings = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND status = $2"
        " ORDER BY slot_start, meeting_id",
        event_id,
        MeetingStatus.PLACED.value,
    )
    by_participant: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for m in meetings:
        for rid in m["participants"]:
            by_participant[rid].append(m)
    tz = grid.time_zone
    headers = [f"day ({tz})", f"start ({tz})", f"end ({tz})", "table", "with", "mode", "meeting_id"]
    sheets = []
    for rid in sorted((p["registration_id"] for p in people), key=lambda r: names.get(r, r)):
        rows: list[list[Cell]] = []
        for m in by_participant.get(rid, []):
            partners = [names.get(p, p) for p in m["participants"] if p != rid]
            rows.append(
                [
                    _day(grid, m["slot_start"]),
                    _hhmm(grid, m["slot_start"]),
                    _hhmm(grid, m["slot_end"]),
                    m["table_no"] if m["table_no"] is not None else "online",
                    "; ".join(partners),
                    m["mode"],
                    m["meeting_id"],
                ]
            )
        notes = [f"registration {rid}; times in {tz}"]
        if not grid.published:
            notes.append("draft: the agenda is not published yet and may still change")
        sheets.append(Sheet(names.get(rid, rid), headers, rows, notes))
    return grid, sheets


async def table_plan(
    conn: asyncpg.Connection, grant: Grant, event_id: str
) -> tuple[EventGrid, list[Sheet]]:
    """One sheet per session: a row per table (and one for online meetings), a column per
    slot, each cell the two organisations meeting there."""
    grid = await _grid(conn, event_id)
    names = await _names(conn, event_id)
    placed = await _placed(conn, grant, event_id)
    cells: dict[tuple[str, int | None], list[str]] = defaultdict(list)
    for m in placed:
        cells[(m["slot_id"], m["table_no"])].append(
            " / ".join(names.get(p, p) for p in m["participants"])
        )
    sessions: dict[str, list[Any]] = defaultdict(list)
    for slot in grid.slots:
        sessions[slot.session].append(slot)
    tz = grid.time_zone
    sheets = []
    for slots in sessions.values():
        first, last = slots[0], slots[-1]
        title = (
            f"{_day(grid, first.start)} {_hhmm(grid, first.start)}-{_hhmm(grid, last.end)}"
        ).replace(":", "h")
        headers = ["table", *(f"{_hhmm(grid, s.start)} ({tz})" for s in slots)]
        rows: list[list[Cell]] = [
            [n, *("; ".join(cells.get((s.id, n), [])) or None for s in slots)]
            for n in range(1, grid.tables + 1)
        ]
        online = [" | ".join(cells.get((s.id, None), [])) or None for s in slots]
        if any(online):
            rows.append(["online", *online])
        notes = [
            f"{_day(grid, first.start)}, {_hhmm(grid, first.start)}-{_hhmm(grid, last.end)}"
            f" ({tz}): {sum(1 for r in rows for v in r[1:] if v)} table-slots in use"
        ]
        sheets.append(Sheet(title, headers, rows, notes))
    return grid, sheets


async def unscheduled_sheet(conn: asyncpg.Connection, grant: Grant, event_id: str) -> Sheet:
    """The unscheduled meetings as `views.unscheduled` reads them, with names added."""
    waiting = await unscheduled(conn, grant, event_id)
    names = await _names(conn, event_id)
    lines: list[list[Cell]] = [
        [
            m["meeting_id"],
            "; ".join(names.get(p, p) for p in m["participants"]),
            "; ".join(m["participants"]),
            m["mode"],
            m["status"],
            m["reason"],
        ]
        for m in waiting
    ]
    headers = ["meeting_id", "participants", "registration_ids", "mode", "status", "reason"]
    return Sheet("Unscheduled meetings", headers, lines)
