"""The recommendations worker: matching's background task that computes sentence
vectors in batches and brings the participants they belong to into the lists, and
recomputes the lists that meeting requests changed (`refresh_due`: the pair
subscription only queues them, `handlers.queue_lists`).

One worker per database is active: it holds a session advisory lock on a
connection of its own (other processes wait on standby; a killed process's lock
is freed with its socket) and LISTENs there for the queue's NOTIFY, polling as a
fallback. Each round (`embed_due`):

1. reads up to `batch_size` due rows and their participants' current profiles
   (no transaction held);
2. embeds all their requests and offers in one model call, in a thread;
3. stores the vectors and deletes the rows it embedded (`embedding.land`), one
   short transaction;
4. for each brokerage event concerned, under its lock, brings the approved
   participants whose vectors have landed and who have no list yet into the
   lists (`handlers.refresh`, incremental), one transaction per event.

A crash between 3 and 4 loses nothing: at start (`recover`) the worker queues
participants without current vectors (e.g. after a rebuild, or data from before
this worker existed: stored vectors are reused, not recomputed) and brings in
every approved participant with vectors but no list.

Each round also takes the queued decisions (`list_entry_queue`: approvals, rejections,
withdrawals, `handlers.enter_queued`) and the queued lists (`list_refresh_queue`: meeting
requests, `handlers.refresh_queued`), per brokerage event in one transaction under its
lock: what a burst queued while a round ran is computed once in the next. The rows are
read before that transaction and deleted at its end, unless queued again meanwhile
(migration 018), so a consumer queueing a row waits at most for a round's commit.

Errors: a batch the model fails on is postponed with a back-off; a database
error restarts the worker's loop; anything else ends the task, and `/ready`
reports the background task down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import asyncpg

from services.matching.recommendations import embedding
from services.matching.recommendations.cache import lock
from services.matching.recommendations.handlers import (
    LIST_REFRESH_CHANNEL,
    enter_queued,
    read_queued,
    refresh_many,
    refresh_queued,
)
from services.matching.recommendations.store import (
    MODEL,
    PROFILE_COLUMNS,
    compute_vectors,
    profile_from_row,
)
from shared.db import advisory_lock_id
from shared.outbox import LEASE_KEEPALIVES

log = logging.getLogger(__name__)

LOCK_NAME = "matching-embedding-worker"


async def bring_in(pool: asyncpg.Pool, event_ids: Iterable[str], ids: list[str] | None) -> int:
    """Put approved participants whose vectors landed and who have no list yet into their
    events' lists (only `ids`, or every such participant); how many."""
    count = 0
    for event_id in sorted(set(event_ids)):
        async with pool.acquire() as conn, conn.transaction():
            # Locked first: a decision committed meanwhile is seen by the query below,
            # and one still running waits and then applies its own change after ours.
            await lock(conn, event_id)
            rows = await conn.fetch(
                f"SELECT {PROFILE_COLUMNS} FROM participants p"
                " JOIN participant_vectors v ON v.registration_id = p.registration_id"
                " WHERE p.event_id = $1 AND p.status = 'approved' AND v.model = $2"
                " AND v.requests = p.requests AND v.offers = p.offers"
                " AND ($3::text[] IS NULL OR p.registration_id = ANY($3::text[]))"
                " AND NOT EXISTS (SELECT 1 FROM recommendation_lists l"
                " WHERE l.registration_id = p.registration_id)"
                " ORDER BY p.registration_id",
                event_id,
                MODEL,
                ids,
            )
            await refresh_many(conn, event_id, [(profile_from_row(r), True) for r in rows])
            count += len(rows)
    return count


async def embed_due(pool: asyncpg.Pool, batch_size: int = 64, max_backoff: float = 300.0) -> int:
    """One round: embed up to `batch_size` due participants and bring the approved ones
    into the lists. Returns how many due rows it took (0: nothing due)."""
    async with pool.acquire() as conn:
        batch, gone = await embedding.due(conn, batch_size)
        if gone:
            await embedding.forget(conn, gone)
    if not batch:
        return len(gone)
    started = time.perf_counter()
    try:
        vectors = await compute_vectors([d.profile for d in batch])
    except Exception:
        log.exception("embedding %d profiles failed; postponed", len(batch))
        async with pool.acquire() as conn:
            await embedding.postpone(conn, batch, max_backoff)
        return len(batch) + len(gone)
    model_s = time.perf_counter() - started
    async with pool.acquire() as conn, conn.transaction():
        landed = await embedding.land(conn, batch, vectors)
    brought = await bring_in(
        pool, (d.event_id for d in landed), [d.profile.registration_id for d in landed]
    )
    log.debug(
        "embedded %d profiles in %.0f ms (%d landed, %d brought into lists)",
        len(batch),
        1000 * model_s,
        len(landed),
        brought,
    )
    return len(batch) + len(gone)


async def refresh_due(pool: asyncpg.Pool) -> int:
    """One round of the queued decisions and lists: what the queues hold, read first
    (no transaction held), then per brokerage event one transaction (the decisions first:
    the lists are then computed among who is in); how many rows."""
    async with pool.acquire() as conn:
        queued = await read_queued(conn)
    taken = 0
    for event_id in sorted(queued):
        decisions, lists = queued[event_id]
        async with pool.acquire() as conn, conn.transaction():
            taken += await enter_queued(conn, event_id, decisions)
            taken += await refresh_queued(conn, event_id, lists)
    return taken


async def drain(pool: asyncpg.Pool, batch_size: int = 64) -> int:
    """Embed, and refresh queued lists, until nothing is due (tests, tools); how many
    rows were taken."""
    total = 0
    while taken := await embed_due(pool, batch_size) + await refresh_due(pool):
        total += taken
    return total


async def recover(pool: asyncpg.Pool) -> tuple[int, int]:
    """Queue participants without current vectors; bring in approved ones without a list."""
    async with pool.acquire() as conn:
        queued = await embedding.enqueue_missing(conn)
        events = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM brokerage_events")]
    return queued, await bring_in(pool, events, None)


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        *,
        batch_size: int = 64,
        poll_interval: float = 1.0,
        standby_interval: float = 1.0,
        coalesce: float = 0.1,
    ) -> None:
        self._pool = pool
        # After a wake-up, how long to let the rest of a burst queue before a round:
        # one round then takes many requests' lists (each round reads the event's
        # participants and their open requests again), at this cost in freshness.
        self._coalesce = coalesce
        self._dsn = dsn
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self._wakeup = asyncio.Event()
        self.is_leader = False

    async def run(self) -> None:
        """Work forever; a database error starts over, anything else ends the task."""
        while True:
            try:
                await self._run_once()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                log.exception("embedding worker: database error; starting over")
                await asyncio.sleep(self._standby_interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("embedding worker stopped")
                raise
            finally:
                self.is_leader = False

    async def _run_once(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, server_settings=LEASE_KEEPALIVES
        )
        try:
            lock_id = advisory_lock_id(LOCK_NAME)
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_id):  # noqa: ASYNC110
                await asyncio.sleep(self._standby_interval)
            self.is_leader = True
            await conn.add_listener(embedding.CHANNEL, self._on_notify)
            await conn.add_listener(LIST_REFRESH_CHANNEL, self._on_notify)
            queued, brought = await recover(self._pool)
            if queued or brought:
                log.info(
                    "embedding worker: %d participants queued, %d brought into lists at start",
                    queued,
                    brought,
                )
            while True:
                self._wakeup.clear()
                while True:
                    embedded = await embed_due(self._pool, self._batch_size)
                    refreshed = await refresh_due(self._pool)
                    if embedded < self._batch_size and not refreshed:
                        break
                    if embedded < self._batch_size:
                        # Only lists left: let the burst queue more first. Back to back,
                        # a burst of approvals at 40/s had every round compute the
                        # event's lists anew (`refresh_many`), keeping a core and the
                        # event loop the consumers share busy throughout.
                        await asyncio.sleep(self._coalesce)
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
                    await asyncio.sleep(self._coalesce)
                except TimeoutError:
                    pass  # polling fallback: a lost NOTIFY costs one interval at most
        finally:
            await conn.close()

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()
