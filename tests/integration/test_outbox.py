"""The transactional outbox and its relay against the real broker and server.

Concurrent writers append to shared streams while a relay publishes; every
event must reach Kafka exactly once, in per-stream order, with its CloudEvents
headers, including an event whose transaction took its outbox id early and
committed after later ids had been published.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from typing import cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared import eventstore, json_codec
from shared.envelope import CONTENT_TYPE, SPEC_VERSION, Envelope
from shared.eventstore import ConcurrencyConflict
from shared.outbox import BACKLOG, MARK_AND_READ, OutboxRelay, create_producer
from tests.integration.support import (
    CounterIncremented,
    FreshDatabase,
    FreshTopics,
    Infra,
    Record,
    counter_model,
    headers_of,
    read_topic,
    value_of,
    wait_until,
)

pytestmark = pytest.mark.integration

WRITERS = 8
TRANSACTIONS_PER_WRITER = 30
STREAMS = 12
KEYS = 4  # streams share keys: stream i is keyed by "key-{i % KEYS}"


def key_of(stream: str) -> str:
    return f"key-{int(stream.rsplit('-', 1)[1]) % KEYS}"


class Relays:
    """Relays running as asyncio tasks, each with its own real idempotent producer."""

    def __init__(self, infra: Infra, database: FreshDatabase, service: str) -> None:
        self._infra = infra
        self._database = database
        self._service = service
        self._running: dict[int, tuple[asyncio.Task[None], AIOKafkaProducer]] = {}

    async def start(
        self,
        client_id: str,
        *,
        batch_size: int = 100,
        kind: type[OutboxRelay] = OutboxRelay,
        retention_seconds: float = 0.0,
    ) -> OutboxRelay:
        producer = create_producer(self._infra.bootstrap_servers, client_id=client_id)
        await producer.start()
        relay = kind(
            self._database.dsn,
            producer,
            self._service,
            batch_size=batch_size,
            poll_interval=0.2,
            standby_interval=0.2,
            retention_seconds=retention_seconds,
        )
        self._running[id(relay)] = (asyncio.create_task(relay.run(), name=client_id), producer)
        return relay

    async def stop(self, relay: OutboxRelay) -> None:
        task, producer = self._running.pop(id(relay))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()

    async def stop_all(self) -> None:
        for task, producer in self._running.values():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await producer.stop()
        self._running.clear()


@pytest.fixture
async def relays(
    infra: Infra, database: FreshDatabase, topics: FreshTopics
) -> AsyncIterator[Relays]:
    running = Relays(infra, database, topics.producer)
    try:
        yield running
    finally:
        await running.stop_all()


async def append_with_retry(
    conn: asyncpg.Connection,
    model: type[CounterIncremented],
    stream: str,
    count: int,
    *,
    max_sleep: float = 0.005,
) -> tuple[list[str], int]:
    """Append `count` events to `stream` at its current version, retrying on conflicts.

    Sleeps at random inside the transaction so that commits interleave.
    Returns the ids appended and how many conflicts it took.
    """
    conflicts = 0
    while True:
        try:
            async with conn.transaction():
                version = await eventstore.current_version(conn, stream)
                await asyncio.sleep(random.uniform(0, max_sleep))
                envelopes = [
                    Envelope.wrap(
                        model(counter=stream, stream=stream, n=version + i), key=key_of(stream)
                    )
                    for i in range(1, count + 1)
                ]
                await eventstore.append(conn, stream, version, envelopes)
                await asyncio.sleep(random.uniform(0, max_sleep))
            return [e.id for e in envelopes], conflicts
        except ConcurrencyConflict:
            conflicts += 1


async def drained(pool: asyncpg.Pool) -> bool:
    left = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return bool(left == 0)


def check_cloudevents_headers(records: list[Record], model: type[CounterIncremented]) -> None:
    for record in records:
        headers = headers_of(record)
        assert headers["ce_specversion"] == SPEC_VERSION
        assert headers["ce_source"] == f"/services/{model.producer}"
        assert headers["ce_type"] == model.ce_type()
        assert headers["content-type"] == CONTENT_TYPE
        assert headers["ce_id"]
        assert datetime.fromisoformat(headers["ce_time"]).tzinfo is not None
        assert record.key is not None


def check_stream_order(records: list[Record]) -> dict[str, list[int]]:
    """Per stream, the versions in the order Kafka holds them; each stream on one partition."""
    versions: dict[str, list[int]] = defaultdict(list)
    partition_of_key: dict[bytes, int] = {}
    for record in records:  # ordered by (partition, offset)
        assert record.key is not None
        assert partition_of_key.setdefault(record.key, record.partition) == record.partition
        data = value_of(record)
        versions[data["stream"]].append(data["n"])
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"{stream} out of order: {seen}"
    return versions


async def test_concurrent_writers_reach_kafka_exactly_once_in_stream_order(
    infra: Infra, database: FreshDatabase, topics: FreshTopics, relays: Relays
) -> None:
    model = counter_model(topics.producer)
    streams = [f"stream-{i}" for i in range(STREAMS)]
    written: list[str] = []
    conflicts = 0
    hazard: dict[str, object] = {}

    async def writer(seed: int) -> None:
        nonlocal conflicts
        rng = random.Random(seed)
        conn = await asyncpg.connect(database.dsn)
        try:
            for _ in range(TRANSACTIONS_PER_WRITER):
                ids, lost = await append_with_retry(
                    conn, model, rng.choice(streams), rng.randint(1, 3)
                )
                written.extend(ids)
                conflicts += lost
        finally:
            await conn.close()

    async def late_writer(started: asyncio.Event) -> None:
        """Takes outbox ids early, commits only once later ids are published."""
        conn = await asyncpg.connect(database.dsn)
        try:
            async with conn.transaction():
                envelopes = [
                    Envelope.wrap(model(counter="late", stream="late-0", n=n), key=key_of("late-0"))
                    for n in (1, 2)
                ]
                await eventstore.append(conn, "late-0", 0, envelopes)
                late_ids = await conn.fetch(
                    "SELECT id FROM outbox WHERE event_id = ANY($1::text[])",
                    [e.id for e in envelopes],
                )
                top = max(r["id"] for r in late_ids)
                started.set()

                async def overtaken() -> bool:
                    later = await database.pool.fetchval(
                        "SELECT count(*) FROM outbox WHERE id > $1 AND published_at IS NOT NULL",
                        top,
                    )
                    return bool(later >= 50)

                await wait_until(overtaken, limit=30, what="later outbox ids to be published")
                hazard["overtaken_by"] = await database.pool.fetchval(
                    "SELECT count(*) FROM outbox WHERE id > $1 AND published_at IS NOT NULL", top
                )
            written.extend(e.id for e in envelopes)
            hazard["ids"] = [e.id for e in envelopes]
        finally:
            await conn.close()

    relay = await relays.start("relay-main")
    late_started = asyncio.Event()
    late = asyncio.create_task(late_writer(late_started))
    await late_started.wait()
    await asyncio.gather(*(writer(seed) for seed in range(WRITERS)), late)
    assert relay.is_leader
    await wait_until(lambda: drained(database.pool), what="the outbox to drain")
    await relays.stop(relay)

    stored = await database.pool.fetchval("SELECT count(*) FROM events")
    assert stored == len(written) == await database.pool.fetchval("SELECT count(*) FROM outbox")

    records = await read_topic(infra.bootstrap_servers, topics.events)
    ids = [headers_of(r)["ce_id"] for r in records]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates on Kafka"
    assert set(ids) == set(written), "events missing from Kafka"
    check_cloudevents_headers(records, model)
    versions = check_stream_order(records)
    assert versions["late-0"] == [1, 2]
    late_ids = hazard["ids"]
    assert isinstance(late_ids, list)
    assert all(ids.count(i) == 1 for i in late_ids)
    assert isinstance(hazard["overtaken_by"], int) and hazard["overtaken_by"] >= 50
    # Sanity: the writers really did contend for streams.
    assert conflicts > 0
    print(
        f"\noutbox: {len(written)} events, {conflicts} conflicts retried, late transaction"
        f" committed after {hazard['overtaken_by']} later rows were published"
    )


async def test_two_relays_only_one_leads_and_nothing_is_duplicated(
    infra: Infra, database: FreshDatabase, topics: FreshTopics, relays: Relays
) -> None:
    model = counter_model(topics.producer)
    written: list[str] = []
    leaders_seen: list[int] = []
    stop_sampling = asyncio.Event()

    async def sample(watched: list[OutboxRelay]) -> None:
        while not stop_sampling.is_set():
            leaders_seen.append(sum(r.is_leader for r in watched))
            await asyncio.sleep(0.005)

    async def write(rounds: int) -> None:
        async def one(stream: str) -> None:
            async with database.pool.acquire() as conn:
                for _ in range(rounds):
                    ids, _ = await append_with_retry(conn, model, stream, 3, max_sleep=0.002)
                    written.extend(ids)

        await asyncio.gather(*(one(f"stream-{i}") for i in range(STREAMS // 2)))

    # Started at once: one takes the advisory lock, the other stands by.
    a, b = await asyncio.gather(
        relays.start("relay-a", batch_size=50), relays.start("relay-b", batch_size=50)
    )
    sampler = asyncio.create_task(sample([a, b]))
    await wait_until(lambda: a.is_leader or b.is_leader, limit=30, what="a leader")
    await write(10)
    await wait_until(lambda: drained(database.pool), what="the outbox to drain")
    leader, standby = (a, b) if a.is_leader else (b, a)
    assert not standby.is_leader

    # The leader goes away (between batches): the standby takes over and
    # publishes what is written next.
    await relays.stop(leader)
    await wait_until(lambda: standby.is_leader, limit=30, what="the standby to take over")
    await write(5)
    await wait_until(lambda: drained(database.pool), what="the outbox to drain")
    stop_sampling.set()
    await sampler

    assert max(leaders_seen) == 1, "two relays led at once"
    assert len(leaders_seen) > 20
    records = await read_topic(infra.bootstrap_servers, topics.events)
    ids = [headers_of(r)["ce_id"] for r in records]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates on Kafka"
    assert set(ids) == set(written)
    check_stream_order(records)


async def test_events_one_at_a_time_cost_the_relay_one_statement_each(
    relays: Relays, infra: Infra, database: FreshDatabase, topics: FreshTopics
) -> None:
    """Each round marks the rows the round before it sent in the statement that reads the
    next ones, so events written one at a time cost one statement each (two before: a read,
    then a mark); the last round's rows are marked once the relay has been idle briefly."""
    statements: list[str] = []

    class Counted(OutboxRelay):
        async def _connect(self) -> asyncpg.Connection:
            conn = await super()._connect()
            conn.add_query_logger(lambda query: statements.append(query.query))
            return conn

    model = counter_model(topics.producer)
    relay = await relays.start("relay-counted", kind=Counted)
    await wait_until(lambda: relay.is_leader, limit=10, what="the relay leads")
    events = 20
    async with database.pool.acquire() as conn:
        for _ in range(events):
            await append_with_retry(conn, model, "stream-0", 1, max_sleep=0)
            await asyncio.sleep(0.03)
    await wait_until(lambda: drained(database.pool), limit=10, what="every row marked")
    assert len(await read_topic(infra.bootstrap_servers, topics.events)) == events
    rounds = [q for q in statements if q == MARK_AND_READ]
    assert not [q for q in statements if q.startswith("UPDATE")]
    # One per event, one for the last mark, and the polls of the wait (0.2 s each).
    assert events <= len(rounds) <= events + 8, len(rounds)


async def test_a_row_that_refers_to_its_stored_event_is_published_with_that_envelope(
    infra: Infra, database: FreshDatabase, topics: FreshTopics, relays: Relays
) -> None:
    """An outbox row without an envelope (a writer that stores the event once, as
    notification's delivery queue does) publishes the event-store row's envelope, among
    rows that carry their own, in outbox order."""
    model = counter_model(topics.producer)
    envelopes = [
        Envelope.wrap(model(counter="c", stream="by-ref", n=n), key="key-0").with_trace(
            f"00-{n:032x}-{n:016x}-01" if n % 2 else None
        )
        for n in range(1, 7)
    ]
    async with database.pool.acquire() as conn, conn.transaction():
        for n, envelope in enumerate(envelopes, start=1):
            if n % 3:  # stored, its outbox row referring to it
                await eventstore.append(conn, "by-ref", n - 1, [envelope], publish=False)
                await conn.execute(
                    "INSERT INTO outbox (event_id, topic, key, envelope) VALUES ($1, $2, $3, NULL)",
                    envelope.id,
                    f"{topics.producer}.events",
                    envelope.key,
                )
            else:  # stored and published as every other writer does
                await eventstore.append(conn, "by-ref", n - 1, [envelope])
    relay = await relays.start("relay-by-reference")
    await wait_until(lambda: drained(database.pool), what="the outbox to drain")
    await relays.stop(relay)
    records = await read_topic(infra.bootstrap_servers, topics.events)
    assert [headers_of(r)["ce_id"] for r in records] == [e.id for e in envelopes]
    assert [value_of(r) for r in records] == [e.data for e in envelopes]
    # The trace goes on (the relay's publish span, where a sampler records one, is a child
    # in the same trace: its own span id, so only the trace ids are compared).
    sent = [headers_of(r).get("traceparent") for r in records][::2]
    assert [t.split("-")[1] if t else None for t in sent] == [
        e.traceparent.split("-")[1] if e.traceparent else None for e in envelopes
    ][::2]
    check_cloudevents_headers(records, model)


async def test_the_leader_deletes_published_rows_past_the_retention_and_nothing_else(
    infra: Infra, database: FreshDatabase, topics: FreshTopics, relays: Relays
) -> None:
    """Rows published longer ago than the retention go (from before this relay led too);
    rows published since, and rows not yet published however old, stay; the events stay
    in the event store."""
    model = counter_model(topics.producer)
    async with database.pool.acquire() as conn:
        for n in range(12):
            await append_with_retry(conn, model, f"stream-{n}", 1, max_sleep=0)
    relay = await relays.start("relay-purge-off")
    await wait_until(lambda: drained(database.pool), what="the outbox to drain")
    await relays.stop(relay)
    pool = database.pool
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM outbox ORDER BY id")]
    assert len(ids) == 12
    old, recent, unsent = ids[:6], ids[6:9], ids[9:]
    await pool.execute(
        "UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id = ANY($1)", old
    )
    # Not published (as if its transaction had just committed), written two hours ago.
    await pool.execute("UPDATE outbox SET published_at = NULL WHERE id = ANY($1)", unsent)
    relay = await relays.start("relay-purge", retention_seconds=3600)
    await wait_until(
        lambda: _count(pool, "SELECT count(*) FROM outbox WHERE id = ANY($1)", old, equal=0),
        what="the old rows deleted",
    )
    await wait_until(lambda: drained(pool), what="the unsent rows published")
    await relays.stop(relay)
    left = [r["id"] for r in await pool.fetch("SELECT id FROM outbox ORDER BY id")]
    assert left == recent + unsent
    assert await pool.fetchval("SELECT count(*) FROM events") == 12
    await pool.execute("UPDATE outbox SET published_at = now() - interval '2 hours'")
    keeping = OutboxRelay(database.dsn, cast(AIOKafkaProducer, None), "keeps", retention_seconds=0)
    async with pool.acquire() as conn:
        assert await keeping.purge(conn) == 0  # retention 0: kept for good
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 6


async def _count(pool: asyncpg.Pool, query: str, *args: object, equal: int) -> bool:
    return bool(await pool.fetchval(query, *args) == equal)


async def test_a_row_of_many_stored_events_publishes_each_in_order(
    infra: Infra, database: FreshDatabase, topics: FreshTopics, relays: Relays
) -> None:
    """An outbox row may refer to several stored events (`events`: notification's queue
    writes one row per chunk of deliveries): each is published, in the row's order, among
    rows of one event, also where a row holds more events than the relay reads in a round;
    every row ends marked, and the backlog counts events."""
    model = counter_model(topics.producer)
    envelopes = [
        Envelope.wrap(model(counter="c", stream=f"many-{n}", n=1), key=f"key-{n % 2}")
        for n in range(12)
    ]
    # Rows: one event, five, one (with its envelope), four, one.
    rows = [envelopes[0:1], envelopes[1:6], envelopes[6:7], envelopes[7:11], envelopes[11:12]]
    async with database.pool.acquire() as conn, conn.transaction():
        for n, envelope in enumerate(envelopes):
            await eventstore.append(conn, f"many-{n}", 0, [envelope], publish=False)
        for n, row in enumerate(rows):
            await conn.execute(
                "INSERT INTO outbox (event_id, topic, key, envelope, events)"
                " VALUES ($1, $2, $3, $4::jsonb, $5::uuid[])",
                row[0].id,
                f"{topics.producer}.events",
                row[0].key,
                json_codec.dumps(row[0].to_record()) if n == 2 else None,
                [e.id for e in row] if len(row) > 1 else None,
            )
        assert await conn.fetchval(BACKLOG) == 12
    relay = await relays.start("relay-rows-of-many", batch_size=3)
    await wait_until(lambda: drained(database.pool), what="the outbox to drain")
    await relays.stop(relay)
    records = await read_topic(infra.bootstrap_servers, topics.events)
    by_key: dict[bytes | None, list[str]] = defaultdict(list)
    for record in records:  # ordered by (partition, offset): each key's order
        by_key[record.key].append(headers_of(record)["ce_id"])
    assert sorted(headers_of(r)["ce_id"] for r in records) == sorted(e.id for e in envelopes)
    for key in (b"key-0", b"key-1"):
        assert by_key[key] == [e.id for e in envelopes if e.key.encode() == key]
    assert [value_of(r) for r in records if headers_of(r)["ce_id"] == envelopes[3].id] == [
        envelopes[3].data
    ]
    assert await database.pool.fetchval(BACKLOG) == 0
