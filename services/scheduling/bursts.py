"""Batch handlers for the bursts scheduling consumes (`Subscription.batch_handlers`): a
run of one event type applied in one statement per statement of its handlers, with the
same effect as one event after the other.

- The projection-only types (approvals, profile updates...) through `shared.batching`.
- A burst of registrations: each would be projected and then look for meetings waiting
  for it (`handlers.place_waiting`). While no meeting of the run's brokerage events is
  pending, none can be placed by a registration, one by one or not: the run is
  projected in one go (after taking the event's lock, as each reaction would). With one
  pending, the run goes one by one, through the reaction.
- A burst of accepts: projected, then placed per brokerage event in the run's order,
  each among the ones placed before it, as one by one, but reading the event's agenda
  once for the run (`placer.Placer`) instead of once per meeting, placed, stored and
  projected together (`handlers.Agenda.record`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

import asyncpg

from services.scheduling import handlers, projection
from services.scheduling.domain import AgendaMeeting, Attendee, MeetingStatus
from services.scheduling.grid import EventGrid
from services.scheduling.placer import Placer
from shared.batching import apply_run, batch_handlers, catalog_of
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted
from shared.contracts.registration import REGISTERED_BY_TYPE
from shared.envelope import Envelope
from shared.inbox import BatchHandler

# Types whose handlers only project (no reaction of scheduling's).
PROJECTING = sorted(set(projection.HANDLERS) - set(handlers.ON_EVENTS))


# Per process: the agenda of a few brokerage events as the last run of accepts left it
# (`placer_for`), each with the stamp saying which state of the tables it is.
# The agenda stream's last event id; the grid's row version; the attendees' rows (count,
# sum and greatest of their versions).
Stamp = tuple[str | None, str, str]
_PLACERS: OrderedDict[str, tuple[Stamp, Placer]] = OrderedDict()
_PLACERS_KEPT = 8


async def agenda_stamp(conn: asyncpg.Connection, event_id: str) -> Stamp:
    """What a placer's inputs are at: the agenda stream's last event (every placement,
    move, release, lock, window and publication is one), and the grid's and attendees'
    row versions (registration's events change them; the row versions change with every
    write, also one rolled back)."""
    row = await conn.fetchrow(
        "SELECT (SELECT event_id::text FROM events WHERE stream_id = $1"
        " ORDER BY version DESC LIMIT 1) AS last,"
        " (SELECT xmin::text FROM event_grids WHERE event_id = $2) AS grid,"
        " (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) || ':'"
        " || coalesce(max(xmin::text::bigint), 0) FROM attendees WHERE event_id = $2) AS rows",
        handlers.stream_of(event_id),
        event_id,
    )
    assert row is not None
    return row["last"], row["grid"] or "", row["rows"]


async def placer_for(conn: asyncpg.Connection, grid: EventGrid) -> tuple[Placer, Stamp]:
    """The event's placer (its lock held): the one a run of accepts of this process left
    (`keep_placer`), if the tables are still as it left them, else loaded afresh. Taken
    out of the cache until kept again: a run that fails leaves nothing behind.

    Where only the attendees' rows changed (a run of registrations or approvals between
    two runs of accepts, as when both topics have a backlog), the kept placer serves
    with the attendees read again, if every attendee it knew can still meet when it
    could: the compiled agenda holds their constraints. (Reading the whole agenda again
    after every run of registrations made a BIO-Europe-sized catch-up quadratic.)"""
    stamp = await agenda_stamp(conn, grid.event_id)
    kept = _PLACERS.pop(grid.event_id, None)
    if kept is None or kept[1].grid != grid or kept[0][:2] != stamp[:2]:
        return await handlers.load_placer(conn, grid), stamp
    placer = kept[1]
    if kept[0][2] != stamp[2]:
        attendees = await handlers.load_attendees(conn, grid.event_id)
        if not all(_same_times(a, attendees.get(k)) for k, a in placer.attendees.items()):
            return await handlers.load_placer(conn, grid), stamp
        placer.attendees = attendees
    return placer, stamp


def _same_times(before: Attendee, now: Attendee | None) -> bool:
    """Whether an attendee can meet when and how it could (approval changes nothing
    for placing)."""
    return now is not None and (now.attendance, now.availability, now.blocked) == (
        before.attendance,
        before.availability,
        before.blocked,
    )


def keep_placer(placer: Placer, stamp: Stamp, agenda: handlers.Agenda) -> None:
    """Keep `placer` for the event's next run, stamped with what `agenda` appended (if
    the transaction rolls back, the stream's last event will not be that one)."""
    _PLACERS[agenda.event_id] = ((agenda.last_event_id or stamp[0], *stamp[1:]), placer)
    while len(_PLACERS) > _PLACERS_KEPT:
        _PLACERS.popitem(last=False)


async def _project(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
    await projection.HANDLERS[PAYLOADS.current_type(envelope.type)](conn, envelope, event)


_ANY_PENDING = (
    "SELECT EXISTS (SELECT 1 FROM meetings WHERE event_id = $1"
    f" AND status = '{MeetingStatus.PENDING.value}')"
)


async def registrations(
    conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    event_ids = sorted({event.event_id for _, event in run})  # type: ignore[attr-defined]
    waiting = []
    for event_id in event_ids:
        await handlers.lock_event(conn, event_id)  # as each registration's reaction would
        # One event at a time, the status in the SQL: answered from the small partial
        # index `meetings_pending` (migration 007), whatever plan the prepared statement
        # settles on (with `event_id = ANY($1)` it scanned every meeting: 20 ms at 21,000).
        if await conn.fetchval(_ANY_PENDING, event_id):
            waiting.append(event_id)
    newcomers: set[str] = set()
    if waiting:  # the run's registrations not known before it
        newcomers = {event.registration_id for _, event in run}  # type: ignore[attr-defined]
        rows = await conn.fetch(
            "SELECT registration_id FROM attendees WHERE registration_id = ANY($1::text[])",
            list(newcomers),
        )
        newcomers -= {r["registration_id"] for r in rows}
    await apply_run(conn, _project, run)
    for event_id in waiting:
        mine = [(env, e) for env, e in run if e.event_id == event_id]  # type: ignore[attr-defined]
        await _place_waiting(conn, event_id, mine, newcomers)


async def _place_waiting(
    conn: asyncpg.Connection,
    event_id: str,
    run: Sequence[tuple[Envelope, EventPayload]],
    newcomers: set[str],
) -> None:
    """`handlers.place_waiting` after each registration of `run` (projected already;
    `newcomers` were not registered before it), with one placer and one record for the run:
    after each registration, the pending meetings it makes ready are decided, in the
    order one by one would decide them, each caused by that registration. (One by one,
    each registration read the whole agenda again: a burst arriving after accepts that
    wait for it cost seconds.)"""
    agenda = await handlers.open_agenda(conn, event_id)
    grid = await handlers.load_grid(conn, event_id)
    if grid is None:
        return
    placer, stamp = await placer_for(conn, grid)
    pending = await handlers.load_meetings(conn, event_id, (MeetingStatus.PENDING,))
    known = set(placer.attendees) - newcomers  # as each registration's reaction finds them
    decided: list[EventPayload] = []
    causes: list[Envelope] = []
    for envelope, event in run:
        known.add(event.registration_id)  # type: ignore[attr-defined]
        now = [m for m in pending if handlers.ready(grid, known, m)]
        if not now:
            continue
        taken = {m.meeting_id for m in now}
        pending = [m for m in pending if m.meeting_id not in taken]
        events = placer.decide_all(now)
        decided += events
        causes += [envelope] * len(events)
    await agenda.record(conn, decided, causes)
    keep_placer(placer, stamp, agenda)


# Accepts placed, stored and projected together (`accepted`): while the server writes one
# chunk's placements, the next chunk is placed (the placer is Python on this process's
# core, PostgreSQL on the other). Measured in bench/README, "Catch-up, fifth round".
CHUNK = 512


async def accepted(conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]) -> None:
    await apply_run(conn, _project, run)
    by_event: dict[str, list[tuple[Envelope, MeetingAccepted]]] = {}
    for envelope, event in run:
        assert isinstance(event, MeetingAccepted)
        by_event.setdefault(event.event_id, []).append((envelope, event))
    for event_id, accepts in by_event.items():
        agenda = await handlers.open_agenda(conn, event_id)
        grid = await handlers.load_grid(conn, event_id)
        if grid is None:
            continue  # placed once the grid arrives (`handlers.place_waiting`)
        placer, stamp = await placer_for(conn, grid)
        meetings = await handlers.load_meetings_by_id(conn, [e.request_id for _, e in accepts])
        targets, causes = [], []
        for envelope, event in accepts:
            # A repeat later in the run finds its meeting decided (popped), as one by one
            # it would find it no longer pending.
            meeting = meetings.pop(event.request_id, None)
            if meeting is None or not handlers.ready(grid, placer.attendees, meeting):
                continue  # a repeat, or it waits for the grid or a registration
            targets.append(meeting)
            causes.append(envelope)
        # Each placement carries the correlation, causation and actor of the accept it
        # reacts to, as one by one.
        await place_overlapped(conn, agenda, placer, targets, causes)
        keep_placer(placer, stamp, agenda)


async def place_overlapped(
    conn: asyncpg.Connection,
    agenda: handlers.Agenda,
    placer: Placer,
    targets: Sequence[AgendaMeeting],
    causes: Sequence[Envelope],
) -> None:
    """`agenda.record(conn, placer.decide_all(targets), causes)`, in chunks of CHUNK, each
    chunk's writes sent while the next chunk is decided: the same decisions (each
    meeting among those placed before it) and the same events, in the same order, in
    the same transaction."""
    catalog = await catalog_of(conn)
    writing: asyncio.Task[None] | None = None
    try:
        for start in range(0, len(targets), CHUNK):
            chunk = slice(start, start + CHUNK)
            decided = placer.decide_all(targets[chunk])
            # The writes before go on (their next statement sent) while these are prepared.
            await asyncio.sleep(0)
            write = await agenda.prepare(catalog, decided, causes[chunk])
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(write.send(conn))
            await asyncio.sleep(0)  # its first statement sent before placing goes on
        if writing is not None:
            await writing
    finally:
        if writing is not None:
            # Whatever failed, no write is left on the connection when the transaction
            # is rolled back on it; the error raised is the first one.
            await asyncio.wait([writing])
            if not writing.cancelled():
                writing.exception()


PAYLOADS = handlers.PAYLOADS
BATCH_HANDLERS: dict[str, BatchHandler] = {
    **batch_handlers(handlers.HANDLERS, PROJECTING),
    **{t.ce_type(): registrations for t in REGISTERED_BY_TYPE.values()},
    MeetingAccepted.ce_type(): accepted,
}
