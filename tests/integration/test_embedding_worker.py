"""Matching's embedding worker over the real PostgreSQL: the consumer only queues texts,
the worker embeds them in batches outside any transaction and brings approved
participants into the lists when their vectors land; a SIGKILL loses nothing.

Registration's events go through the same handlers as in test_recommendations.py
(one transaction per event, as the inbox consumer runs them).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from services.matching import projection, recommendations
from services.matching.recommend.profiles import TextEncoder, Vectors
from services.matching.recommendations import embedding, store
from services.matching.recommendations import worker as worker_module
from shared.contracts.registration import MeetingType, ProfileUpdated, RegistrationApproved
from shared.db import migrate
from shared.envelope import Envelope
from tests.integration.support import FreshDatabase, Processes, wait_until
from tests.integration.test_recommendations import (
    PROFILES,
    apply,
    assert_current,
    brokerage_event,
    partners_of,
    registered,
    request_pending,
    stored_lists,
)

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "matching" / "migrations"
APPROVED = ["r01", "r02", "r03", "r04", "r05"]


@pytest.fixture
async def pool(database: FreshDatabase) -> asyncpg.Pool:
    await migrate(database.pool, MIGRATIONS)
    return database.pool


class CountingEncoder:
    """The shipped model, counting its calls and the texts of each."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.fail = False
        self._encode = store.default_encoder()

    def __call__(self, texts: list[str]) -> Vectors:
        if self.fail:
            raise RuntimeError("the model failed")
        self.calls.append(len(texts))
        return self._encode(texts)


@pytest.fixture
def encoder() -> Iterator[CountingEncoder]:
    counting = CountingEncoder()
    shipped = store.text_encoder

    def use() -> TextEncoder:
        return counting

    store.text_encoder = use
    try:
        yield counting
    finally:
        store.text_encoder = shipped


async def register_and_approve(pool: asyncpg.Pool, prefix: str = "") -> None:
    """Every profile registered and some approved, without letting the worker run."""
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    for rid in PROFILES:
        await apply(pool, registered(prefix + rid, PROFILES[rid]))
    for rid in APPROVED:
        await apply(pool, RegistrationApproved(registration_id=prefix + rid, event_id="e1"))


async def queued(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM embedding_queue"))


async def test_the_consumer_only_queues_and_the_worker_lands_vectors_and_lists(
    pool: asyncpg.Pool, database: FreshDatabase, encoder: CountingEncoder
) -> None:
    await register_and_approve(pool)
    # Nothing embedded on the consumer's path: all queued, no vectors, no lists.
    assert encoder.calls == []
    assert await queued(pool) == len(PROFILES)
    assert await pool.fetchval("SELECT count(*) FROM participant_vectors") == 0
    assert await stored_lists(pool) == {}
    subject = recommendations.Subject("r01", "e1", "approved")
    async with pool.acquire() as conn:
        assert await recommendations.recommendations(conn, subject) == []
        assert await recommendations.pending(conn, "r01")

    worker = recommendations.Worker(pool, database.dsn, batch_size=64, poll_interval=0.2)
    task = asyncio.create_task(worker.run())
    try:

        async def converged() -> bool:
            lists = await stored_lists(pool)
            return await queued(pool) == 0 and set(lists) == set(APPROVED)

        await wait_until(converged, limit=60, what="the worker to land every vector and list")
        assert not task.done()
        lists = await assert_current(pool)
        assert partners_of(lists, "r01")[0] == "r02"
        # One model call for the whole backlog: every request and offer of 7 profiles.
        assert encoder.calls == [sum(len(p.requests) + len(p.offers) for p in PROFILES.values())]

        # Woken by NOTIFY: a profile change is embedded again and the lists follow.
        changed = PROFILES["r05"].model_copy(
            update={"offers": ["recycling of lithium batteries from e-scooters"]}
        )
        await apply(pool, ProfileUpdated(registration_id="r05", event_id="e1", profile=changed))

        async def moved() -> bool:
            lists = await stored_lists(pool)
            return await queued(pool) == 0 and partners_of(lists, "r01")[:1] == ["r05"]

        await wait_until(moved, limit=30, what="r05's new vectors to land")
        await assert_current(pool)
        async with pool.acquire() as conn:
            assert not await recommendations.pending(conn, "r01")
            assert (await recommendations.recommendations(conn, subject))[0]["reasons"]

        # A request between r01 and r05: the pair subscription's handler only queues
        # both lists, and the running worker computes them anew.
        requested = await request_pending(pool, "m1", "r05", "r01")
        async with pool.acquire() as conn, conn.transaction():
            handler = recommendations.PAIR_HANDLERS[requested.ce_type()]
            await handler(conn, Envelope.wrap(requested, key="e1"), requested)

        async def apart() -> bool:
            lists = await stored_lists(pool)
            waiting = await pool.fetchval("SELECT count(*) FROM list_refresh_queue")
            return waiting == 0 and "r05" not in partners_of(lists, "r01")

        await wait_until(apart, limit=30, what="the worker to take the queued lists")
        await assert_current(pool)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_vectors_that_landed_before_a_crash_are_brought_into_the_lists_at_start(
    pool: asyncpg.Pool, encoder: CountingEncoder
) -> None:
    await register_and_approve(pool)
    # A round that stored the vectors and died before bringing anyone into the lists.
    async with pool.acquire() as conn:
        batch, _ = await embedding.due(conn, 64)
    vectors = await store.compute_vectors([d.profile for d in batch])
    async with pool.acquire() as conn, conn.transaction():
        assert len(await embedding.land(conn, batch, vectors)) == len(PROFILES)
    assert await stored_lists(pool) == {} and await queued(pool) == 0

    assert await recommendations.recover(pool) == (0, len(APPROVED))
    lists = await assert_current(pool)
    assert set(lists) == set(APPROVED)
    assert await recommendations.recover(pool) == (0, 0)  # nothing left to do


async def test_texts_changed_while_the_model_runs_are_embedded_again(
    pool: asyncpg.Pool, encoder: CountingEncoder
) -> None:
    await register_and_approve(pool)
    async with pool.acquire() as conn:
        batch, _ = await embedding.due(conn, 64)
    vectors = await store.compute_vectors([d.profile for d in batch])
    changed = PROFILES["r05"].model_copy(update={"offers": ["recycling of lithium batteries"]})
    await apply(pool, ProfileUpdated(registration_id="r05", event_id="e1", profile=changed))
    async with pool.acquire() as conn, conn.transaction():
        landed = await embedding.land(conn, batch, vectors)
    assert sorted(d.profile.registration_id for d in landed) == sorted(set(PROFILES) - {"r05"})
    assert await pool.fetchval("SELECT registration_id FROM embedding_queue") == "r05"

    assert await recommendations.drain(pool) == 1
    stored = await pool.fetchval(
        "SELECT offers FROM participant_vectors WHERE registration_id = 'r05'"
    )
    assert stored == ["recycling of lithium batteries"]
    await recommendations.recover(pool)  # the first round's approved ones, as at a start
    lists = await assert_current(pool)
    assert set(lists) == set(APPROVED)


async def test_a_batch_the_model_fails_on_is_postponed(
    pool: asyncpg.Pool, encoder: CountingEncoder
) -> None:
    await register_and_approve(pool)
    encoder.fail = True
    assert await recommendations.embed_due(pool) == len(PROFILES)
    rows = await pool.fetch("SELECT attempts, not_before > now() AS later FROM embedding_queue")
    assert len(rows) == len(PROFILES) and all(r["attempts"] == 1 and r["later"] for r in rows)
    assert await recommendations.embed_due(pool) == 0  # not due yet
    encoder.fail = False
    await pool.execute("UPDATE embedding_queue SET not_before = now()")  # the back-off passed
    assert await recommendations.drain(pool) == len(PROFILES)
    await recommendations.recover(pool)
    assert set(await assert_current(pool)) == set(APPROVED)


async def test_a_rebuilt_projection_reuses_the_stored_vectors(
    pool: asyncpg.Pool, encoder: CountingEncoder
) -> None:
    await register_and_approve(pool)
    await recommendations.drain(pool)
    before = await assert_current(pool)
    calls = list(encoder.calls)
    # The projection refolded from registration's events by the projection's handlers
    # alone, and the lists lost (the rebuild computes them from the stored vectors too,
    # `Plan.finish`; here the worker's recovery must bring them back from those vectors).
    await pool.execute("TRUNCATE participants, brokerage_events, recommendation_lists")
    events = [
        brokerage_event("e1", list(MeetingType)),
        *(registered(rid, PROFILES[rid]) for rid in PROFILES),
        *(RegistrationApproved(registration_id=rid, event_id="e1") for rid in APPROVED),
    ]
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await projection.HANDLERS[event.ce_type()](conn, Envelope.wrap(event, key="e1"), event)
    # At the worker's start: the stored vectors match the texts, nothing is embedded;
    # the approved participants without a list are brought in from them.
    assert await recommendations.recover(pool) == (0, len(APPROVED))
    assert encoder.calls == calls
    assert await assert_current(pool) == before


async def test_a_worker_killed_mid_batch_loses_nothing(
    pool: asyncpg.Pool, database: FreshDatabase, processes: Processes
) -> None:
    many = {f"{n:02d}-{rid}": rid for n in range(6) for rid in PROFILES}  # 42 participants
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    for rid, like in many.items():
        await apply(pool, registered(rid, PROFILES[like]))
        if like in APPROVED:
            await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    args = ["--dsn", database.dsn, "--batch-size", "5", "--model-delay", "0.3"]
    first = processes.start(
        "tests.integration.procs.embedding_worker_proc", *args, name="embedding-worker-1"
    )

    async def some_landed() -> bool:
        assert first.poll() is None, processes.log("embedding-worker-1")
        return int(await pool.fetchval("SELECT count(*) FROM participant_vectors")) >= 10

    await wait_until(some_landed, limit=60, what="a few batches to land")
    await processes.kill(first)
    left = await queued(pool)
    assert 0 < left < len(many)

    second = processes.start(
        "tests.integration.procs.embedding_worker_proc", *args, name="embedding-worker-2"
    )
    approved = {rid for rid, like in many.items() if like in APPROVED}

    async def converged() -> bool:
        assert second.poll() is None, processes.log("embedding-worker-2")
        return await queued(pool) == 0 and set(await stored_lists(pool)) == approved

    await wait_until(converged, limit=120, what="the restarted worker to finish")
    assert await pool.fetchval("SELECT count(*) FROM participant_vectors") == len(many)
    await assert_current(pool)


async def test_the_worker_starts_over_after_a_database_error_and_ends_on_a_bug(
    pool: asyncpg.Pool, database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error restarts its loop; anything else ends the task, which the
    runtime's readiness reports (`background`: a done task is down)."""
    failures: list[Exception] = [
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        RuntimeError("a bug"),
    ]
    calls = 0

    async def failing_due(conn: asyncpg.Connection, limit: int) -> None:
        nonlocal calls
        calls += 1
        raise failures.pop(0)

    monkeypatch.setattr(embedding, "due", failing_due)
    worker = recommendations.Worker(pool, database.dsn, poll_interval=0.1, standby_interval=0.1)
    with pytest.raises(RuntimeError, match="a bug"):
        await asyncio.wait_for(worker.run(), 30)
    assert calls == 2 and not worker.is_leader


async def test_a_run_of_registrations_is_queued_as_one_by_one(
    pool: asyncpg.Pool, encoder: CountingEncoder
) -> None:
    await register_and_approve(pool, prefix="old-")
    await recommendations.drain(pool)  # old-* have vectors: texts already embedded
    queue = await pool.fetch("SELECT registration_id FROM embedding_queue")
    assert queue == []
    # New registrations, one of them with texts (and quotes) stored before, one twice.
    tricky = PROFILES["r07"].model_copy(update={"requests": ['a "quoted", {odd} text\\']})
    events = [
        registered("n1", PROFILES["r01"]),
        registered("n2", tricky),
        registered("old-r03", PROFILES["r03"]),  # same texts as stored: nothing to do
        registered("n1", PROFILES["r02"]),  # the last profile of n1 decides
    ]
    run = [(Envelope.wrap(e, key="e1"), e) for e in events]
    async with pool.acquire() as conn, conn.transaction():
        await recommendations.BATCH_HANDLERS[events[0].ce_type()](conn, run)
    rows = await pool.fetch(
        "SELECT registration_id, generation FROM embedding_queue ORDER BY registration_id"
    )
    assert [(r["registration_id"], r["generation"]) for r in rows] == [("n1", 1), ("n2", 1)]
    # The texts compared as stored: the same tricky texts, once embedded, queue nothing.
    await pool.execute("DELETE FROM embedding_queue")
    await apply(pool, registered("n2", tricky))  # one by one (the projection is idempotent)
    await recommendations.drain(pool)
    async with pool.acquire() as conn, conn.transaction():
        await recommendations.BATCH_HANDLERS[events[0].ce_type()](conn, run[1:3])
    assert await queued(pool) == 0


async def test_rounds_of_lists_only_are_spaced_by_the_coalescing_wait(
    pool: asyncpg.Pool, database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While decisions keep arriving (a round always finds some), consecutive rounds of
    lists only wait `coalesce` between them, so that each takes what a burst queued
    meanwhile rather than computing the event's lists again back to back."""
    rounds: list[float] = []
    done = asyncio.Event()

    async def busy_refresh(pool: asyncpg.Pool) -> int:
        rounds.append(asyncio.get_running_loop().time())
        if len(rounds) == 4:
            done.set()
        return 1 if len(rounds) < 4 else 0

    monkeypatch.setattr(worker_module, "refresh_due", busy_refresh)
    worker = recommendations.Worker(pool, database.dsn, poll_interval=5, coalesce=0.3)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    gaps = [b - a for a, b in itertools.pairwise(rounds)]
    assert len(gaps) == 3 and min(gaps) >= 0.29, gaps
