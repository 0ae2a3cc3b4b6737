"""Steps 1-4: raw Kafka produce and consume, the outbox relay, the inbox consumer."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from bench.backbone.common import (
    BOOTSTRAP,
    COUNTERS,
    PARTITIONS,
    VALUE_BYTES,
    WRITE_TXN_EVENTS,
    CpuWindow,
    dsn_for,
    wait_for,
)
from bench.backbone.resources import Resources
from shared import eventstore
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.db import create_pool, migrate
from shared.envelope import Envelope
from shared.faststream_inbox import FastStreamInboxConsumer
from shared.inbox import InboxConsumer, Subscription
from shared.outbox import OutboxRelay, create_producer, topic_of

# -- the benchmark's event ----------------------------------------------------


class Counted(EventPayload):
    """A counter increment padded to a realistic payload size."""

    producer: ClassVar[str] = "bench"
    event_name: ClassVar[str] = "Counted"

    counter: str
    seq: int
    amount: int = 1
    note: str = ""


def counted_model(producer: str) -> type[Counted]:
    """`Counted` published by `producer`, i.e. on topic `<producer>.events`."""
    model: type[Counted] = type(
        "Counted", (Counted,), {"producer": producer, "__module__": __name__}
    )
    return model


def make_envelope(model: type[Counted], seq: int, padding: str) -> Envelope:
    counter = f"counter-{seq % COUNTERS:03d}"
    payload = model(counter=counter, seq=seq, note=padding)
    return Envelope.wrap(payload, key=counter, subject=counter)


def padding_for(model: type[Counted]) -> str:
    probe = make_envelope(model, 10**6, "")
    return "x" * max(VALUE_BYTES - len(probe.kafka_value()), 0)


async def apply_counted(
    conn: asyncpg.Connection, envelope: Envelope, payload: EventPayload
) -> None:
    """Projection handler, one statement per event: add the amount to the counter's row."""
    assert isinstance(payload, Counted)
    await conn.execute(
        "INSERT INTO bench_projection (key, count, last_event) VALUES ($1, $2, $3)"
        " ON CONFLICT (key) DO UPDATE"
        " SET count = bench_projection.count + EXCLUDED.count, last_event = EXCLUDED.last_event",
        payload.counter,
        payload.amount,
        envelope.id,
    )


async def apply_counted_batch(
    conn: asyncpg.Connection, events: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    """Batch projection handler: sum per counter in Python, one upsert statement per batch."""
    totals: dict[str, list[Any]] = {}
    for envelope, payload in events:
        assert isinstance(payload, Counted)
        row = totals.setdefault(payload.counter, [0, ""])
        row[0] += payload.amount
        row[1] = envelope.id
    await conn.execute(
        "INSERT INTO bench_projection_batch (key, count, last_event)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])"
        " ON CONFLICT (key) DO UPDATE SET count = bench_projection_batch.count + EXCLUDED.count,"
        " last_event = EXCLUDED.last_event",
        list(totals),
        [v[0] for v in totals.values()],
        [v[1] for v in totals.values()],
    )


# -- resources and their cleanup ----------------------------------------------


async def step_raw_produce(res: Resources, n: int) -> tuple[dict[str, Any], str]:
    topic = await res.create_topic(f"bench{res.hex}.raw")
    model = counted_model(f"bench{res.hex}")
    padding = padding_for(model)
    records = []
    for i in range(n):
        e = make_envelope(model, i, padding)
        records.append((e.key.encode(), e.kafka_value(), e.kafka_headers()))
    value_bytes = sum(len(v) for _, v, _ in records) / n
    header_bytes = sum(sum(len(k) + len(v) for k, v in h) for _, _, h in records) / n
    producer = create_producer(BOOTSTRAP, f"bench-{res.hex}-raw")
    await producer.start()
    try:
        # Warm the connection and metadata for the topic, outside the timing.
        await producer.send_and_wait(topic, value=b"{}", key=b"warm-up", headers=[])
        cpu = CpuWindow()
        cpu.start()
        t0 = time.perf_counter()
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in records]
        enqueued = time.perf_counter() - t0
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
        cpu_used = cpu.stop()
    finally:
        await producer.stop()
    return {
        "events": n,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed),
        "enqueue_seconds": round(enqueued, 3),
        "value_bytes_avg": round(value_bytes),
        "header_bytes_avg": round(header_bytes),
        "mb_per_s": round(n * (value_bytes + header_bytes) / elapsed / 1e6, 2),
        "cpu": cpu_used,
    }, topic


async def step_raw_consume(topic: str, n: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # as InboxConsumer
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        cpu = CpuWindow()
        cpu.start()
        t0 = time.perf_counter()
        deadline = t0 + 120
        fetches = 0
        while len(records) < n + 1:  # + the warm-up record
            batch = await consumer.getmany(timeout_ms=500)
            fetches += 1
            for rs in batch.values():
                records.extend(rs)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"raw consume: {len(records)} of {n + 1} records")
        elapsed = time.perf_counter() - t0
        cpu_used = cpu.stop()
    finally:
        await consumer.stop()
    # CPU cost of reading the envelopes (what every InboxConsumer does first), no I/O.
    t1 = time.perf_counter()
    for r in records:
        if r.key != b"warm-up":
            Envelope.from_kafka(r.key, r.value, r.headers)
    decode = time.perf_counter() - t1
    return {
        "events": n,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed),
        "getmany_calls": fetches,
        "envelope_decode_us_per_event": round(decode / n * 1e6, 1),
        "cpu": cpu_used,
    }


# -- steps 3 and 4: outbox relay and inbox consumer ------------------------------


@dataclass
class PipelineDb:
    name: str
    dsn: str
    pool: asyncpg.Pool
    topic: str
    model: type[Counted]


async def prepare_pipeline(res: Resources, n: int) -> tuple[PipelineDb, dict[str, Any]]:
    name = await res.create_database(f"bench_{res.hex}")
    dsn = dsn_for(name)
    pool = await create_pool(dsn, min_size=2, max_size=10)
    res.add_cleanup("pipeline pool", pool.close)
    with tempfile.TemporaryDirectory() as empty:
        await migrate(pool, Path(empty))
    for table in ("bench_projection", "bench_projection_batch"):
        await pool.execute(
            f"CREATE TABLE {table} (key text PRIMARY KEY, count bigint NOT NULL, last_event text)"
        )
    model = counted_model(f"b{res.hex}")
    padding = padding_for(model)
    topic = topic_of(make_envelope(model, 0, padding))
    assert topic == f"b{res.hex}.events", topic
    await res.create_topic(topic)
    await res.create_topic(f"{topic}.dlq", 1)  # where a failing handler would send

    t0 = time.perf_counter()
    versions = {f"counter-{k:03d}": 0 for k in range(COUNTERS)}
    seq = 0
    while seq < n:
        size = min(WRITE_TXN_EVENTS, n - seq)
        by_stream: dict[str, list[Envelope]] = {}
        for i in range(seq, seq + size):
            e = make_envelope(model, i, padding)
            by_stream.setdefault(e.key, []).append(e)
        async with pool.acquire() as conn, conn.transaction():
            for stream, envelopes in by_stream.items():
                versions[stream] = await eventstore.append(
                    conn, stream, versions[stream], envelopes
                )
        seq += size
    written = time.perf_counter() - t0
    rows = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert rows == n, (rows, n)
    return PipelineDb(name, dsn, pool, topic, model), {
        "events": n,
        "seconds": round(written, 3),
        "events_per_s": round(n / written),
        "transaction_size": WRITE_TXN_EVENTS,
    }


def published_count(service: str) -> float:
    value = REGISTRY.get_sample_value("outbox_published_total", {"service": service})
    return value or 0.0


async def step_relay(res: Resources, db: PipelineDb, n: int, batch_size: int) -> dict[str, Any]:
    service = f"bench-{res.hex}"
    producer = create_producer(BOOTSTRAP, f"{service}-relay")
    await producer.start()
    res.add_cleanup("relay producer", producer.stop)
    relay = OutboxRelay(db.dsn, producer, service, batch_size=batch_size)
    cpu = CpuWindow()
    cpu.start()
    t0 = time.perf_counter()
    task = asyncio.create_task(relay.run(), name="bench-relay")
    try:

        async def done() -> bool:
            if task.done():
                task.result()  # surface a crash
            return published_count(service) >= n

        await wait_for(done, limit=300, interval=0.005, what="the relay to publish every row")
        elapsed = time.perf_counter() - t0
        cpu_used = cpu.stop()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    left = await db.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return {
        "events": n,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed),
        "relay_batch_size": batch_size,
        "unpublished_after": left,
        "cpu": cpu_used,
    }


async def step_inbox(
    res: Resources,
    db: PipelineDb,
    n: int,
    batch_size: int,
    *,
    batched: bool,
    engine: str = "aiokafka",
) -> dict[str, Any]:
    """Step 4: the inbox consumer reads the topic from the start into the projection.

    `engine` "aiokafka" is `shared.inbox.InboxConsumer`, "faststream" is
    `shared.faststream_inbox.FastStreamInboxConsumer` (each its own group; the
    projection table is emptied first, so several engines can run one after another).
    """
    table = "bench_projection_batch" if batched else "bench_projection"
    await db.pool.execute(f"TRUNCATE {table}")
    name = f"bench-{res.hex}-inbox" + ("-batch" if batched else "")
    if engine != "aiokafka":
        name += f"-{engine}"
    dlq = create_producer(BOOTSTRAP, f"{name}-dlq")
    await dlq.start()
    res.add_cleanup(f"{name} dlq producer", dlq.stop)
    registry = PayloadRegistry([db.model])
    kwargs: dict[str, Any] = dict(
        name=name,
        dsn_pool=db.pool,
        bootstrap_servers=BOOTSTRAP,
        subscription=Subscription((db.topic,), {db.model.ce_type(): apply_counted}, registry),
        dlq_producer=dlq,
        batch_size=batch_size,
    )
    handler_kind = "shipped handler (1 upsert per event)"
    if batched:
        # shared.inbox's batch handlers: the same consumer, its spans and metrics
        # per event, one statement per run of same-type events.
        kwargs["subscription"] = Subscription(
            (db.topic,), {}, registry, batch_handlers={db.model.ce_type(): apply_counted_batch}
        )
        handler_kind = "shared.inbox batch_handlers (1 upsert per batch)"
    consumer: InboxConsumer | FastStreamInboxConsumer = (
        FastStreamInboxConsumer(**kwargs) if engine == "faststream" else InboxConsumer(**kwargs)
    )
    res.groups.append(name)
    t_start = time.perf_counter()
    await consumer.start()
    res.add_cleanup(f"{name} consumer", consumer.stop)

    async def assigned() -> bool:
        return len(consumer.assignment) == PARTITIONS

    await wait_for(assigned, limit=60, interval=0.01, what=f"{name} partition assignment")
    join = time.perf_counter() - t_start
    batches: list[int] = []
    if isinstance(consumer, FastStreamInboxConsumer):
        read_all = consumer.read_all  # called once per fetched batch

        def counting_read(records: tuple[ConsumerRecord[bytes, bytes], ...]) -> list[Any]:
            batches.append(len(records))
            return read_all(records)

        consumer.read_all = counting_read  # type: ignore[method-assign]
    else:
        process = consumer.process

        async def counting_process(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            batches.append(len(records))
            await process(records)

        consumer.process = counting_process  # type: ignore[method-assign]
    probe = await asyncpg.connect(db.dsn)
    cpu = CpuWindow()
    cpu.start()
    t0 = time.perf_counter()
    task = asyncio.create_task(consumer.run(), name=name)
    try:

        async def done() -> bool:
            if task.done():
                task.result()
            total = await probe.fetchval(f"SELECT coalesce(sum(count), 0) FROM {table}")
            return int(total) >= n

        await wait_for(done, limit=600, interval=0.02, what=f"{name} to project every event")
        elapsed = time.perf_counter() - t0
        cpu_used = cpu.stop()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await probe.close()
    total = await db.pool.fetchval(f"SELECT sum(count) FROM {table}")
    claimed = await db.pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", name)
    return {
        "events": n,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed),
        "batch_size_setting": batch_size,
        "batches": len(batches),
        "avg_batch": round(sum(batches) / len(batches), 1) if batches else 0,
        "group_join_seconds": round(join, 3),
        "projection_total": int(total or 0),
        "inbox_rows": claimed,
        "handler": handler_kind,
        "engine": engine,
        "cpu": cpu_used,
    }
