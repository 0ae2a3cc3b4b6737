"""The recommendations worker's queues: a consumer queueing a list while the worker's
round computes that event's lists does not wait for the round, and a list queued again
meanwhile is computed again in the next round (migration 018)."""

from __future__ import annotations

import asyncio
import itertools
import time

import asyncpg
import pytest

from services.matching import recommendations
from services.matching.recommend.scoring import K, Ranker
from services.matching.recommend.topk import TopList
from services.matching.recommendations import handlers, store
from shared.contracts.base import EventPayload
from shared.contracts.registration import MeetingType, RegistrationApproved
from shared.envelope import Envelope
from tests.integration.test_recommendations import (
    PROFILES,
    apply,
    assert_current,
    brokerage_event,
    matching_db,
    register_all,
    request_pending,
)

pytestmark = pytest.mark.integration

__all__ = ["matching_db"]  # the fixture, used by name


async def _queue_pair(pool: asyncpg.Pool, event: EventPayload) -> None:
    """The pair subscription's handler for `event` (it queues both participants' lists),
    in a transaction of its own, as the consumer applies it."""
    handler = recommendations.PAIR_HANDLERS[event.ce_type()]
    async with pool.acquire() as conn, conn.transaction():
        await handler(conn, Envelope.wrap(event, key="e1"), event)


async def test_queueing_waits_for_no_round_and_a_list_queued_again_stays(
    matching_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = matching_db
    ids = sorted(PROFILES)
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, ids)
    for rid in ids:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    await _queue_pair(pool, await request_pending(pool, "m0", ids[0], ids[1]))

    # The worker's round, held while it computes the lists it read (ids[0], ids[1]).
    computing, go_on = asyncio.Event(), asyncio.Event()
    store_plan = store.store_plan

    async def held(*args: object) -> None:
        computing.set()
        await go_on.wait()
        await store_plan(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(handlers, "store_plan", held)
    round_ = asyncio.create_task(recommendations.refresh_due(pool))
    try:
        await asyncio.wait_for(computing.wait(), 30)
        # Another request of ids[0] meanwhile: queued at once, not after the round.
        second = await request_pending(pool, "m1", ids[0], ids[2])
        await asyncio.wait_for(_queue_pair(pool, second), 5)
    finally:
        go_on.set()
        taken = await round_
    monkeypatch.undo()

    assert taken == 2  # what the round had read
    left = await pool.fetch("SELECT registration_id FROM list_refresh_queue")
    # ids[1] followed; ids[0] queued again during the round (it may not have seen m1)
    assert {r["registration_id"] for r in left} == {ids[0], ids[2]}
    assert await recommendations.refresh_due(pool) == 2
    assert await pool.fetchval("SELECT count(*) FROM list_refresh_queue") == 0
    await assert_current(pool)


async def test_the_round_computes_its_lists_off_the_event_loop(
    matching_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scores are computed in a thread: the consumers and the API sharing the worker's
    event loop go on meanwhile (every list of 700 participants took 100-300 ms on it)."""
    pool = matching_db
    ids = sorted(PROFILES)
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, ids)
    async with pool.acquire() as conn, conn.transaction():  # a burst of approvals, queued
        for rid in ids:
            event = RegistrationApproved(registration_id=rid, event_id="e1")
            await recommendations.HANDLERS[event.ce_type()](
                conn, Envelope.wrap(event, key="e1"), event
            )
    every_list = Ranker.all_lists

    def slow(self: Ranker, k: int = K) -> dict[str, TopList]:
        time.sleep(0.6)  # about as long as a large event's lists take
        return every_list(self, k)

    monkeypatch.setattr(Ranker, "all_lists", slow)
    ticks: list[float] = []
    round_ = asyncio.create_task(recommendations.refresh_due(pool))
    while not round_.done():
        ticks.append(time.perf_counter())
        await asyncio.sleep(0.01)
    assert await round_ == len(ids)
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 20 and max(gaps) < 0.4, f"the loop stood still {max(gaps):.2f} s"
    monkeypatch.undo()
    await assert_current(pool)
