"""The readable history: every event of the platform, as reporting receives or writes it,
kept with who caused it (actor, correlation id) and which registrations it concerns.

Reads: an event's history, a registration's history (oldest first, paged by a cursor),
and the agenda as it stood at a given time, folded from scheduling's events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared import json_codec
from shared.access.policy import Grant, Scope
from shared.contracts import ALL_EVENTS
from shared.contracts.base import EventPayload
from shared.contracts.scheduling import SlotAssigned, SlotReleased
from shared.envelope import Envelope
from shared.inbox import Handler, envelope_only

# Payload fields that name a registration the event concerns.
_ONE = ("registration_id", "requester_id", "recipient_id")


def concerned(data: Mapping[str, Any]) -> list[str]:
    """The registration ids a payload concerns, in first-seen order. (A payload's parts
    are decoded JSON: `dict`, whose check costs a fraction of an ABC's.)"""
    get = data.get
    found: list[str] = [value for k in _ONE if isinstance(value := get(k), str)]
    for party in get("participants") or ():
        if isinstance(party, str):
            found.append(party)
        elif isinstance(party, dict) and isinstance(party.get("registration_id"), str):
            found.append(party["registration_id"])
    return found if len(found) < 2 else list(dict.fromkeys(found))


# One row per envelope, idempotent: a redelivery changes nothing. The live handler and
# the rebuild (`services.reporting.rebuild`) run this statement with `row_of`'s arguments.
REMEMBER = (
    "INSERT INTO history (envelope_id, event_id, registration_ids, type, occurred_at,"
    " actor, correlation_id, causation_id, subject, data)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)"
    " ON CONFLICT (envelope_id) DO NOTHING"
)


def row_of(envelope: Envelope) -> tuple[Any, ...]:
    """`REMEMBER`'s arguments for one envelope."""
    return (
        envelope.id,
        envelope.key,
        concerned(envelope.data),
        envelope.type,
        envelope.time,
        envelope.actor,
        envelope.correlation_id,
        envelope.causation_id,
        envelope.subject,
        # As it came, when it came as strict JSON (the same text in a rebuild).
        envelope.data_json.decode() if envelope.data_json else json_codec.dumps(envelope.data),
    )


async def remember(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """Keep one envelope in the history."""
    await conn.execute(REMEMBER, *row_of(envelope))


async def remember_all(conn: asyncpg.Connection, envelopes: Iterable[Envelope]) -> None:
    for envelope in envelopes:
        await remember(conn, envelope)


@envelope_only
async def _on_event(conn: asyncpg.Connection, envelope: Envelope, _: EventPayload) -> None:
    await remember(conn, envelope)


HANDLERS: dict[str, Handler] = {model.ce_type(): _on_event for model in ALL_EVENTS}


# -- reads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    next_cursor: str | None


def _entry(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "cursor": str(row["seq"]),
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "actor": row["actor"],
        "correlation_id": row["correlation_id"],
        "causation_id": row["causation_id"],
        "registrations": list(row["registration_ids"]),
        "data": json.loads(row["data"]),
    }


def _within(grant: Grant) -> tuple[str | None, str | None]:
    return (
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )


async def event_history(
    conn: asyncpg.Connection, event_id: str, grant: Grant, after: int, limit: int
) -> Page:
    """The event's history, oldest first; a co-organiser sees what concerns its office's
    participants, a participant what concerns itself."""
    office, own = _within(grant)
    rows = await conn.fetch(
        "SELECT * FROM history h WHERE event_id = $1 AND seq > $2"
        " AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM access_registrations a"
        "   WHERE a.registration_id = ANY(h.registration_ids) AND a.office_id = $3))"
        " AND ($4::text IS NULL OR $4 = ANY(h.registration_ids))"
        " ORDER BY seq LIMIT $5",
        event_id,
        after,
        office,
        own,
        limit,
    )
    return _page(rows, limit)


async def registration_history(
    conn: asyncpg.Connection, registration_id: str, after: int, limit: int
) -> Page:
    rows = await conn.fetch(
        "SELECT * FROM history WHERE $1 = ANY(registration_ids) AND seq > $2 ORDER BY seq LIMIT $3",
        registration_id,
        after,
        limit,
    )
    return _page(rows, limit)


def _page(rows: list[asyncpg.Record], limit: int) -> Page:
    entries = [_entry(r) for r in rows]
    return Page(entries, entries[-1]["cursor"] if len(entries) == limit else None)


@dataclass
class Placement:
    meeting_id: str
    participants: list[str]
    slot_start: str
    slot_end: str
    table: int | None
    mode: str


def fold_agenda(events: Iterable[EventPayload]) -> dict[str, Placement]:
    """The placed meetings after `events` (scheduling's, in order): a SlotAssigned places
    or moves a meeting, a SlotReleased takes it off the agenda."""
    placed: dict[str, Placement] = {}
    for event in events:
        if isinstance(event, SlotAssigned):
            placed[event.meeting_id] = Placement(
                event.meeting_id,
                list(event.participants),
                event.slot_start.isoformat(),
                event.slot_end.isoformat(),
                event.table,
                event.mode.value,
            )
        elif isinstance(event, SlotReleased):
            placed.pop(event.meeting_id, None)
    return placed


async def agenda_at(
    conn: asyncpg.Connection, event_id: str, at: datetime, grant: Grant
) -> list[dict[str, Any]]:
    """The agenda as it stood at `at`, from the history of scheduling's events."""
    office, own = _within(grant)
    rows = await conn.fetch(
        "SELECT type, data FROM history WHERE event_id = $1 AND occurred_at <= $2"
        " AND type = ANY($3::text[]) ORDER BY occurred_at, seq",
        event_id,
        at,
        [SlotAssigned.ce_type(), SlotReleased.ce_type()],
    )
    models: dict[str, type[SlotAssigned] | type[SlotReleased]] = {
        SlotAssigned.ce_type(): SlotAssigned,
        SlotReleased.ce_type(): SlotReleased,
    }
    events = [models[r["type"]].model_validate(json.loads(r["data"])) for r in rows]
    placements = sorted(fold_agenda(events).values(), key=lambda p: (p.slot_start, p.meeting_id))
    offices: dict[str, str | None] = {}
    if office is not None:
        found = await conn.fetch(
            "SELECT registration_id, office_id FROM access_registrations WHERE event_id = $1",
            event_id,
        )
        offices = {r["registration_id"]: r["office_id"] for r in found}
    return [
        vars(p)
        for p in placements
        if (office is None or any(offices.get(x) == office for x in p.participants))
        and (own is None or own in p.participants)
    ]
