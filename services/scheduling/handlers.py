"""Scheduling's handlers: lock the event, load, decide (solver + domain), update + append.

Every handler — a consumed event or an organiser's command — runs on a connection already
inside a transaction (the inbox's, or `shared.idempotency.run_once`'s) and first takes a
transaction-scoped advisory lock on the brokerage event. Under that lock it reads the
event's meetings fresh (READ COMMITTED: every statement sees what earlier lock holders
committed), asks the solver, updates the projection and appends the events to the stream
`agenda-<event_id>`, so the events reach Kafka through the outbox with the changes they
announce. Two accepts for one event can therefore never see the same free slot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg

from services.scheduling import domain, projection
from services.scheduling.domain import AgendaMeeting, Attendee, Place
from services.scheduling.grid import EventGrid, parse_intervals
from services.scheduling.solver import Assignment, check, place
from services.scheduling.solver.portfolio import solve
from shared import eventstore
from shared.auth import Principal
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted, MeetingCancelled
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    MeetingType,
    RegistrationRejected,
    RegistrationWithdrawn,
    SideProgrammeJoined,
)
from shared.contracts.scheduling import AgendaPublished, ReleaseReason, SlotAssigned
from shared.db import advisory_lock_id
from shared.envelope import Envelope
from shared.errors import Conflict, NotFound
from shared.inbox import Handler, combine

LIVE = ("placed", "unscheduled")


def stream_of(event_id: str) -> str:
    return f"agenda-{event_id}"


async def lock_event(conn: asyncpg.Connection, event_id: str) -> None:
    """Serialise everything that touches one event's agenda (held until commit)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1)", advisory_lock_id(f"scheduling-event:{event_id}")
    )


# -- loading ---------------------------------------------------------------------------


def _grid(row: asyncpg.Record) -> EventGrid:
    return EventGrid(
        event_id=row["event_id"],
        organiser_id=row["organiser_id"],
        time_zone=row["time_zone"],
        days=tuple(date.fromisoformat(d) for d in json.loads(row["days"])),
        sessions=tuple(
            (time.fromisoformat(s["start"]), time.fromisoformat(s["end"]))
            for s in json.loads(row["sessions"])
        ),
        slot_minutes=row["slot_minutes"],
        tables=row["tables"],
        max_meetings=row["max_meetings"],
        published=row["published_at"] is not None,
    )


async def load_grid(conn: asyncpg.Connection, event_id: str) -> EventGrid | None:
    row = await conn.fetchrow("SELECT * FROM event_grids WHERE event_id = $1", event_id)
    return None if row is None else _grid(row)


async def load_attendees(conn: asyncpg.Connection, event_id: str) -> dict[str, Attendee]:
    rows = await conn.fetch(
        "SELECT registration_id, attendance, availability, approved, blocked FROM attendees"
        " WHERE event_id = $1",
        event_id,
    )
    return {
        r["registration_id"]: Attendee(
            r["registration_id"],
            r["attendance"],
            parse_intervals(json.loads(r["availability"])),
            r["approved"],
            parse_intervals(json.loads(r["blocked"])),
        )
        for r in rows
    }


def as_meeting(row: asyncpg.Record) -> AgendaMeeting:
    slot = row["slot_id"]
    return AgendaMeeting(
        meeting_id=row["meeting_id"],
        participants=tuple(row["participants"]),
        mode=row["mode"],
        status=row["status"],
        place=None if slot is None else Place(slot, row["table_no"]),
        locked=row["locked"],
        meeting_type=row.get("meeting_type"),
    )


async def load_meetings(
    conn: asyncpg.Connection, event_id: str, statuses: Sequence[str] = LIVE
) -> list[AgendaMeeting]:
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND status = ANY($2::text[])"
        " ORDER BY accepted_at, meeting_id",
        event_id,
        list(statuses),
    )
    return [as_meeting(r) for r in rows]


async def load_windows(conn: asyncpg.Connection, event_id: str) -> dict[str, tuple[str, ...]]:
    """The time windows in force: the latest change per meeting type (null: none)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (meeting_type) meeting_type, allowed_slots FROM slot_rule_changes"
        " WHERE event_id = $1 ORDER BY meeting_type, seq DESC",
        event_id,
    )
    return {
        r["meeting_type"]: tuple(json.loads(r["allowed_slots"]))
        for r in rows
        if r["allowed_slots"] is not None
    }


async def load_meeting(conn: asyncpg.Connection, meeting_id: str) -> AgendaMeeting | None:
    row = await conn.fetchrow("SELECT * FROM meetings WHERE meeting_id = $1", meeting_id)
    return None if row is None else as_meeting(row)


# -- writing ---------------------------------------------------------------------------


async def save(
    conn: asyncpg.Connection,
    grid: EventGrid,
    meeting_id: str,
    status: str,
    place_: Place | None = None,
    reason: str | None = None,
) -> None:
    slot = grid.by_id[place_.slot_id] if place_ else None
    await conn.execute(
        "UPDATE meetings SET status = $2, slot_id = $3, slot_start = $4, slot_end = $5,"
        " table_no = $6, reason = $7, locked = locked AND $2 = 'placed', updated_at = now()"
        " WHERE meeting_id = $1",
        meeting_id,
        status,
        slot.id if slot else None,
        slot.start if slot else None,
        slot.end if slot else None,
        place_.table if place_ else None,
        reason,
    )


async def emit(
    conn: asyncpg.Connection,
    event_id: str,
    events: Sequence[EventPayload],
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> None:
    """Append to the event's agenda stream (under the event's lock: no conflict)."""
    if not events:
        return
    await eventstore.record(
        conn,
        stream_of(event_id),
        None,
        events,
        key=event_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


async def place_one(conn: asyncpg.Connection, grid: EventGrid, meeting_id: str) -> EventPayload:
    """Place one meeting among the placed ones, moving none of them (lock held)."""
    placed = await load_meetings(conn, grid.event_id, ("placed",))
    target = await load_meeting(conn, meeting_id)
    assert target is not None
    instance = domain.build_instance(
        grid,
        await load_attendees(conn, grid.event_id),
        [*placed, target],
        await load_windows(conn, grid.event_id),
    )
    result = place(instance, domain.current_schedule(placed), meeting_id)
    if isinstance(result, Assignment):
        where = Place(result.slot, result.table)
        await save(conn, grid, meeting_id, "placed", where)
        return domain.slot_assigned(grid, target, where)
    await save(conn, grid, meeting_id, "unscheduled", reason=result.reason)
    return domain.unschedulable(grid, target, result.reason)


# -- reactions to matching's and registration's events ------------------------------------


async def on_meeting_accepted(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """Place the newly accepted meeting at once (also after publication)."""
    assert isinstance(e, MeetingAccepted)
    await lock_event(conn, e.event_id)
    ids = [p.registration_id for p in e.participants] or [e.requester_id, e.recipient_id]
    known = await load_attendees(conn, e.event_id)
    attendances = [p.attendance.value for p in e.participants] + [
        known[i].attendance for i in ids if i in known
    ]
    inserted = await conn.fetchval(
        "INSERT INTO meetings (meeting_id, event_id, participants, mode, status, meeting_type)"
        " VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (meeting_id) DO NOTHING"
        " RETURNING meeting_id",
        e.request_id,
        e.event_id,
        ids,
        domain.meeting_mode(e.mode.value, attendances),
        e.meeting_type.value,
    )
    grid = await load_grid(conn, e.event_id)
    if inserted is None or grid is None or not all(i in known for i in ids):
        # A repeat; or the grid or a participant's registration (its availability)
        # has not reached us yet — topics are not ordered with each other: the
        # meeting waits and is placed when they arrive.
        return
    event = await place_one(conn, grid, e.request_id)
    await emit(conn, e.event_id, [event], correlation_id=env.correlation_id, causation_id=env.id)


async def place_waiting(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """Meetings accepted before the event's grid or a participant's registration
    reached us are placed once everything they need is known."""
    event_id: str = e.event_id  # type: ignore[attr-defined]
    await lock_event(conn, event_id)
    grid = await load_grid(conn, event_id)
    if grid is None:
        return
    known = await load_attendees(conn, event_id)
    events = [
        await place_one(conn, grid, m.meeting_id)
        for m in await load_meetings(conn, event_id, ("pending",))
        if all(p in known for p in m.participants)
    ]
    await emit(conn, event_id, events, correlation_id=env.correlation_id, causation_id=env.id)


async def _release(
    conn: asyncpg.Connection, grid: EventGrid | None, meeting: AgendaMeeting, why: ReleaseReason
) -> list[EventPayload]:
    """Cancel a meeting; a SlotReleased if it had a slot."""
    await conn.execute(
        "UPDATE meetings SET status = 'cancelled', slot_id = NULL, slot_start = NULL,"
        " slot_end = NULL, table_no = NULL, locked = false, reason = $2, updated_at = now()"
        " WHERE meeting_id = $1",
        meeting.meeting_id,
        why.value,
    )
    if meeting.place is None or grid is None:
        return []
    return [domain.slot_released(grid, meeting, why)]


async def on_meeting_cancelled(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingCancelled)
    if not e.was_accepted:
        return  # a pending request withdrawn: never ours
    await lock_event(conn, e.event_id)
    meeting = await load_meeting(conn, e.request_id)
    if meeting is None or meeting.status == "cancelled":
        return
    grid = await load_grid(conn, e.event_id)
    events = await _release(conn, grid, meeting, ReleaseReason.MEETING_CANCELLED)
    await emit(conn, e.event_id, events, correlation_id=env.correlation_id, causation_id=env.id)


async def on_participant_left(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """A withdrawn or rejected participant's meetings give up their slots."""
    assert isinstance(e, RegistrationWithdrawn | RegistrationRejected)
    await lock_event(conn, e.event_id)
    grid = await load_grid(conn, e.event_id)
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND $2 = ANY(participants)"
        " AND status <> 'cancelled' ORDER BY meeting_id",
        e.event_id,
        e.registration_id,
    )
    events: list[EventPayload] = []
    for row in rows:
        meeting = as_meeting(row)
        events += await _release(conn, grid, meeting, ReleaseReason.PARTICIPANT_UNAVAILABLE)
    await emit(conn, e.event_id, events, correlation_id=env.correlation_id, causation_id=env.id)


async def on_side_programme_joined(
    conn: asyncpg.Connection, env: Envelope, e: EventPayload
) -> None:
    """The participant is busy then: its meetings in that time move to another slot
    (a SlotAssigned to the new place), or become unschedulable."""
    assert isinstance(e, SideProgrammeJoined)
    await lock_event(conn, e.event_id)
    grid = await load_grid(conn, e.event_id)
    if grid is None or grid.published:
        # Nothing placed yet; or the agenda is published and nothing moves by itself
        # any more. Either way the blocked time applies to every later placement.
        return
    rows = await conn.fetch(
        "SELECT meeting_id FROM meetings WHERE event_id = $1 AND $2 = ANY(participants)"
        " AND status = 'placed' AND slot_start < $4 AND $3 < slot_end ORDER BY meeting_id",
        e.event_id,
        e.registration_id,
        e.start,
        e.end,
    )
    events: list[EventPayload] = []
    for row in rows:
        await conn.execute(
            "UPDATE meetings SET status = 'pending', slot_id = NULL, slot_start = NULL,"
            " slot_end = NULL, table_no = NULL, locked = false, updated_at = now()"
            " WHERE meeting_id = $1",
            row["meeting_id"],
        )
        moved = await place_one(conn, grid, row["meeting_id"])
        if not isinstance(moved, SlotAssigned):
            # No other slot: the meeting leaves the agenda (released), then is unschedulable.
            meeting = await load_meeting(conn, row["meeting_id"])
            assert meeting is not None
            events.append(
                domain.slot_released(grid, meeting, ReleaseReason.PARTICIPANT_UNAVAILABLE)
            )
        events.append(moved)
    await emit(conn, e.event_id, events, correlation_id=env.correlation_id, causation_id=env.id)


ON_EVENTS: dict[str, Handler] = {
    SideProgrammeJoined.ce_type(): on_side_programme_joined,
    BrokerageEventCreated.ce_type(): place_waiting,
    **{t.ce_type(): place_waiting for t in REGISTERED_BY_TYPE.values()},
    RegistrationWithdrawn.ce_type(): on_participant_left,
    RegistrationRejected.ce_type(): on_participant_left,
    MeetingAccepted.ce_type(): on_meeting_accepted,
    MeetingCancelled.ce_type(): on_meeting_cancelled,
}

# The projection first, then scheduling's reactions, in one transaction per event.
HANDLERS: dict[str, Handler] = combine(projection.HANDLERS, ON_EVENTS)


# -- organisers' commands ---------------------------------------------------------------


async def organised_event(
    conn: asyncpg.Connection, principal: Principal, event_id: str, *, lock: bool = True
) -> EventGrid:
    """The event's grid, locked (the route has checked the caller organises it)."""
    if lock:
        await lock_event(conn, event_id)
    grid = await load_grid(conn, event_id)
    if grid is None:
        raise NotFound("brokerage event", event_id)
    return grid


def _published(grid: EventGrid, what: str) -> None:
    if grid.published:
        raise Conflict("event_id", f"the agenda is published: {what} is no longer possible")


async def reoptimise(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    time_limit: float,
    correlation_id: str | None,
    max_idle_spread: int | None = None,
) -> dict[str, Any]:
    """Re-place every unlocked meeting (in the windows of their types, with idle time
    spread over the participants by at most `max_idle_spread`); announce what changed."""
    grid = await organised_event(conn, principal, event_id)
    _published(grid, "re-optimisation")
    meetings = await load_meetings(conn, event_id)
    instance = domain.build_instance(
        grid,
        await load_attendees(conn, event_id),
        meetings,
        await load_windows(conn, event_id),
        max_idle_spread,
    )
    # CPU-bound: off the event loop, so the service keeps answering meanwhile.
    result = await asyncio.to_thread(solve, instance, time_limit)
    schedule = result.schedule
    report = check(instance, schedule)
    if not report.valid:  # never expected; refuse rather than publish a broken agenda
        kinds = {v.kind for v in report.violations}
        if kinds != {"idle-spread-exceeded"}:
            raise RuntimeError(f"the optimiser broke the rules: {report.violations[:3]}")
        raise Conflict(  # the locked meetings alone leave idle time too uneven
            "max_idle_spread", report.violations[0].message
        )
    changes = domain.diff({m.meeting_id: m.place for m in meetings}, schedule)
    by_id = {m.meeting_id: m for m in meetings}
    for c in changes:
        status = "placed" if c.place else "unscheduled"
        await save(conn, grid, c.meeting_id, status, c.place, c.reason)
    await emit(
        conn, event_id, domain.events_of(grid, by_id, changes), correlation_id=correlation_id
    )
    count = {k: sum(c.kind == k for c in changes) for k in ("assigned", "moved", "released")}
    return {
        "event_id": event_id,
        "placed": len(schedule.assignments),
        "unscheduled": len(schedule.unscheduled),
        "idle_slots": report.idle,
        "proven_optimal": result.proven_optimal,
        "bound": {"meetings_priority": result.priority_bound, "idle_slots": result.idle_bound},
        **count,
    }


async def set_window(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    meeting_type: str,
    allowed_slots: Sequence[str] | None,
) -> dict[str, Any]:
    """The organiser's time window for a meeting type (None: any slot again), recorded as
    a change; it applies to every placement from now on (re-optimise to apply it to the
    meetings already placed)."""
    grid = await organised_event(conn, principal, event_id)
    if meeting_type not in {t.value for t in MeetingType}:
        raise NotFound("meeting type", meeting_type)
    window = None if allowed_slots is None else domain.window_slots(grid, allowed_slots)
    await conn.execute(
        "INSERT INTO slot_rule_changes (event_id, meeting_type, allowed_slots, set_by)"
        " VALUES ($1, $2, $3::jsonb, $4)",
        event_id,
        meeting_type,
        None if window is None else json.dumps(list(window)),
        principal.id,
    )
    return {"event_id": event_id, "meeting_type": meeting_type, "allowed_slots": window}


async def set_locked(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    meeting_id: str,
    locked: bool,
) -> dict[str, Any]:
    await organised_event(conn, principal, event_id)
    meeting = await load_meeting(conn, meeting_id)
    if meeting is None or (await meeting_event(conn, meeting_id)) != event_id:
        raise NotFound("meeting", meeting_id)
    if locked and meeting.status != "placed":
        raise Conflict("meeting_id", f"the meeting is {meeting.status}, not placed")
    await conn.execute(
        "UPDATE meetings SET locked = $2, updated_at = now() WHERE meeting_id = $1",
        meeting_id,
        locked,
    )
    return {"meeting_id": meeting_id, "event_id": event_id, "locked": locked}


async def meeting_event(conn: asyncpg.Connection, meeting_id: str) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT event_id FROM meetings WHERE meeting_id = $1", meeting_id
    )
    return found


async def publish(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    correlation_id: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    grid = await organised_event(conn, principal, event_id)
    _published(grid, "publishing again")
    published_at = now or datetime.now(UTC)
    await conn.execute(
        "UPDATE event_grids SET published_at = $2 WHERE event_id = $1", event_id, published_at
    )
    await emit(
        conn,
        event_id,
        [AgendaPublished(event_id=event_id, published_at=published_at)],
        correlation_id=correlation_id,
    )
    return {"event_id": event_id, "published_at": published_at.isoformat()}
