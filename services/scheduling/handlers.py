"""Scheduling's handlers: lock the event, load, decide (solver + domain), record events.

Every handler — a reaction to a consumed event or an organiser's command — runs on a
connection already inside a transaction (the inbox's, or `shared.idempotency.run_once`'s)
and first takes a transaction-scoped advisory lock on the brokerage event. Under that lock
it reads the event's agenda fresh (READ COMMITTED: every statement sees what earlier lock
holders committed), asks the solver and the domain's rules, and records what it decided
as events on the stream `agenda-<event_id>` at the version it read (optimistic
concurrency); `eventstore.record` projects them into the tables (`projection.AGENDA`) in
the same transaction, and the outbox takes them to Kafka. The tables change only through
events: scheduling's own, or the ones it consumes (`projection.HANDLERS`). Two accepts for
one event can never see the same free slot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg

from services.scheduling import domain, projection
from services.scheduling.domain import LIVE, AgendaMeeting, Attendee, MeetingStatus, Place
from services.scheduling.grid import EventGrid, parse_intervals
from services.scheduling.placer import Placer
from services.scheduling.solver import check
from services.scheduling.solver.portfolio import solve
from shared import eventstore
from shared.auth import Principal
from shared.batching import Catalog, Recorded, catalog_of, record_run, send_recorded
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted, MeetingCancelled, TimePreference
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    EventSettingsChanged,
    MeetingType,
    RegistrationRejected,
    RegistrationWithdrawn,
    SideProgrammeJoined,
)
from shared.contracts.scheduling import (
    AgendaPublished,
    MeetingLocked,
    MeetingUnlocked,
    ReleaseReason,
    SlotAssigned,
    TimeWindowSet,
)
from shared.db import advisory_lock_id
from shared.envelope import ACTOR, Envelope
from shared.errors import Conflict, NotFound
from shared.inbox import Handler, combine

PAYLOADS = registry()


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
    row = await conn.fetchrow(
        "SELECT g.*, p.published_at FROM event_grids g"
        " LEFT JOIN agenda_publications p USING (event_id) WHERE g.event_id = $1",
        event_id,
    )
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
        status=MeetingStatus(row["status"]),
        place=None if slot is None else Place(slot, row["table_no"]),
        locked=row["locked"],
        meeting_type=row.get("meeting_type"),
        reason=row["reason"],
        time_preference=_preference(row.get("time_preference")),
    )


def _preference(raw: str | None) -> TimePreference | None:
    return None if raw is None else TimePreference.model_validate_json(raw)


async def load_meetings(
    conn: asyncpg.Connection, event_id: str, statuses: Sequence[MeetingStatus] = LIVE
) -> list[AgendaMeeting]:
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND status = ANY($2::text[])"
        " ORDER BY accepted_at, meeting_id",
        event_id,
        [s.value for s in statuses],
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


async def load_meetings_by_id(
    conn: asyncpg.Connection, meeting_ids: Sequence[str]
) -> dict[str, AgendaMeeting]:
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE meeting_id = ANY($1::text[])", list(meeting_ids)
    )
    return {r["meeting_id"]: as_meeting(r) for r in rows}


# -- recording -------------------------------------------------------------------------


@dataclass(frozen=True)
class AgendaWrite:
    """Decided events made ready to store and project (`Agenda.prepare`), without a round
    trip yet: a run of accepts places its next meetings while the server writes these."""

    append: eventstore.Append
    projection: Recorded

    async def send(self, conn: asyncpg.Connection) -> None:
        await eventstore.send_append(conn, self.append)
        await send_recorded(conn, _project_agenda, self.projection)


@dataclass
class Agenda:
    """One event's agenda stream, opened under the event's lock at the version read then:
    each `record` appends after that version (a conflict if the stream moved without the
    lock, which the lock rules out) and projects the events into the tables."""

    event_id: str
    version: int
    correlation_id: str | None = None
    causation_id: str | None = None
    last_event_id: str | None = None  # of the last event `record` appended

    async def record(
        self,
        conn: asyncpg.Connection,
        events: Sequence[EventPayload],
        causes: Sequence[Envelope] | None = None,
    ) -> None:
        """Append `events` and project them, in one statement each for the events and
        their outbox rows and one per kind of projection statement (`shared.batching`),
        not one per event. With `causes` (one per event), each event carries the
        correlation id, the causation and the actor of its own cause (a run of accepts
        recorded at once) instead of the agenda's."""
        if events:
            await (await self.prepare(await catalog_of(conn), events, causes)).send(conn)

    async def prepare(
        self,
        catalog: Catalog,
        events: Sequence[EventPayload],
        causes: Sequence[Envelope] | None = None,
    ) -> AgendaWrite:
        """`record` up to its round trips: the events wrapped, their append's arguments
        and their projection's statements worked out; the agenda stands after them (send
        the writes in the order they were prepared)."""
        if causes is None:
            envelopes = [self._wrap(e, self.correlation_id, self.causation_id) for e in events]
        else:
            envelopes = []
            for event, cause in zip(events, causes, strict=True):
                acting = ACTOR.set(cause.actor)  # as when reacting to that one cause alone
                try:
                    envelopes.append(self._wrap(event, cause.correlation_id, cause.id))
                finally:
                    ACTOR.reset(acting)
        write = AgendaWrite(
            eventstore.prepare_append(stream_of(self.event_id), self.version, envelopes),
            await record_run(catalog, _project_agenda, list(zip(envelopes, events, strict=True))),
        )
        self.last_event_id = envelopes[-1].id
        self.version += len(events)
        return write

    def _wrap(
        self, event: EventPayload, correlation_id: str | None, causation_id: str | None
    ) -> Envelope:
        return Envelope.wrap(
            event,
            key=self.event_id,
            subject=stream_of(self.event_id),
            correlation_id=correlation_id,
            causation_id=causation_id,
        )


async def _project_agenda(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await projection.AGENDA.apply(conn, event)


async def open_agenda(
    conn: asyncpg.Connection,
    event_id: str,
    *,
    correlation_id: str | None = None,
    cause: Envelope | None = None,
) -> Agenda:
    """Lock the event and read where its agenda stream stands."""
    await lock_event(conn, event_id)
    return Agenda(
        event_id,
        await eventstore.current_version(conn, stream_of(event_id)),
        cause.correlation_id if cause else correlation_id,
        cause.id if cause else None,
    )


async def load_placer(conn: asyncpg.Connection, grid: EventGrid) -> Placer:
    """The event's agenda as placing sees it (its lock held)."""
    placed = await load_meetings(conn, grid.event_id, (MeetingStatus.PLACED,))
    return Placer(
        grid,
        await load_attendees(conn, grid.event_id),
        await load_windows(conn, grid.event_id),
        {m.meeting_id: m for m in placed},
    )


async def place_one(
    conn: asyncpg.Connection,
    grid: EventGrid,
    target: AgendaMeeting,
    ignore: frozenset[str] = frozenset(),
) -> EventPayload:
    """Where one meeting goes among the placed ones, moving none of them (lock held)."""
    return (await load_placer(conn, grid)).decide(target, ignore)


def ready(grid: EventGrid | None, known: Container[str], meeting: AgendaMeeting) -> bool:
    """A pending meeting is placed once the event's grid and every participant's
    registration (its availability) have reached us: topics are not ordered with each
    other."""
    return (
        grid is not None
        and meeting.status == MeetingStatus.PENDING
        and all(p in known for p in meeting.participants)
    )


# -- reactions to matching's and registration's events ------------------------------------


async def on_meeting_accepted(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """Place the newly accepted meeting (the projection has it pending) at once, also
    after publication."""
    assert isinstance(e, MeetingAccepted)
    agenda = await open_agenda(conn, e.event_id, cause=env)
    meeting = await load_meeting(conn, e.request_id)
    grid = await load_grid(conn, e.event_id)
    if meeting is None or not ready(grid, await load_attendees(conn, e.event_id), meeting):
        return  # a repeat, or it waits for the grid or a registration
    assert grid is not None
    await agenda.record(conn, [await place_one(conn, grid, meeting)])


async def place_waiting(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """Meetings accepted before the event's grid or a participant's registration
    reached us are placed once everything they need is known."""
    event_id: str = e.event_id  # type: ignore[attr-defined]
    agenda = await open_agenda(conn, event_id, cause=env)
    grid = await load_grid(conn, event_id)
    if grid is None:
        return
    placer = await load_placer(conn, grid)
    pending = await load_meetings(conn, event_id, (MeetingStatus.PENDING,))
    await agenda.record(
        conn, placer.decide_all([m for m in pending if ready(grid, placer.attendees, m)])
    )


async def on_meeting_cancelled(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """A cancelled meeting leaves the agenda (giving up its slot if it had one)."""
    assert isinstance(e, MeetingCancelled)
    if not e.was_accepted:
        return  # a pending request withdrawn: never ours
    agenda = await open_agenda(conn, e.event_id, cause=env)
    meeting = await load_meeting(conn, e.request_id)
    left = (
        None
        if meeting is None
        else domain.leaves(e.event_id, meeting, ReleaseReason.MEETING_CANCELLED)
    )
    await agenda.record(conn, [] if left is None else [left])


async def on_participant_left(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """A withdrawn or rejected participant's meetings leave the agenda (placed ones give up
    their slots)."""
    assert isinstance(e, RegistrationWithdrawn | RegistrationRejected)
    agenda = await open_agenda(conn, e.event_id, cause=env)
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND participants @> ARRAY[$2]::text[]"
        " ORDER BY meeting_id",
        e.event_id,
        e.registration_id,
    )
    why = ReleaseReason.PARTICIPANT_UNAVAILABLE
    left = [domain.leaves(e.event_id, as_meeting(r), why) for r in rows]
    await agenda.record(conn, [x for x in left if x is not None])


async def on_side_programme_joined(
    conn: asyncpg.Connection, env: Envelope, e: EventPayload
) -> None:
    """The participant is busy then: its meetings in that time move to another slot
    (a SlotAssigned to the new place), or become unschedulable."""
    assert isinstance(e, SideProgrammeJoined)
    agenda = await open_agenda(conn, e.event_id, cause=env)
    grid = await load_grid(conn, e.event_id)
    if grid is None or not domain.moves_by_itself(grid.published):
        # Nothing placed yet; or the agenda is published and nothing moves by itself
        # any more. Either way the blocked time applies to every later placement.
        return
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND participants @> ARRAY[$2]::text[]"
        " AND status = $5 AND slot_start < $4 AND $3 < slot_end ORDER BY meeting_id",
        e.event_id,
        e.registration_id,
        e.start,
        e.end,
        MeetingStatus.PLACED.value,
    )
    for row in rows:
        meeting = as_meeting(row)
        events: list[EventPayload] = domain.auto_unlock(e.event_id, meeting)
        moved = await place_one(conn, grid, meeting)
        if not isinstance(moved, SlotAssigned):
            # No other slot: the meeting leaves the agenda (released), then is unschedulable.
            why = ReleaseReason.PARTICIPANT_UNAVAILABLE
            events.append(domain.slot_released(e.event_id, meeting, why))
        await agenda.record(conn, [*events, moved])


async def on_settings_changed(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """The organiser changed the grid (the projection has stored it): placed meetings whose
    slot or table is gone move to another place, or become unschedulable; this also after
    publication, since the organiser's change took the old place away."""
    assert isinstance(e, EventSettingsChanged)
    agenda = await open_agenda(conn, e.event_id, cause=env)
    grid = await load_grid(conn, e.event_id)
    if grid is None:
        return
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE event_id = $1 AND status = $2 ORDER BY accepted_at,"
        " meeting_id",
        e.event_id,
        MeetingStatus.PLACED.value,
    )
    gone = [
        as_meeting(r)
        for r in rows
        if not domain.still_fits(grid, r["slot_id"], r["slot_start"], r["table_no"])
    ]
    waiting = frozenset(m.meeting_id for m in gone)
    for meeting in gone:
        events: list[EventPayload] = domain.auto_unlock(e.event_id, meeting)
        moved = await place_one(conn, grid, meeting, ignore=waiting - {meeting.meeting_id})
        if not isinstance(moved, SlotAssigned):
            why = ReleaseReason.EVENT_CHANGED
            events.append(domain.slot_released(e.event_id, meeting, why))
        await agenda.record(conn, [*events, moved])
        waiting -= {meeting.meeting_id}
    # Meetings that waited for room (e.g. more tables now) get their chance.
    await place_waiting(conn, env, e)


ON_EVENTS: dict[str, Handler] = {
    EventSettingsChanged.ce_type(): on_settings_changed,
    SideProgrammeJoined.ce_type(): on_side_programme_joined,
    BrokerageEventCreated.ce_type(): place_waiting,
    **{t.ce_type(): place_waiting for t in REGISTERED_BY_TYPE.values()},
    RegistrationWithdrawn.ce_type(): on_participant_left,
    RegistrationRejected.ce_type(): on_participant_left,
    MeetingAccepted.ce_type(): on_meeting_accepted,
    MeetingCancelled.ce_type(): on_meeting_cancelled,
}

# The projection first (and the access projection the runtime adds), then scheduling's
# reactions, in one transaction per event.
HANDLERS: dict[str, Handler] = combine(projection.HANDLERS, ON_EVENTS)


# -- organisers' commands ---------------------------------------------------------------


async def organised_event(
    conn: asyncpg.Connection, event_id: str, correlation_id: str | None = None
) -> tuple[Agenda, EventGrid, domain.AgendaHistory]:
    """The event's agenda, locked, with its grid and its history folded from the stream
    (the route has checked the caller organises it). Commands decide on the history and
    record after the version they read."""
    await lock_event(conn, event_id)
    history = await eventstore.load_into(
        conn, stream_of(event_id), PAYLOADS, domain.AgendaHistory()
    )
    grid = await load_grid(conn, event_id)
    if grid is None:
        raise NotFound("brokerage event", event_id)
    return Agenda(event_id, history.version, correlation_id), grid, history


async def reoptimise(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    time_limit: float,
    correlation_id: str | None,
    max_idle_spread: int | None = None,
) -> dict[str, Any]:
    """Re-place every unlocked meeting (in the windows of their types, with idle time
    spread over the participants by at most `max_idle_spread`); record what changed."""
    agenda, grid, history = await organised_event(conn, event_id, correlation_id)
    domain.ensure_unpublished(history.published, "re-optimisation")
    meetings = await load_meetings(conn, event_id)
    windows = await load_windows(conn, event_id)
    instance = domain.build_instance(
        grid, await load_attendees(conn, event_id), meetings, windows, max_idle_spread
    )
    # CPU-bound: off the event loop, so the service keeps answering meanwhile. On small
    # events a second annealing run uses the second core, in a child process the solver
    # starts and ends within the time limit (`solver.second_run`).
    result = await asyncio.to_thread(solve, instance, time_limit, second_process=True)
    schedule = domain.explained(result.schedule, grid, meetings, windows)
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
    await agenda.record(conn, domain.events_of(grid, by_id, changes))
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
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """The organiser's time window for a meeting type (None: any slot again), recorded as
    an event; it applies to every placement from now on (re-optimise to apply it to the
    meetings already placed)."""
    agenda, grid, _ = await organised_event(conn, event_id, correlation_id)
    if meeting_type not in {t.value for t in MeetingType}:
        raise NotFound("meeting type", meeting_type)
    window = None if allowed_slots is None else domain.window_slots(grid, allowed_slots)
    await agenda.record(
        conn,
        [
            TimeWindowSet(
                event_id=event_id,
                meeting_type=meeting_type,
                allowed_slots=None if window is None else list(window),
                set_by=principal.id,
            )
        ],
    )
    return {"event_id": event_id, "meeting_type": meeting_type, "allowed_slots": window}


async def set_locked(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    meeting_id: str,
    locked: bool,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """Lock a placed meeting where it is (MeetingLocked), or unlock it (MeetingUnlocked);
    asking for the state it is in already records nothing."""
    agenda, _, history = await organised_event(conn, event_id, correlation_id)
    meeting = await load_meeting(conn, meeting_id)
    if meeting is None or (await meeting_event(conn, meeting_id)) != event_id:
        raise NotFound("meeting", meeting_id)
    if locked:
        domain.ensure_lockable(history.status_of(meeting_id))
    if (meeting_id in history.locked) != locked:
        who = list(meeting.participants)
        change: EventPayload = (
            MeetingLocked(
                meeting_id=meeting_id, event_id=event_id, participants=who, locked_by=principal.id
            )
            if locked
            else MeetingUnlocked(
                meeting_id=meeting_id, event_id=event_id, participants=who, unlocked_by=principal.id
            )
        )
        await agenda.record(conn, [change])
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
    agenda, _, history = await organised_event(conn, event_id, correlation_id)
    domain.ensure_unpublished(history.published, "publishing again")
    published_at = now or datetime.now(UTC)
    await agenda.record(conn, [AgendaPublished(event_id=event_id, published_at=published_at)])
    return {"event_id": event_id, "published_at": published_at.isoformat()}
