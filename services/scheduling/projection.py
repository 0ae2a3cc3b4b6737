"""Scheduling's projections: its tables are a fold of events, and only of events.

- From registration's events: event grids, attendees' constraints (keys are learnt by
  the access projection the runtime adds).
- From matching's: a meeting is known (pending) when it is accepted — a fact, no
  decision (scheduling's reaction then places it and records where).
- From its own agenda streams (`AGENDA`, applied by `eventstore.record`): placements,
  moves, releases, unschedulable and dropped meetings, locks, time windows, publication.

The two sources commute, as the rebuild needs (`shared.rebuild` replays the own events
first, then the consumed ones): every own event that can come first for a meeting
upserts its row with what the consumed event would have put there, and the consumed
one, coming later, only fills in what is its alone (the meeting type, when accepted).
A meeting's status changes through scheduling's own events only.
"""

from __future__ import annotations

import json

import asyncpg

from services.scheduling.domain import (
    MeetingStatus,
    meeting_mode,
    status_after_release,
    stays_locked,
)
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    DecisionBase,
    EventSettingsChanged,
    OrganisationProfile,
    ProfileUpdated,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
    SideProgrammeJoined,
)
from shared.contracts.scheduling import (
    AgendaPublished,
    MeetingDropped,
    MeetingLocked,
    MeetingUnlocked,
    MeetingUnschedulable,
    SlotAssigned,
    SlotReleased,
    TimeWindowSet,
)
from shared.dispatch import Projection
from shared.envelope import Envelope
from shared.inbox import Handler


async def on_event_created(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, BrokerageEventCreated)
    await conn.execute(
        "INSERT INTO event_grids (event_id, time_zone, days, sessions, slot_minutes, tables,"
        " organiser_id, max_meetings) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8)"
        " ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.time_zone,
        json.dumps([d.isoformat() for d in e.days]),
        json.dumps([s.model_dump(mode="json") for s in e.sessions]),
        e.slot_minutes,
        e.tables,
        e.organiser_id,
        e.max_meetings_per_participant,
    )


async def on_settings_changed(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    """The new grid; the reaction (`handlers.on_settings_changed`) then moves the meetings
    whose slot or table it no longer has."""
    assert isinstance(e, EventSettingsChanged)
    await conn.execute(
        "UPDATE event_grids SET days = $2::jsonb, sessions = $3::jsonb, slot_minutes = $4,"
        " tables = $5, max_meetings = $6 WHERE event_id = $1",
        e.event_id,
        json.dumps([d.isoformat() for d in e.days]),
        json.dumps([s.model_dump(mode="json") for s in e.sessions]),
        e.slot_minutes,
        e.tables,
        e.max_meetings_per_participant,
    )


def _constraints(p: OrganisationProfile) -> tuple[str, str]:
    return p.attendance.value, json.dumps([i.model_dump(mode="json") for i in p.availability])


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    attendance, availability = _constraints(e.profile)
    await conn.execute(
        "INSERT INTO attendees (registration_id, event_id, attendance, availability)"
        " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (registration_id) DO NOTHING",
        e.registration_id,
        e.event_id,
        attendance,
        availability,
    )


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    attendance, availability = _constraints(e.profile)
    await conn.execute(
        "UPDATE attendees SET attendance = $2, availability = $3::jsonb WHERE registration_id = $1",
        e.registration_id,
        attendance,
        availability,
    )


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    await conn.execute(
        "UPDATE attendees SET approved = $2 WHERE registration_id = $1",
        e.registration_id,
        isinstance(e, RegistrationApproved),
    )


async def on_side_programme_joined(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SideProgrammeJoined)
    interval = {"start": e.start.isoformat(), "end": e.end.isoformat()}
    await conn.execute(
        "UPDATE attendees SET blocked = blocked || $2::jsonb"
        " WHERE registration_id = $1 AND NOT blocked @> $2::jsonb",
        e.registration_id,
        json.dumps([interval]),
    )


# -- matching's events: the meetings scheduling knows of -----------------------------------


async def on_meeting_accepted(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """A pending meeting (the reaction places it). Its mode as far as the event tells; the
    placement decides it with what scheduling knows of the participants."""
    assert isinstance(e, MeetingAccepted)
    ids = [p.registration_id for p in e.participants] or [e.requester_id, e.recipient_id]
    await conn.execute(
        "INSERT INTO meetings (meeting_id, event_id, participants, mode, status, meeting_type,"
        " accepted_at, time_preference) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (meeting_id) DO UPDATE SET meeting_type = EXCLUDED.meeting_type,"
        " accepted_at = EXCLUDED.accepted_at, time_preference = EXCLUDED.time_preference",
        e.request_id,
        e.event_id,
        ids,
        meeting_mode(e.mode.value, [p.attendance.value for p in e.participants]),
        MeetingStatus.PENDING.value,
        e.meeting_type.value,
        env.time,
        None if e.time_preference is None else e.time_preference.model_dump_json(exclude_none=True),
    )


# -- scheduling's own events: the agenda ----------------------------------------------------

AGENDA = Projection()


@AGENDA.on(SlotAssigned)
async def _assigned(conn: asyncpg.Connection, e: SlotAssigned) -> None:
    """Placed, or moved (a lock stays: locked meetings are never moved)."""
    await conn.execute(
        "INSERT INTO meetings (meeting_id, event_id, participants, mode, status, slot_id,"
        " slot_start, slot_end, table_no) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (meeting_id) DO UPDATE SET mode = EXCLUDED.mode, status = EXCLUDED.status,"
        " slot_id = EXCLUDED.slot_id, slot_start = EXCLUDED.slot_start,"
        " slot_end = EXCLUDED.slot_end, table_no = EXCLUDED.table_no, reason = NULL,"
        " updated_at = now()",
        e.meeting_id,
        e.event_id,
        e.participants,
        e.mode.value,
        MeetingStatus.PLACED.value,
        e.slot_id,
        e.slot_start,
        e.slot_end,
        e.table,
    )


@AGENDA.on(MeetingUnschedulable)
async def _unschedulable(conn: asyncpg.Connection, e: MeetingUnschedulable) -> None:
    await conn.execute(
        "INSERT INTO meetings (meeting_id, event_id, participants, mode, status, reason)"
        " VALUES ($1, $2, $3, coalesce($4, 'onsite'), $5, $6) ON CONFLICT (meeting_id) DO UPDATE"
        " SET mode = coalesce($4, meetings.mode), status = EXCLUDED.status, slot_id = NULL,"
        " slot_start = NULL, slot_end = NULL, table_no = NULL, reason = EXCLUDED.reason,"
        " locked = $7, updated_at = now()",
        e.meeting_id,
        e.event_id,
        e.participants,
        None if e.mode is None else e.mode.value,
        MeetingStatus.UNSCHEDULED.value,
        e.reason,
        stays_locked(MeetingStatus.UNSCHEDULED, True),
    )


@AGENDA.on(MeetingDropped)
async def _dropped(conn: asyncpg.Connection, e: MeetingDropped) -> None:
    await conn.execute(
        "INSERT INTO meetings (meeting_id, event_id, participants, mode, status, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id) DO UPDATE"
        " SET status = EXCLUDED.status, slot_id = NULL, slot_start = NULL, slot_end = NULL,"
        " table_no = NULL, reason = EXCLUDED.reason, locked = $7, updated_at = now()",
        e.meeting_id,
        e.event_id,
        e.participants,
        e.mode.value,
        MeetingStatus.CANCELLED.value,
        e.reason.value,
        stays_locked(MeetingStatus.CANCELLED, True),
    )


@AGENDA.on(SlotReleased)
async def _released(conn: asyncpg.Connection, e: SlotReleased) -> None:
    status = status_after_release(e.reason)
    await conn.execute(
        "UPDATE meetings SET status = $2, slot_id = NULL, slot_start = NULL, slot_end = NULL,"
        " table_no = NULL, locked = $3, reason = $4, updated_at = now() WHERE meeting_id = $1",
        e.meeting_id,
        status.value,
        stays_locked(status, True),
        e.detail or e.reason.value,
    )


@AGENDA.on(MeetingLocked, MeetingUnlocked)
async def _lock(conn: asyncpg.Connection, e: MeetingLocked | MeetingUnlocked) -> None:
    await conn.execute(
        "UPDATE meetings SET locked = $2, updated_at = now() WHERE meeting_id = $1",
        e.meeting_id,
        isinstance(e, MeetingLocked),
    )


@AGENDA.on(TimeWindowSet)
async def _window(conn: asyncpg.Connection, e: TimeWindowSet) -> None:
    await conn.execute(
        "INSERT INTO slot_rule_changes (event_id, meeting_type, allowed_slots, set_by)"
        " VALUES ($1, $2, $3::jsonb, $4)",
        e.event_id,
        e.meeting_type,
        None if e.allowed_slots is None else json.dumps(e.allowed_slots),
        e.set_by,
    )


@AGENDA.on(AgendaPublished)
async def _published(conn: asyncpg.Connection, e: AgendaPublished) -> None:
    await conn.execute(
        "INSERT INTO agenda_publications (event_id, published_at) VALUES ($1, $2)"
        " ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.published_at,
    )


# -- registration's events --------------------------------------------------------------

HANDLERS: dict[str, Handler] = {
    SideProgrammeJoined.ce_type(): on_side_programme_joined,
    BrokerageEventCreated.ce_type(): on_event_created,
    EventSettingsChanged.ce_type(): on_settings_changed,
    ProfileUpdated.ce_type(): on_profile_updated,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{
        t.ce_type(): on_decision
        for t in (
            RegistrationApproved,
            RegistrationRejected,
            RegistrationWaitlisted,
            RegistrationWithdrawn,
        )
    },
    MeetingAccepted.ce_type(): on_meeting_accepted,
}
