"""The event store against a real PostgreSQL: optimistic concurrency, idempotent
re-appends, immutability and ordered loads."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from shared import eventstore, json_codec, outbox
from shared.envelope import Envelope
from shared.eventstore import ConcurrencyConflict
from tests.integration.support import FreshDatabase, counter_model

pytestmark = pytest.mark.integration

# The event store needs no broker; outbox rows name `<PRODUCER>.events` all the same.
PRODUCER = "teventstore"
WRITERS = 20
EVENTS_PER_APPEND = 3


def _envelopes(producer: str, stream: str, first: int, count: int, tag: str) -> list[Envelope]:
    model = counter_model(producer)
    return [
        Envelope.wrap(
            model(counter=tag, amount=1, stream=stream, n=first + i),
            key=stream,
            subject=stream,
            correlation_id=f"corr-{tag}",
        )
        for i in range(count)
    ]


async def _race(
    database: FreshDatabase, stream: str, expected: int, batches: list[list[Envelope]]
) -> list[int | ConcurrencyConflict]:
    """Each batch appended at `expected` by its own connection and transaction, all at once."""
    connections = [await asyncpg.connect(database.dsn) for _ in batches]
    go = asyncio.Event()

    async def attempt(conn: asyncpg.Connection, batch: list[Envelope]) -> int | ConcurrencyConflict:
        await go.wait()
        try:
            async with conn.transaction():
                version = await eventstore.append(conn, stream, expected, batch)
                # Hold the transaction open: the others pile up behind our rows.
                await asyncio.sleep(0.2)
                return version
        except ConcurrencyConflict as conflict:
            return conflict

    try:
        tasks = [
            asyncio.create_task(attempt(c, b)) for c, b in zip(connections, batches, strict=True)
        ]
        await asyncio.sleep(0.05)
        go.set()
        return await asyncio.gather(*tasks)
    finally:
        for conn in connections:
            await conn.close()


async def test_concurrent_appends_exactly_one_wins_each_version(
    database: FreshDatabase,
) -> None:
    stream = f"counter-{uuid.uuid4().hex[:8]}"
    expected = 0
    for round_no in range(2):
        batches = [
            _envelopes(PRODUCER, stream, expected + 1, EVENTS_PER_APPEND, f"r{round_no}w{w}")
            for w in range(WRITERS)
        ]
        results = await _race(database, stream, expected, batches)

        winners = [i for i, r in enumerate(results) if isinstance(r, int)]
        conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
        assert len(winners) == 1, results
        assert results[winners[0]] == expected + EVENTS_PER_APPEND
        assert len(conflicts) == WRITERS - 1
        assert all(c.stream_id == stream and c.expected == expected for c in conflicts)
        # Most losers read the version before the winner committed, inserted,
        # waited on the winner's primary-key entry and then lost there.
        assert any(c.actual is None for c in conflicts), "no loser raced on the primary key"

        async with database.pool.acquire() as conn:
            stored = await eventstore.load(conn, stream)
            winner_ids = [e.id for e in batches[winners[0]]]
            assert [s.version for s in stored] == list(range(1, expected + EVENTS_PER_APPEND + 1))
            assert [s.envelope.id for s in stored[expected:]] == winner_ids
            loser_ids = [e.id for i, b in enumerate(batches) if i != winners[0] for e in b]
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", loser_ids
                )
                == 0
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE event_id = ANY($1::text[])", loser_ids
                )
                == 0
            )
            assert await conn.fetchval("SELECT count(*) FROM outbox") == len(stored)
        expected += EVENTS_PER_APPEND


async def test_reappending_the_same_event_ids_is_a_no_op(
    database: FreshDatabase,
) -> None:
    stream = "retried-command"
    first = _envelopes(PRODUCER, stream, 1, 2, "a")
    async with database.pool.acquire() as conn:
        async with conn.transaction():
            assert await eventstore.append(conn, stream, 0, first) == 2
        # The retried command: same ids, same (now stale) expected version.
        async with conn.transaction():
            assert await eventstore.append(conn, stream, 0, first) == 2
        # A stale retry after the stream moved on is still a no-op, not a conflict.
        second = _envelopes(PRODUCER, stream, 3, 1, "b")
        async with conn.transaction():
            assert await eventstore.append(conn, stream, 2, second) == 3
        async with conn.transaction():
            assert await eventstore.append(conn, stream, 0, first) == 3
        # New events at a stale version are a conflict.
        with pytest.raises(ConcurrencyConflict) as raised:
            async with conn.transaction():
                await eventstore.append(conn, stream, 2, _envelopes(PRODUCER, stream, 3, 1, "c"))
        assert raised.value.actual == 3
        stored = await eventstore.load(conn, stream)
        assert [s.envelope.id for s in stored] == [e.id for e in [*first, *second]]
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 3
        # Appending needs a transaction: it must commit with the outbox rows.
        with pytest.raises(RuntimeError):
            await eventstore.append(conn, stream, 3, _envelopes(PRODUCER, stream, 4, 1, "d"))


async def test_an_append_is_one_statement(database: FreshDatabase) -> None:
    """The version check, the events and their outbox rows: one round trip (a second
    only when nothing was stored, to tell a retried command from a conflict)."""
    statements: list[str] = []
    async with database.pool.acquire() as conn:
        conn.add_query_logger(lambda query: statements.append(query.query))
        for version in range(3):
            async with conn.transaction():
                batch = _envelopes(PRODUCER, "one-trip", version + 1, 1, "a")
                assert await eventstore.append(conn, "one-trip", version, batch) == version + 1
    # (asyncpg's own type introspection on a fresh connection aside)
    work = [q for q in statements if "events" in q]
    assert len(work) == 3, work


async def test_events_are_immutable(database: FreshDatabase) -> None:
    stream = "immutable"
    async with database.pool.acquire() as conn:
        async with conn.transaction():
            await eventstore.append(conn, stream, 0, _envelopes(PRODUCER, stream, 1, 2, "x"))
        before = await conn.fetch("SELECT * FROM events ORDER BY version")

        with pytest.raises(asyncpg.RaiseError, match="events are immutable"):
            await conn.execute("UPDATE events SET data = '{}'::jsonb WHERE stream_id = $1", stream)
        with pytest.raises(asyncpg.RaiseError, match="events are immutable"):
            await conn.execute("DELETE FROM events WHERE stream_id = $1", stream)
        with pytest.raises(asyncpg.RaiseError, match="events are immutable"):
            await conn.execute("UPDATE events SET version = version + 10")

        assert await conn.fetch("SELECT * FROM events ORDER BY version") == before


async def test_load_returns_the_appended_events_in_order(
    database: FreshDatabase,
) -> None:
    stream, other = "ordered", "other"
    first = _envelopes(PRODUCER, stream, 1, 3, "p")
    second = _envelopes(PRODUCER, stream, 4, 4, "q")
    async with database.pool.acquire() as conn:
        async with conn.transaction():
            assert await eventstore.append(conn, stream, 0, first) == 3
            await eventstore.append(conn, other, 0, _envelopes(PRODUCER, other, 1, 2, "o"))
        async with conn.transaction():
            assert await eventstore.append(conn, stream, 3, second) == 7
        assert await eventstore.current_version(conn, stream) == 7

        stored = await eventstore.load(conn, stream)
        appended = [*first, *second]
        assert [s.version for s in stored] == list(range(1, 8))
        assert all(s.stream_id == stream for s in stored)
        for s, original in zip(stored, appended, strict=True):
            env = s.envelope
            assert (env.id, env.source, env.type, env.key, env.data) == (
                original.id,
                original.source,
                original.type,
                original.key,
                original.data,
            )
            assert env.time == original.time
            assert env.subject == stream and env.correlation_id == original.correlation_id
            assert env.data["n"] == s.version
        assert await eventstore.load(conn, "no-such-stream") == []

        rows = await conn.fetch("SELECT event_id, topic, key, envelope FROM outbox ORDER BY id")
        assert [r["event_id"] for r in rows if r["key"] == stream] == [e.id for e in appended]
        assert {r["topic"] for r in rows} == {f"{PRODUCER}.events"}
        # Each row refers to its stored event, whose envelope the relay reads: the same.
        assert {r["envelope"] for r in rows} == {None}
        sent = await conn.fetch(outbox.MARK_AND_READ, [], 1000)
        assert [r["id"] for r in sent] == sorted(r["id"] for r in sent)
        relayed = {json.loads(r["envelope"])["id"]: json.loads(r["envelope"]) for r in sent}
        for e in appended:
            assert relayed[e.id] == json.loads(json_codec.dumps(e.to_record()))
