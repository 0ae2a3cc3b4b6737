"""Notification's `meetings` projection is the same whichever order the two topics'
events about a meeting arrive in (real PostgreSQL): matching's cancellation applied
before, between and after scheduling's placement, move and release, through the
projection handlers the rebuild replays and through the live consumer's handlers (which
also queue the messages), gives one row, compared as the rebuild compares tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.notification import handlers, projection
from services.notification.rebuild import PLAN
from shared.contracts.base import EventPayload
from shared.contracts.matching import CancelledBy, MeetingCancelled, MeetingMode
from shared.contracts.scheduling import ReleaseReason, SlotAssigned, SlotReleased
from shared.envelope import Envelope
from shared.inbox import Handler
from tests.integration.support import Infra, fresh_databases, schema_pool

pytestmark = pytest.mark.integration

EVENT, A, B, M = "ev-order", "reg-a", "reg-b", "meeting-order"
T0 = datetime.now(UTC) + timedelta(days=10)
LIVE = handlers.build(handlers.Config("order.test", reminder_lead_minutes=30, digest_hour=7))


def _placed(start: datetime, table: int) -> SlotAssigned:
    return SlotAssigned(
        meeting_id=M,
        event_id=EVENT,
        participants=[A, B],
        slot_start=start,
        slot_end=start + timedelta(minutes=30),
        table=table,
        mode=MeetingMode.ONSITE,
    )


SCHEDULING: list[EventPayload] = [
    _placed(T0, 3),
    _placed(T0 + timedelta(hours=1), 5),
    SlotReleased(
        meeting_id=M, event_id=EVENT, participants=[A, B], reason=ReleaseReason.MEETING_CANCELLED
    ),
]
CANCELLED = MeetingCancelled(
    request_id=M,
    event_id=EVENT,
    requester_id=A,
    recipient_id=B,
    cancelled_by=A,
    cancelled_by_role=CancelledBy.PARTICIPANT,
    was_accepted=True,
)


@pytest.fixture
async def database(infra: Infra) -> AsyncIterator[str]:
    name = f"test_meetings_order_{datetime.now():%H%M%S%f}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        yield dsns[name]


async def _apply(
    dsn: str, schema: str, chosen: dict[str, Handler], order: list[EventPayload]
) -> None:
    pool = await schema_pool(dsn, schema, PLAN.migrations)
    try:
        for event in order:
            async with pool.acquire() as conn, conn.transaction():
                await chosen[event.ce_type()](conn, Envelope.wrap(event, key=EVENT), event)
    finally:
        await pool.close()


async def _row(dsn: str, schema: str) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(f'SELECT * FROM "{schema}".meetings WHERE meeting_id = $1', M)
    finally:
        await conn.close()
    assert row is not None
    return {k: v for k, v in dict(row).items() if k != "updated_at"}


@pytest.mark.parametrize("kind", ["projection", "fold", "live-consumer"])
async def test_the_cancellation_before_or_after_scheduling_leaves_the_same_row(
    database: str, kind: str
) -> None:
    """`fold`: the rebuild's handlers, which keep the state in memory (a fresh one per
    schema, as each rebuild starts)."""
    rows = []
    for position in range(len(SCHEDULING) + 1):
        chosen = {
            "projection": projection.MEETING_HANDLERS,
            "fold": projection.MeetingFold().handlers,
            "live-consumer": LIVE,
        }[kind]
        order = [*SCHEDULING[:position], CANCELLED, *SCHEDULING[position:]]
        schema = f"order_{position}"
        await _apply(database, schema, chosen, order)
        rows.append(await _row(database, schema))
    assert all(row == rows[0] for row in rows), rows
    assert rows[0]["cancelled"] and not rows[0]["placed"] and rows[0]["table_no"] == 5


RUNS = handlers.build_runs(handlers.Config("order.test", reminder_lead_minutes=30, digest_hour=7))


async def _deliveries(dsn: str, schema: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT delivery_id, recipient, template, status, message_id"
            f' FROM "{schema}".deliveries ORDER BY delivery_id'
        )
    finally:
        await conn.close()
    return [tuple(r) for r in rows]


async def test_a_meeting_placed_and_moved_in_one_run_queues_what_one_by_one_does(
    database: str,
) -> None:
    """The run handler for SlotAssigned (`handlers.build_runs`): the move cancels the
    placement's reminders, as it does event by event (the run is cut before it)."""
    run = [(Envelope.wrap(e, key=EVENT), e) for e in SCHEDULING[:2]]  # placed, then moved
    one_by_one = await schema_pool(database, "one_by_one", PLAN.migrations)
    try:
        for envelope, event in run:
            async with one_by_one.acquire() as conn, conn.transaction():
                await LIVE[event.ce_type()](conn, envelope, event)
    finally:
        await one_by_one.close()
    in_a_run = await schema_pool(database, "in_a_run", PLAN.migrations)
    try:
        async with in_a_run.acquire() as conn, conn.transaction():
            await RUNS[SlotAssigned.ce_type()](conn, run)
    finally:
        await in_a_run.close()
    one = await _deliveries(database, "one_by_one")
    statuses = [(template, status) for _, _, template, status, _ in one]
    assert statuses.count(("meeting.reminder", "cancelled")) == 2  # the placement's
    assert statuses.count(("meeting.reminder", "pending")) == 2  # the move's
    assert await _deliveries(database, "in_a_run") == one
    assert await _row(database, "in_a_run") == await _row(database, "one_by_one")


async def test_first_placements_call_nothing_off_and_a_later_move_does(database: str) -> None:
    """A meeting without a row (`handlers.deliver_run`'s `unannounced`) has no reminder
    that could be pending: a run of first placements does not read the queue for them; a
    later run that moves one of them calls off that one's reminders."""
    meetings = [f"meeting-first-{n}" for n in range(3)]

    def placed(meeting: str, start: datetime, table: int) -> SlotAssigned:
        return _placed(start, table).model_copy(update={"meeting_id": meeting})

    first = [placed(m, T0 + timedelta(hours=n), n + 1) for n, m in enumerate(meetings)]
    moved = placed(meetings[1], T0 + timedelta(hours=5), 9)
    reads: list[str] = []
    pool = await schema_pool(database, "first_placements", PLAN.migrations)
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(
                lambda q: reads.append(q.query) if "template = $2 AND status" in q.query else None
            )
            async with conn.transaction():
                await RUNS[SlotAssigned.ce_type()](
                    conn, [(Envelope.wrap(e, key=EVENT), e) for e in first]
                )
            assert reads == []
            async with conn.transaction():
                await RUNS[SlotAssigned.ce_type()](conn, [(Envelope.wrap(moved, key=EVENT), moved)])
            assert len(reads) == 1
            rows = await conn.fetch(
                "SELECT meeting_id, status, count(*) AS n FROM deliveries"
                " WHERE template = 'meeting.reminder' GROUP BY meeting_id, status"
            )
    finally:
        await pool.close()
    counts = {(r["meeting_id"], r["status"]): r["n"] for r in rows}
    assert counts == {
        (meetings[0], "pending"): 2,
        (meetings[1], "cancelled"): 2,
        (meetings[1], "pending"): 2,
        (meetings[2], "pending"): 2,
    }
