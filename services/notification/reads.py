"""Queries over notification's own tables that the sender and the API share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.notification.templates import AgendaItem, EventInfo


@dataclass(frozen=True)
class Recipient:
    registration_id: str
    event_id: str | None
    name: str
    status: str
    erased: bool


@dataclass(frozen=True)
class Preferences:
    muted: frozenset[str] = frozenset()
    digest: bool = False
    time_zone: str | None = None
    unsubscribed: bool = False


async def event_info(conn: asyncpg.Connection, event_id: str) -> EventInfo:
    row = await conn.fetchrow(
        "SELECT name, venue, time_zone FROM brokerage_events WHERE event_id = $1", event_id
    )
    if row is None:
        return EventInfo(event_id, "the matchmaking event", "the venue", "UTC")
    return EventInfo(event_id, row["name"], row["venue"], row["time_zone"])


async def recipient(conn: asyncpg.Connection, registration_id: str) -> Recipient:
    row = await conn.fetchrow(
        "SELECT event_id, name, status, erased FROM recipients WHERE registration_id = $1",
        registration_id,
    )
    if row is None:  # registration's events may not have arrived yet
        return Recipient(registration_id, None, "participant", "unknown", False)
    return Recipient(registration_id, row["event_id"], row["name"], row["status"], row["erased"])


async def preferences(conn: asyncpg.Connection, registration_id: str) -> Preferences:
    row = await conn.fetchrow(
        "SELECT muted, digest, time_zone, unsubscribed FROM preferences WHERE registration_id = $1",
        registration_id,
    )
    if row is None:
        return Preferences()
    return Preferences(
        frozenset(row["muted"]), row["digest"], row["time_zone"], row["unsubscribed"]
    )


async def names(conn: asyncpg.Connection, ids: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT registration_id, name FROM recipients WHERE registration_id = ANY($1::text[])",
        list(set(ids)),
    )
    return {r["registration_id"]: r["name"] for r in rows}


@dataclass(frozen=True)
class AgendaEntry:
    item: AgendaItem
    sequence: int  # of the meeting's calendar entry
    updated_at: datetime


async def agenda(conn: asyncpg.Connection, registration_id: str) -> list[AgendaEntry]:
    """The participant's placed meetings, in time order."""
    rows = await conn.fetch(
        "SELECT meeting_id, participants, slot_start, slot_end, table_no, mode, sequence,"
        " updated_at"
        " FROM meetings WHERE $1 = ANY(participants) AND placed AND NOT cancelled"
        " ORDER BY slot_start, meeting_id",
        registration_id,
    )
    others = {p for r in rows for p in r["participants"] if p != registration_id}
    known = await names(conn, others)
    items = []
    for r in rows:
        other = next((p for p in r["participants"] if p != registration_id), "")
        item = AgendaItem(
            meeting_id=r["meeting_id"],
            with_name=known.get(other, "another participant"),
            start=r["slot_start"],
            end=r["slot_end"],
            table=r["table_no"],
            mode=r["mode"] or "onsite",
        )
        items.append(AgendaEntry(item, r["sequence"], r["updated_at"]))
    return items
