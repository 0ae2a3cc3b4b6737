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
  once for the run (`handlers.Placer`) instead of once per meeting.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.scheduling import handlers, projection
from services.scheduling.domain import MeetingStatus
from shared.batching import apply_run, batch_handlers
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted
from shared.contracts.registration import REGISTERED_BY_TYPE
from shared.envelope import ACTOR, Envelope
from shared.inbox import BatchHandler

# Types whose handlers only project (no reaction of scheduling's).
PROJECTING = sorted(set(projection.HANDLERS) - set(handlers.ON_EVENTS))


async def _project(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
    await projection.HANDLERS[PAYLOADS.current_type(envelope.type)](conn, envelope, event)


async def registrations(
    conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    event_ids = sorted({event.event_id for _, event in run})  # type: ignore[attr-defined]
    waiting = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM meetings WHERE event_id = ANY($1::text[]) AND status = $2)",
        event_ids,
        MeetingStatus.PENDING.value,
    )
    if waiting:
        for envelope, event in run:
            await handlers.HANDLERS[PAYLOADS.current_type(envelope.type)](conn, envelope, event)
        return
    for event_id in event_ids:
        await handlers.lock_event(conn, event_id)
    await apply_run(conn, _project, run)


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
        placer = await handlers.Placer.load(conn, grid)
        for envelope, event in accepts:
            meeting = await handlers.load_meeting(conn, event.request_id)
            if meeting is None or not handlers.ready(grid, placer.attendees, meeting):
                continue  # a repeat, or it waits for the grid or a registration
            agenda.correlation_id, agenda.causation_id = envelope.correlation_id, envelope.id
            # A placement carries the actor of the accept it reacts to, as one by one.
            acting = ACTOR.set(envelope.actor)
            try:
                await agenda.record(conn, [placer.decide(meeting)])
            finally:
                ACTOR.reset(acting)


PAYLOADS = handlers.PAYLOADS
BATCH_HANDLERS: dict[str, BatchHandler] = {
    **batch_handlers(handlers.HANDLERS, PROJECTING),
    **{t.ce_type(): registrations for t in REGISTERED_BY_TYPE.values()},
    MeetingAccepted.ce_type(): accepted,
}
