"""Reporting's projections of registration, matching and scheduling events.

Every handler is idempotent on its own row (inserts ignore repeats, updates set
values), and each table is fed by a single topic, whose records of one brokerage
event share a key and so arrive in order. Rows of different topics are joined
only when a report is read.
"""

from __future__ import annotations

import json

import asyncpg

from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted, MeetingCancelled, MeetingRequested
from shared.contracts.registration import (
    DECISIONS,
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    DecisionBase,
    EventSettingsChanged,
    ProfileUpdated,
    RegisteredBase,
    SideProgrammeItemAdded,
    SideProgrammeJoined,
)
from shared.contracts.scheduling import SlotAssigned, SlotReleased
from shared.envelope import Envelope
from shared.inbox import Handler


async def on_event_created(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, BrokerageEventCreated)
    await conn.execute(
        "INSERT INTO brokerage_events (event_id, organiser_id, name, venue, time_zone, days)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.organiser_id,
        e.name,
        e.venue,
        e.time_zone,
        json.dumps([d.isoformat() for d in e.days]),
    )


async def on_settings_changed(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, EventSettingsChanged)
    await conn.execute(
        "UPDATE brokerage_events SET name = $2, venue = $3, days = $4::jsonb WHERE event_id = $1",
        e.event_id,
        e.name,
        e.venue,
        json.dumps([d.isoformat() for d in e.days]),
    )


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    p = e.profile
    await conn.execute(
        "INSERT INTO registrations (registration_id, event_id, organisation_type, name, country,"
        " sectors, attendance) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (registration_id) DO NOTHING",
        e.registration_id,
        e.event_id,
        p.organisation_type.value,
        p.name,
        p.country.upper(),
        p.sectors,
        p.attendance.value,
    )


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    p = e.profile
    await conn.execute(
        "UPDATE registrations SET name = $2, country = $3, sectors = $4, attendance = $5"
        " WHERE registration_id = $1",
        e.registration_id,
        p.name,
        p.country.upper(),
        p.sectors,
        p.attendance.value,
    )


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    await conn.execute(
        "UPDATE registrations SET status = $2 WHERE registration_id = $1",
        e.registration_id,
        e.status_after,
    )


async def on_requested(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingRequested)
    await conn.execute(
        "INSERT INTO requests (request_id, event_id, meeting_type, participants)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
        e.request_id,
        e.event_id,
        e.meeting_type.value,
        [e.requester_id, e.recipient_id],
    )


async def on_accepted(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingAccepted)
    await conn.execute(
        "INSERT INTO meetings (meeting_id, event_id, meeting_type, mode, participants)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (meeting_id) DO NOTHING",
        e.request_id,
        e.event_id,
        e.meeting_type.value,
        e.mode.value,
        [p.registration_id for p in e.participants],
    )


async def on_cancelled(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingCancelled)
    if e.was_accepted:
        await conn.execute(
            "UPDATE meetings SET cancelled = true WHERE meeting_id = $1", e.request_id
        )


async def on_slot_assigned(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SlotAssigned)
    await conn.execute(
        "INSERT INTO placements (meeting_id, event_id, placed, slot_start, slot_end, table_no,"
        " mode) VALUES ($1, $2, true, $3, $4, $5, $6) ON CONFLICT (meeting_id) DO UPDATE SET"
        " placed = true, slot_start = $3, slot_end = $4, table_no = $5, mode = $6",
        e.meeting_id,
        e.event_id,
        e.slot_start,
        e.slot_end,
        e.table,
        e.mode.value,
    )


async def on_slot_released(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SlotReleased)
    await conn.execute(
        "INSERT INTO placements (meeting_id, event_id, placed) VALUES ($1, $2, false)"
        " ON CONFLICT (meeting_id) DO UPDATE SET placed = false, slot_start = NULL,"
        " slot_end = NULL, table_no = NULL",
        e.meeting_id,
        e.event_id,
    )


async def on_item_added(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SideProgrammeItemAdded)
    await conn.execute(
        "INSERT INTO side_programme (item_id, event_id, title, kind, starts_at, ends_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (item_id) DO NOTHING",
        e.item_id,
        e.event_id,
        e.title,
        e.kind,
        e.start,
        e.end,
    )


async def on_item_joined(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SideProgrammeJoined)
    await conn.execute(
        "UPDATE side_programme SET participants = array_append(participants, $2)"
        " WHERE item_id = $1 AND NOT $2 = ANY(participants)",
        e.item_id,
        e.registration_id,
    )


HANDLERS: dict[str, Handler] = {
    SideProgrammeItemAdded.ce_type(): on_item_added,
    SideProgrammeJoined.ce_type(): on_item_joined,
    BrokerageEventCreated.ce_type(): on_event_created,
    EventSettingsChanged.ce_type(): on_settings_changed,
    ProfileUpdated.ce_type(): on_profile_updated,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{t.ce_type(): on_decision for t in DECISIONS},
    MeetingRequested.ce_type(): on_requested,
    MeetingAccepted.ce_type(): on_accepted,
    MeetingCancelled.ce_type(): on_cancelled,
    SlotAssigned.ce_type(): on_slot_assigned,
    SlotReleased.ce_type(): on_slot_released,
}

# Everything reporting's consumer reads; notification.events feeds only the dashboard's
# notification counts (`dashboard_projection`).
TOPICS = ("registration.events", "matching.events", "scheduling.events", "notification.events")
