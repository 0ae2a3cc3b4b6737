"""Notification's reads, in one place: what the sender and the API routes ask its tables.

The routes hold no SQL; each answer here is a plain value or a JSON-ready dict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.notification import endpoints
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
    if row is None:
        return _unknown(registration_id)
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


class Lookups:
    """The reads of one batch of deliveries, asked once for the whole batch.

    `prefetch` reads every recipient, preference, name and event the batch's messages
    need in four statements (instead of about five per message); what it did not read
    is asked for as before. Lives for one transaction, so it never answers with
    something older than the batch's claim.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._recipients: dict[str, Recipient] = {}
        self._preferences: dict[str, Preferences] = {}
        self._names: dict[str, str | None] = {}  # None: not known here
        self._events: dict[str, EventInfo] = {}

    async def prefetch(
        self, recipients: Iterable[str], people: Iterable[str], events: Iterable[str]
    ) -> None:
        wanted = list(set(recipients))
        for r in await self.conn.fetch(
            "SELECT registration_id, event_id, name, status, erased FROM recipients"
            " WHERE registration_id = ANY($1::text[])",
            wanted,
        ):
            self._recipients[r["registration_id"]] = Recipient(
                r["registration_id"], r["event_id"], r["name"], r["status"], r["erased"]
            )
        for rid in wanted:
            self._recipients.setdefault(rid, _unknown(rid))
        for r in await self.conn.fetch(
            "SELECT registration_id, muted, digest, time_zone, unsubscribed FROM preferences"
            " WHERE registration_id = ANY($1::text[])",
            wanted,
        ):
            self._preferences[r["registration_id"]] = Preferences(
                frozenset(r["muted"]), r["digest"], r["time_zone"], r["unsubscribed"]
            )
        for rid in wanted:
            self._preferences.setdefault(rid, Preferences())
        await self.names(set(people) | set(wanted))
        for r in await self.conn.fetch(
            "SELECT event_id, name, venue, time_zone FROM brokerage_events"
            " WHERE event_id = ANY($1::text[])",
            list(set(events)),
        ):
            self._events[r["event_id"]] = EventInfo(
                r["event_id"], r["name"], r["venue"], r["time_zone"]
            )

    async def recipient(self, registration_id: str) -> Recipient:
        if registration_id not in self._recipients:
            self._recipients[registration_id] = await recipient(self.conn, registration_id)
        return self._recipients[registration_id]

    async def preferences(self, registration_id: str) -> Preferences:
        if registration_id not in self._preferences:
            self._preferences[registration_id] = await preferences(self.conn, registration_id)
        return self._preferences[registration_id]

    async def names(self, ids: Iterable[str]) -> dict[str, str]:
        wanted = set(ids)
        missing = wanted - self._names.keys()
        if missing:
            found = await names(self.conn, missing)
            self._names.update({i: found.get(i) for i in missing})
        return {i: n for i in wanted if (n := self._names[i]) is not None}

    async def event_info(self, event_id: str) -> EventInfo:
        if event_id not in self._events:
            self._events[event_id] = await event_info(self.conn, event_id)
        return self._events[event_id]


def _unknown(registration_id: str) -> Recipient:
    # registration's events may not have arrived yet
    return Recipient(registration_id, None, "participant", "unknown", False)


@dataclass(frozen=True)
class AgendaEntry:
    item: AgendaItem
    sequence: int  # of the meeting's calendar entry
    updated_at: datetime


async def agenda(conn: asyncpg.Connection, registration_id: str) -> list[AgendaEntry]:
    """The participant's placed meetings, in time order."""
    # `participants @> ARRAY[...]` is answered from the GIN index on participants;
    # `$1 = ANY(participants)` read every meeting (9 ms at 50,000, per agenda e-mail).
    rows = await conn.fetch(
        "SELECT meeting_id, participants, slot_start, slot_end, table_no, mode, sequence,"
        " updated_at"
        " FROM meetings WHERE participants @> ARRAY[$1]::text[] AND placed AND NOT cancelled"
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


# -- for the API ------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _delivery(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["delivery_id"]),
        "kind": r["template"],
        "channel": r["channel"],
        "status": r["status"],
        "attempts": r["attempts"],
        "message_id": r["message_id"],
        "cause_id": r["cause_id"],
        "meeting_id": r["meeting_id"],
        "digest": r["digest"],
        "next_attempt_at": _iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
        "last_error": r["last_error"],
        "created_at": _iso(r["created_at"]),
        "sent_at": _iso(r["sent_at"]),
    }


async def deliveries(
    conn: asyncpg.Connection, recipient: str, channel: str, limit: int
) -> list[dict[str, Any]]:
    """A recipient's delivery log on one channel, oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM deliveries WHERE recipient = $1 AND channel = $2"
        " ORDER BY created_at, delivery_id LIMIT $3",
        recipient,
        channel,
        limit,
    )
    return [_delivery(r) for r in rows]


async def webhooks(conn: asyncpg.Connection, event_id: str) -> list[dict[str, Any]]:
    """The event's webhook endpoints (never their secrets; a removed one's URL is gone
    with its key)."""
    rows = await conn.fetch(
        "SELECT w.endpoint_id, w.sealed, w.kinds, w.active, w.created_at, k.key"
        " FROM webhook_endpoints w LEFT JOIN webhook_keys k USING (endpoint_id)"
        " WHERE w.event_id = $1 ORDER BY w.created_at, w.endpoint_id",
        event_id,
    )
    out = []
    for r in rows:
        ident = str(r["endpoint_id"])
        opened = endpoints.opened(r["key"], r["sealed"], ident)
        out.append(
            {
                "id": ident,
                "url": opened[0] if opened else None,
                "event_types": r["kinds"],
                "active": r["active"],
                "created_at": r["created_at"].isoformat(),
            }
        )
    return out


async def webhook_exists(conn: asyncpg.Connection, event_id: str, endpoint_id: str) -> bool:
    found: bool | None = await conn.fetchval(
        "SELECT true FROM webhook_endpoints WHERE endpoint_id = $1::uuid AND event_id = $2",
        endpoint_id,
        event_id,
    )
    return bool(found)


async def recipients(
    conn: asyncpg.Connection, event_id: str, office: str | None, registration_id: str | None
) -> list[dict[str, Any]]:
    """An event's recipients, no contact details; only an office's, or only one, if given."""
    rows = await conn.fetch(
        "SELECT r.registration_id, name, r.status, erased FROM recipients r"
        " LEFT JOIN access_registrations a USING (registration_id) WHERE r.event_id = $1"
        " AND ($2::text IS NULL OR a.office_id = $2)"
        " AND ($3::text IS NULL OR r.registration_id = $3) ORDER BY name",
        event_id,
        office,
        registration_id,
    )
    return [dict(r) for r in rows]
