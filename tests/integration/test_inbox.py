"""The inbox consumer against the real broker and server: exactly-once effects,
dead letters after bounded attempts, and offsets committed only after the
database transaction. Every scenario runs on both consumer engines: aiokafka
(`shared.inbox`) and FastStream (`shared.faststream_inbox`)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.faststream_inbox import FastStreamInboxConsumer
from shared.inbox import BatchHandler, Handler, InboxConsumer, Subscription
from shared.outbox import create_producer
from tests.integration.support import (
    CounterIncremented,
    FreshDatabase,
    FreshTopics,
    Infra,
    apply_counter,
    committed_offsets,
    counter_model,
    headers_of,
    projection,
    read_topic,
    registry_for,
    send_envelope,
    wait_until,
)

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3


class Harness:
    """One test's consumer group, its producer of test events and its handler calls."""

    def __init__(
        self,
        infra: Infra,
        database: FreshDatabase,
        topics: FreshTopics,
        admin: AIOKafkaAdminClient,
        producer: AIOKafkaProducer,
        engine: str = "aiokafka",
    ) -> None:
        self.engine = engine
        self.infra = infra
        self.database = database
        self.topics = topics
        self.admin = admin
        self.producer = producer
        self.model = counter_model(topics.producer)
        self.group = f"g-{uuid.uuid4().hex[:12]}"
        self.calls: Counter[str] = Counter()  # handler invocations by event id
        self._consumer: InboxConsumer | FastStreamInboxConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def counting(self, inner: Handler = apply_counter) -> Handler:
        async def handler(conn: asyncpg.Connection, env: Envelope, payload: EventPayload) -> None:
            self.calls[env.id] += 1
            await inner(conn, env, payload)

        return handler

    async def start(
        self,
        handler: Handler | None = None,
        *,
        batch_size: int = 500,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        engine = FastStreamInboxConsumer if self.engine == "faststream" else InboxConsumer
        self._consumer = engine(
            name=self.group,
            dsn_pool=self.database.pool,
            bootstrap_servers=self.infra.bootstrap_servers,
            subscription=Subscription(
                topics=(self.topics.events,),
                handlers={self.model.ce_type(): handler or self.counting()},
                registry=registry_for(self.model),
                batch_handlers={self.model.ce_type(): batch_handler} if batch_handler else {},
            ),
            dlq_producer=self.producer,
            max_attempts=MAX_ATTEMPTS,
            batch_size=batch_size,
            retry_backoff=0.01,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._consumer.run(), name=self.group)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def event(self, counter: str, amount: int = 1, *, poison: bool = False) -> Envelope:
        return Envelope.wrap(self.model(counter=counter, amount=amount, poison=poison), key=counter)

    async def send(self, envelope: Envelope) -> tuple[int, int]:
        """Produce `envelope`; return its (partition, offset)."""
        meta = await send_envelope(self.producer, self.topics.events, envelope)
        return meta.partition, meta.offset

    async def committed(self) -> dict[int, int]:
        return await committed_offsets(self.admin, self.group, self.topics.events)

    async def wait_committed(self, total: int, *, limit: float = 60) -> None:
        """Until the group's committed offsets cover `total` records."""

        async def covered() -> bool:
            return sum((await self.committed()).values()) >= total

        await wait_until(covered, limit=limit, what=f"{self.group} to commit {total} records")

    async def inbox(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.database.pool.fetch(
            'SELECT message_id, partition, "offset", outcome FROM inbox WHERE consumer = $1'
            ' ORDER BY partition, "offset"',
            self.group,
        )
        return rows


@pytest.fixture(params=["aiokafka", "faststream"])
async def harness(
    request: pytest.FixtureRequest,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    kafka_admin: AIOKafkaAdminClient,
) -> AsyncIterator[Harness]:
    producer = create_producer(infra.bootstrap_servers, client_id="inbox-test")
    await producer.start()
    made = Harness(infra, database, topics, kafka_admin, producer, request.param)
    try:
        yield made
    finally:
        await made.stop()
        await producer.stop()


async def test_the_same_event_twice_changes_the_projection_once(harness: Harness) -> None:
    await harness.start()
    once = harness.event("c1", 5)
    # Twice back to back (likely one batch), then again after it was applied
    # (certainly another batch).
    await harness.send(once)
    await harness.send(once)
    await harness.wait_committed(2)
    assert await projection(harness.database.pool) == {"c1": 5}

    await harness.send(once)
    other = harness.event("c2", 7)
    await harness.send(other)
    await harness.wait_committed(4)

    assert await projection(harness.database.pool) == {"c1": 5, "c2": 7}
    assert harness.calls == {once.id: 1, other.id: 1}
    rows = await harness.inbox()
    assert sorted(r["message_id"] for r in rows) == sorted(
        f"{e.source}#{e.id}" for e in (once, other)
    )
    assert {r["outcome"] for r in rows} == {"processed"}


async def test_a_failing_handler_dead_letters_after_max_attempts_and_the_partition_moves_on(
    harness: Harness,
) -> None:
    async def fragile(conn: asyncpg.Connection, env: Envelope, payload: EventPayload) -> None:
        assert isinstance(payload, CounterIncremented)
        if payload.poison:
            raise ValueError(f"cannot count {payload.counter}")
        await apply_counter(conn, env, payload)

    await harness.start(harness.counting(fragile))
    good1, poison, good2 = (
        harness.event("p", 1),
        harness.event("p", 100, poison=True),
        harness.event("p", 10),
    )
    sent = [await harness.send(e) for e in (good1, poison, good2)]
    assert len({p for p, _ in sent}) == 1, "one key, one partition"
    await harness.wait_committed(3)

    assert await projection(harness.database.pool) == {"p": 11}
    assert harness.calls[poison.id] == MAX_ATTEMPTS
    assert harness.calls[good2.id] >= 1

    dead = await read_topic(harness.infra.bootstrap_servers, harness.topics.dlq)
    assert len(dead) == 1
    headers = headers_of(dead[0])
    partition, offset = sent[1]
    assert headers["ce_id"] == poison.id, "the original headers travel along"
    assert headers["dlq_error"] == "ValueError: cannot count p"
    assert headers["dlq_error_type"] == "ValueError"
    assert "ValueError" in headers["dlq_stacktrace"]
    assert headers["dlq_attempts"] == str(MAX_ATTEMPTS)
    assert headers["dlq_consumer"] == harness.group
    assert headers["dlq_original_topic"] == harness.topics.events
    assert headers["dlq_original_partition"] == str(partition)
    assert headers["dlq_original_offset"] == str(offset)
    assert dead[0].value == poison.kafka_value() and dead[0].key == b"p"

    outcomes = {r["message_id"]: r["outcome"] for r in await harness.inbox()}
    assert outcomes == {
        f"{good1.source}#{good1.id}": "processed",
        f"{poison.source}#{poison.id}": "dead_lettered",
        f"{good2.source}#{good2.id}": "processed",
    }


async def test_unreadable_records_are_dead_lettered_at_once_and_the_partition_moves_on(
    harness: Harness,
) -> None:
    await harness.start()
    topic = harness.topics.events
    bare = await harness.producer.send_and_wait(topic, value=b'{"counter": "u"}', key=b"u")
    not_json = harness.event("u", 1000)
    garbled = await harness.producer.send_and_wait(
        topic, value=b"not json", key=b"u", headers=not_json.kafka_headers()
    )
    good = harness.event("u", 3)
    await harness.send(good)
    assert bare.partition == garbled.partition
    await harness.wait_committed(3)

    assert await projection(harness.database.pool) == {"u": 3}
    dead = await read_topic(harness.infra.bootstrap_servers, harness.topics.dlq)
    assert len(dead) == 2
    by_offset = {int(headers_of(r)["dlq_original_offset"]): headers_of(r) for r in dead}
    assert set(by_offset) == {bare.offset, garbled.offset}
    for headers in by_offset.values():
        # No retry can make an unreadable record readable: one attempt.
        assert headers["dlq_attempts"] == "1"
        assert headers["dlq_error_type"] == "MalformedEnvelope"
        assert headers["dlq_original_partition"] == str(bare.partition)
    assert "missing CloudEvents headers" in by_offset[bare.offset]["dlq_error"]
    assert "not JSON" in by_offset[garbled.offset]["dlq_error"]

    outcomes = {r["message_id"]: r["outcome"] for r in await harness.inbox()}
    assert outcomes == {
        # Neither could be read, so both are known by their position.
        f"kafka:{topic}/{bare.partition}/{bare.offset}": "dead_lettered",
        f"kafka:{topic}/{garbled.partition}/{garbled.offset}": "dead_lettered",
        f"{good.source}#{good.id}": "processed",
    }


async def test_offsets_are_committed_only_after_the_transaction_commits(
    harness: Harness,
) -> None:
    pool = harness.database.pool
    # A deferred foreign key fails at COMMIT, after every handler succeeded.
    await pool.execute(
        "CREATE TABLE gate (id int PRIMARY KEY);"
        " CREATE TABLE gated (id int REFERENCES gate DEFERRABLE INITIALLY DEFERRED)"
    )

    async def gated(conn: asyncpg.Connection, env: Envelope, payload: EventPayload) -> None:
        await apply_counter(conn, env, payload)
        await conn.execute("INSERT INTO gated VALUES (1)")

    await harness.start(harness.counting(gated))
    events = [harness.event(f"k{i % 3}", 1) for i in range(6)]
    for e in events:
        await harness.send(e)

    # The transaction keeps failing at commit: the batch is read again and again,
    # and neither the projection, the inbox nor the offsets move.
    await wait_until(
        lambda: all(harness.calls[e.id] >= 3 for e in events),
        limit=30,
        what="the batch to be retried",
    )
    assert await harness.committed() == {}
    assert await projection(pool) == {}
    assert await harness.inbox() == []

    await pool.execute("INSERT INTO gate VALUES (1)")
    await harness.wait_committed(len(events))
    assert await projection(pool) == {"k0": 2, "k1": 2, "k2": 2}
    assert len(await harness.inbox()) == len(events)


async def test_a_committed_offset_always_has_its_transaction_behind_it(
    harness: Harness,
) -> None:
    """Watch offsets and the inbox while a consumer works through small batches.

    Whenever Kafka shows offset N committed on a partition, the inbox, read
    after that, already holds every record of that partition below N.
    """

    async def slowish(conn: asyncpg.Connection, env: Envelope, payload: EventPayload) -> None:
        # About 3 s in all: the aiokafka engine commits at most every COMMIT_INTERVAL (0.25 s).
        await asyncio.sleep(0.01)
        await apply_counter(conn, env, payload)

    total = 300
    events = [harness.event(f"k{i % 10}", 1) for i in range(total)]
    await asyncio.gather(*(harness.send(e) for e in events))
    await harness.start(harness.counting(slowish), batch_size=20)

    observed: set[tuple[int, int]] = set()

    async def consistent_and_done() -> bool:
        committed = await harness.committed()
        rows = await harness.inbox()
        stored: dict[int, set[int]] = {}
        for r in rows:
            stored.setdefault(r["partition"], set()).add(r["offset"])
        for partition, offset in committed.items():
            observed.add((partition, offset))
            missing = set(range(offset)) - stored.get(partition, set())
            assert not missing, f"offset {offset} committed on {partition}, rows missing: {missing}"
        return sum(committed.values()) >= total

    await wait_until(consistent_and_done, limit=60, interval=0.01, what="all records committed")
    assert len(observed) >= 6, f"too few distinct commits observed: {sorted(observed)}"
    assert sum((await projection(harness.database.pool)).values()) == total
    assert all(harness.calls[e.id] == 1 for e in events)


async def test_batch_handlers_apply_runs_once_and_fall_back_per_message_on_poison(
    harness: Harness,
) -> None:
    runs: list[int] = []

    async def add_all(
        conn: asyncpg.Connection, items: Sequence[tuple[Envelope, EventPayload]]
    ) -> None:
        runs.append(len(items))
        payloads = [p for _, p in items]
        assert all(isinstance(p, CounterIncremented) for p in payloads)
        if any(p.poison for p in payloads):  # type: ignore[attr-defined]
            raise ValueError("poison in the run")
        await conn.executemany(
            "INSERT INTO test_projection (key, count, last_event) VALUES ($1, $2, $3)"
            " ON CONFLICT (key) DO UPDATE SET count = test_projection.count + EXCLUDED.count",
            [(p.counter, p.amount, e.id) for e, p in items],  # type: ignore[attr-defined]
        )

    async def one_by_one(conn: asyncpg.Connection, env: Envelope, payload: EventPayload) -> None:
        assert isinstance(payload, CounterIncremented)
        if payload.poison:
            raise ValueError("poison")
        await apply_counter(conn, env, payload)

    await harness.start(harness.counting(one_by_one), batch_handler=add_all)
    events = [harness.event("b", 1) for _ in range(200)]
    for event in events:
        await harness.send(event)
    await harness.send(events[0])  # a repeat is skipped by the inbox
    await harness.wait_committed(201)
    assert await projection(harness.database.pool) == {"b": 200}
    assert max(runs) > 1, "consecutive events were applied in one call"

    poison = harness.event("b", 1000, poison=True)
    after = harness.event("b", 5)
    await harness.send(poison)
    await harness.send(after)
    await harness.wait_committed(203)
    assert await projection(harness.database.pool) == {"b": 205}
    dead = await read_topic(harness.infra.bootstrap_servers, harness.topics.dlq)
    assert [headers_of(r)["ce_id"] for r in dead] == [poison.id]


async def test_the_reported_lag_counts_the_batch_fetched_ahead_as_not_applied(
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    kafka_admin: AIOKafkaAdminClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The aiokafka engine fetches the next batch while one is applied, which moves the
    consumer's position past records not applied yet: the lag is measured from what was
    applied, not from that position (it read one batch short)."""
    from prometheus_client import REGISTRY

    from shared import inbox_telemetry

    monkeypatch.setattr(inbox_telemetry, "LAG_INTERVAL", 0.0)  # a report after every batch
    producer = create_producer(infra.bootstrap_servers, client_id="inbox-lag-test")
    await producer.start()
    harness = Harness(infra, database, topics, kafka_admin, producer)
    second_batch = asyncio.Event()
    release = asyncio.Event()
    batches = 0

    async def slow_then_stuck(
        conn: asyncpg.Connection, items: Sequence[tuple[Envelope, EventPayload]]
    ) -> None:
        nonlocal batches
        batches += 1
        if batches == 1:
            await asyncio.sleep(1.0)  # the next batch's fetch returns meanwhile
        else:
            second_batch.set()
            await release.wait()
        for envelope, payload in items:
            await apply_counter(conn, envelope, payload)

    try:
        # One key: every record on one partition; all there before the consumer starts.
        partitions = {(await harness.send(harness.event("lag")))[0] for _ in range(30)}
        assert len(partitions) == 1
        await harness.start(batch_size=10, batch_handler=slow_then_stuck)
        await asyncio.wait_for(second_batch.wait(), 60)
        # The first batch is applied and committed; the second is being applied, and
        # the third has been fetched ahead meanwhile.
        lag = REGISTRY.get_sample_value(
            "consumer_lag",
            {"service": harness.group, "topic": topics.events, "partition": str(*partitions)},
        )
        assert lag == 20
        release.set()
        await harness.wait_committed(30)
    finally:
        release.set()
        await harness.stop()
        await producer.stop()


async def test_events_nobody_here_handles_do_not_cut_a_batch_handlers_run(
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    """A type the registry knows but no handler takes (scheduling's requests and
    declines between its accepts) is passed over: the run goes on past it."""
    from shared.contracts.registry import PayloadRegistry

    producer = create_producer(infra.bootstrap_servers, client_id="inbox-skip-test")
    await producer.start()
    harness = Harness(infra, database, topics, kafka_admin, producer)
    ignored = type(
        "CounterNoted",
        (CounterIncremented,),
        {"producer": topics.producer, "__module__": __name__, "event_name": "CounterNoted"},
    )
    runs: list[int] = []

    async def add_all(
        conn: asyncpg.Connection, items: Sequence[tuple[Envelope, EventPayload]]
    ) -> None:
        runs.append(len(items))
        for envelope, payload in items:
            await apply_counter(conn, envelope, payload)

    consumer = InboxConsumer(
        name=harness.group,
        dsn_pool=database.pool,
        bootstrap_servers=infra.bootstrap_servers,
        subscription=Subscription(
            topics=(topics.events,),
            handlers={harness.model.ce_type(): apply_counter},
            registry=PayloadRegistry([harness.model, ignored]),
            batch_handlers={harness.model.ce_type(): add_all},
        ),
        dlq_producer=producer,
    )
    task: asyncio.Task[None] | None = None
    try:
        for _ in range(40):  # one partition, alternating: counted, ignored, counted...
            await harness.send(harness.event("k"))
            await harness.send(Envelope.wrap(ignored(counter="k", amount=100), key="k"))
        await consumer.start()
        task = asyncio.create_task(consumer.run())
        await harness.wait_committed(80)
        assert await projection(database.pool) == {"k": 40}
        assert sum(runs) == 40
        assert max(runs) > 1, f"runs cut at every ignored event: {runs}"
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


async def test_events_one_at_a_time_share_offset_commits(harness: Harness) -> None:
    """The aiokafka engine commits the offsets of applied batches at most every
    COMMIT_INTERVAL, so events arriving one at a time (a batch each) share commits; what
    is applied when it stops is committed as it stops."""
    if harness.engine != "aiokafka":
        pytest.skip("FastStream's engine acknowledges (commits) each batch as FastStream does")
    await harness.start()
    consumer = harness._consumer
    assert isinstance(consumer, InboxConsumer)
    kafka = consumer._consumer
    commits: list[dict[object, int]] = []
    commit = kafka.commit

    async def counted(offsets: dict[object, int]) -> None:
        commits.append(dict(offsets))
        await commit(offsets)

    kafka.commit = counted
    events = [harness.event("c1", 1) for _ in range(20)]
    for event in events:
        await harness.send(event)
        await wait_until(lambda: harness.calls[event.id] == 1, limit=30, what="applied")  # noqa: B023
    await harness.wait_committed(len(events))
    # One batch per event (each waited for), far fewer commits: 20 events over ~1 s.
    assert len(commits) <= len(events) // 2, commits
    last = harness.event("c1", 1)
    await harness.send(last)
    await wait_until(lambda: harness.calls[last.id] == 1, limit=30, what="the last applied")
    await harness.stop()  # within COMMIT_INTERVAL of the apply: stop commits it
    assert sum((await harness.committed()).values()) == len(events) + 1
