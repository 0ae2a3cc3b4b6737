"""Throughput and latency of the event backbone, measured on the local stack in one run.

    .venv/bin/python -m bench.backbone [--events N] [--quick] [--steps 1,2,3,4,5]

Steps (all against the real Kafka on localhost:9092 and PostgreSQL on :5432,
started by `bash deploy/local/infra.sh up`):

  1. raw produce   an idempotent producer (`shared.outbox.create_producer`) sends N
                   CloudEvents records (~500-byte JSON value + ce_* headers) to a
                   fresh 3-partition topic, awaiting every ack;
  2. raw consume   a plain consumer (no group, no DB) reads them back with getmany;
  3. outbox relay  N outbox rows written through `shared.eventstore.append` into a
                   fresh database, then an `OutboxRelay` publishes them; timed from
                   the relay's start until every row is marked published;
  4. inbox         an `InboxConsumer` applies those N events to a counter
                   projection (one upsert per event), timed from partition
                   assignment until the projection has counted all N;
     4b.           the same with batch handlers (one statement per fetched batch):
                   `shared.inbox`'s own if it has them (bench/inbox-batch-handlers.patch),
                   else a bench-only prototype subclass;
  5. end to end    the registration and matching services as subprocesses on
                   fresh databases; registrations POSTed open-loop at a steady
                   rate, in phases (`--phases 500:httpx,150:raw`: rate and load
                   client); per command, the time from sending the request until
                   matching's inbox recorded the event (`inbox.processed_at`), with
                   the stages in between; then each `--whatif` configuration
                   (e.g. relay linger.ms 0) on fresh services at the lowest rate.

The services run through `bench._service`, which only renames their events topic
to one of the run's own (see there). Everything the run creates (databases
`bench_<hex>*`, topics `bench<hex>.*` and `b<hex>.events`, consumer groups,
service processes) is removed at the end, also on failure or Ctrl-C. Results: a
table on stdout and var/bench/backbone.json; service logs in var/bench/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import platform
import pstats
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry import propagate
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from shared import eventstore, inbox, metrics, telemetry
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.db import create_pool, migrate
from shared.envelope import Envelope
from shared.inbox import InboxConsumer, Subscription
from shared.outbox import OutboxRelay, create_producer, topic_of
from shared.settings import PlatformSettings

log = logging.getLogger("bench.backbone")

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
OUT_DIR = REPO / "var" / "bench"
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
ADMIN_DSN = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres:postgres@localhost:5432/postgres"
)
PARTITIONS = 3
COUNTERS = 100  # distinct record keys / projection rows
VALUE_BYTES = 500  # target size of a record's JSON value
WRITE_TXN_EVENTS = 1000  # outbox rows per pre-writing transaction
RUN_DB_TAG = ""  # "bench_<hex>": the prefix of this run's databases, set by run()


# -- small helpers ------------------------------------------------------------


def dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated; nan if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return dict.fromkeys(("count", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"))
    return {
        "count": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, limit: float, interval: float, what: str
) -> float:
    started = time.perf_counter()
    while not await predicate():
        if time.perf_counter() - started > limit:
            raise TimeoutError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.perf_counter() - started


# -- CPU accounting from /proc ------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> dict[int, tuple[str, int]]:
    """pid -> (comm, utime+stime in ticks) of every process we can read."""
    out: dict[int, tuple[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _system_cpu() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


@dataclass
class CpuWindow:
    """CPU seconds used per component between `start()` and `stop()`."""

    labels: dict[int, str] = field(default_factory=dict)  # pid -> name, for our children
    database_tag: str = ""  # postgres backends whose title has it are ours
    _procs: dict[int, tuple[str, int]] = field(default_factory=dict)
    _sys: tuple[int, int] = (0, 0)
    _t: float = 0.0

    def start(self) -> None:
        self._procs = _proc_cpu()
        self._sys = _system_cpu()
        self._t = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t
        after = _proc_cpu()
        busy1, total1 = _system_cpu()
        own = os.getpid()
        used: dict[str, float] = {}
        for pid, (comm, ticks) in after.items():
            before = self._procs.get(pid)
            delta = ticks - (before[1] if before and before[0] == comm else 0)
            if delta <= 0:
                continue
            if pid == own:
                name = "bench process"
            elif pid in self.labels:
                name = self.labels[pid]
            elif comm == "java":
                name = "kafka (java)"
            elif comm == "postgres":
                title = _cmdline(pid)
                tag = self.database_tag or RUN_DB_TAG
                if tag and tag in title:
                    name = "postgres (bench dbs)"
                elif re.match(r"postgres: postgres \S+ ", title):
                    name = "postgres (other dbs)"
                else:
                    name = "postgres (shared procs)"
            else:
                name = f"other: {comm}"
            used[name] = used.get(name, 0.0) + delta / CLOCK_TICKS
        busy0, total0 = self._sys
        cores = os.cpu_count() or 1
        busy = (busy1 - busy0) / max(total1 - total0, 1)
        return {
            "wall_s": round(wall, 3),
            "machine_busy_pct": round(100 * busy, 1),  # of all cores
            "cores": cores,
            "cpu_s": {k: round(v, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])},
        }


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


# -- prototype: a batch-handler API for the inbox (bench only, not shipped) ---

BatchHandler = Callable[[asyncpg.Connection, list[tuple[Envelope, EventPayload]]], Awaitable[None]]


class _RunFailed(Exception):
    """A handler raised in the prototype's fast path."""


class BatchInboxConsumer(InboxConsumer):
    """`InboxConsumer` whose fast path hands each run of same-type events to one batch handler.

    A prototype of the proposed `Subscription.batch_handlers` for the benchmark:
    claim (unchanged) + one handler call per run of consecutive same-type
    events, inside the same single transaction. Spans and metrics stay per
    event so that the difference measured is only the statement batching. A
    failing batch falls back to the shipped message-by-message path.
    """

    def __init__(self, *, batch_handlers: Mapping[str, BatchHandler], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._batch_handlers = batch_handlers

    async def process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        messages = [self._read(r) for r in records]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                fresh = await self._claim(conn, messages)
                try:
                    await self._apply_runs(conn, fresh)
                except Exception as exc:
                    raise _RunFailed from exc
        except _RunFailed:
            # A batch handler's failure names no message: every message of the
            # batch gets its full attempts on the shipped careful path.
            async with self._pool.acquire() as conn, conn.transaction():
                for message in await self._claim(conn, messages):
                    await self._apply_carefully(conn, message)

    async def _apply_runs(self, conn: asyncpg.Connection, messages: list[Any]) -> None:
        run_type: str | None = None
        run: list[tuple[Envelope, EventPayload]] = []

        async def flush() -> None:
            if run:
                assert run_type is not None
                await self._batch_handlers[run_type](conn, run)
                run.clear()

        for message in messages:
            envelope = message.envelope
            if envelope is None or envelope.type not in self._batch_handlers:
                await flush()
                await self._apply(conn, message)
                continue
            if envelope.type != run_type:
                await flush()
                run_type = envelope.type
            r = message.record
            parent = propagate.extract(
                {"traceparent": envelope.traceparent or "", "tracestate": envelope.tracestate or ""}
            )
            with inbox.tracer.start_as_current_span(  # as InboxConsumer._apply
                f"process {r.topic}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": r.topic,
                    "messaging.destination.partition.id": str(r.partition),
                    "messaging.kafka.offset": r.offset,
                    "messaging.consumer.group.name": self.name,
                    "messaging.message.id": envelope.id,
                    "cloudevents.event_type": envelope.type,
                },
            ):
                payload = self._subscription.registry.parse(envelope.type, envelope.data)
            run.append((envelope, payload))
            metrics.EVENTS_PROCESSED.labels(self.name, r.topic, envelope.type).inc()
        await flush()


async def apply_counted_batch(
    conn: asyncpg.Connection, events: list[tuple[Envelope, EventPayload]]
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


class Resources:
    """Everything the run creates, removed in reverse order by `close()`."""

    def __init__(self, hex_id: str) -> None:
        self.hex = hex_id
        self.admin: AIOKafkaAdminClient | None = None
        self.topics: list[str] = []
        self.groups: list[str] = []
        self.databases: list[str] = []
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.group_wait = 25.0  # seconds to wait for a static member to expire

    async def kafka_admin(self) -> AIOKafkaAdminClient:
        if self.admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=15000)
            await admin.start()
            self.admin = admin
        return self.admin

    async def create_topic(self, name: str, partitions: int = PARTITIONS) -> str:
        admin = await self.kafka_admin()
        self.topics.append(name)
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
        errors = [e for e in response.topic_errors if e[1]]
        if errors:
            raise RuntimeError(f"creating topic {name}: {errors}")
        # Wait until the broker serves the topic's metadata.
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
        await consumer.start()
        try:

            async def ready() -> bool:
                await consumer._client.force_metadata_update()
                return len(consumer.partitions_for_topic(name) or ()) == partitions

            await wait_for(ready, limit=30, interval=0.1, what=f"topic {name}")
        finally:
            await consumer.stop()
        return name

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            self.databases.append(name)
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    def add_cleanup(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        self.cleanups.append((what, action))

    async def _attempt(self, what: str, action: Callable[[], Awaitable[Any]]) -> None:
        try:
            await asyncio.wait_for(action(), 60)
        except Exception as exc:  # keep cleaning up
            self.problems.append(f"{what}: {exc!r}")
            log.warning("cleanup of %s failed: %r", what, exc)

    async def close(self) -> None:
        for what, action in reversed(self.cleanups):
            await self._attempt(what, action)
        for name, proc in reversed(self.processes):
            await self._attempt(f"process {name}", partial(stop_process, proc))
        if self.databases:

            async def drop() -> None:
                conn = await asyncpg.connect(ADMIN_DSN)
                try:
                    for db in self.databases:
                        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                finally:
                    await conn.close()

            await self._attempt("databases", drop)
        if self.topics or self.groups:
            admin = None
            with contextlib.suppress(Exception):
                admin = await self.kafka_admin()
            if admin is not None:
                if self.groups:
                    await self._attempt(
                        "consumer groups",
                        lambda: delete_groups(admin, self.groups, self.group_wait, self.notes),
                    )
                if self.topics:
                    await self._attempt("topics", lambda: admin.delete_topics(self.topics))
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await self.admin.close()


async def delete_groups(
    admin: AIOKafkaAdminClient, groups: list[str], wait: float, notes: list[str]
) -> None:
    # aiokafka's admin client has no delete_consumer_groups: send DeleteGroups ourselves.
    from aiokafka.protocol.admin import DeleteGroupsRequest

    failed = []
    for group in groups:
        # A static member (matching's consumer has a group.instance.id) stays in
        # its group until its session times out (10 s): retry NON_EMPTY_GROUP (68).
        deadline = time.monotonic() + wait
        while True:
            node = await admin.find_coordinator(group)
            response = await admin._send_request_to_node(node, DeleteGroupsRequest([group]))
            codes = [code for _, code in response.results]
            if all(code in (0, 69) for code in codes):  # 69: no such group
                break
            if 68 in codes and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                continue
            if 68 in codes:
                # Its topic is gone, so once the session expires Kafka drops the
                # group's offsets and then the empty group by itself.
                notes.append(
                    f"consumer group {group} still had its static member; left to"
                    " expire on its own (its topic is deleted)"
                )
            else:
                failed.append((group, codes))
            break
    if failed:
        raise RuntimeError(f"could not delete consumer groups {failed}")


async def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        await asyncio.sleep(0.2)


# -- steps 1 and 2: raw Kafka ---------------------------------------------------


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
    res: Resources, db: PipelineDb, n: int, batch_size: int, *, batched: bool
) -> dict[str, Any]:
    table = "bench_projection_batch" if batched else "bench_projection"
    name = f"bench-{res.hex}-inbox" + ("-batch" if batched else "")
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
    consumer: InboxConsumer
    handler_kind = "shipped (1 upsert per event)"
    if batched and "batch_handlers" in getattr(Subscription, "__dataclass_fields__", {}):
        # shared.inbox has the batch-handler API (the patch proposed in bench/README.md).
        kwargs["subscription"] = Subscription(  # type: ignore[call-arg]
            (db.topic,), {}, registry, batch_handlers={db.model.ce_type(): apply_counted_batch}
        )
        consumer = InboxConsumer(**kwargs)
        handler_kind = "shared.inbox batch_handlers (1 upsert per batch)"
    elif batched:
        consumer = BatchInboxConsumer(
            batch_handlers={db.model.ce_type(): apply_counted_batch}, **kwargs
        )
        handler_kind = "bench prototype of batch handlers (1 upsert per batch)"
    else:
        consumer = InboxConsumer(**kwargs)
    res.groups.append(name)
    t_start = time.perf_counter()
    await consumer.start()
    res.add_cleanup(f"{name} consumer", consumer.stop)

    async def assigned() -> bool:
        return len(consumer.assignment) == PARTITIONS

    await wait_for(assigned, limit=60, interval=0.01, what=f"{name} partition assignment")
    join = time.perf_counter() - t_start
    batches: list[int] = []
    process = consumer.process

    async def counting_process(records: list[ConsumerRecord[bytes, bytes]]) -> None:
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
        "cpu": cpu_used,
    }


# -- step 5: HTTP command -> event consumed --------------------------------------


def registration_body(i: int, tag: str) -> dict[str, Any]:
    return {
        "organisation_type": "business",
        "name": f"Bench Organisation {tag}-{i:06d}",
        "country": "DE",
        "sectors": ["ICT", "mechanical engineering"],
        "technologies": ["robotics", "machine vision"],
        "value_chain_position": "supplier",
        "markets": ["DE", "AT", "PL"],
        "offers": ["robot cells for small batches"],
        "requests": ["partners for industrial IoT pilots"],
        "attendance": "on_site",
        "representatives": [{"name": f"Representative {i}", "email": f"rep{i}@example.org"}],
    }


@dataclass
class Sent:
    index: int
    scheduled: float
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0
    registration_id: str | None = None
    error: str | None = None


class RawHttpClient:
    """A minimal HTTP/1.1 keep-alive client for POSTs of JSON, at a fraction of httpx's CPU.

    Only what the load generator needs: a pool of persistent connections to
    one host, `Content-Length` bodies both ways (what uvicorn sends for a
    JSONResponse), no redirects, no TLS. Used with `--client raw` to show how
    much of a 2-core machine the load generator itself takes.
    """

    def __init__(self, base_url: str, max_connections: int) -> None:
        parts = httpx.URL(base_url)
        self._host, self._port = parts.host, parts.port or 80
        self._max = max_connections
        self._open = 0
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle.empty() and self._open < self._max:
            self._open += 1
            try:
                return await asyncio.open_connection(self._host, self._port)
            except BaseException:
                self._open -= 1
                raise
        return await self._idle.get()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            keep_alive = True
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    keep_alive = False
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            self._open -= 1
            raise
        if keep_alive:
            self._idle.put_nowait((reader, writer))
        else:
            writer.close()
            self._open -= 1
        return status, payload

    async def close(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


class LoadClient:
    """POSTs through httpx (several AsyncClients with small pools) or `RawHttpClient`.

    httpx keeps one list of connections per client and rescans it on every
    request, so one client with hundreds of connections burns CPU quadratically
    once a backlog builds; sharding over small pools keeps its cost per request flat.
    """

    def __init__(
        self, kind: str, base_urls: Sequence[str], *, shards: int = 16, per_shard: int = 16
    ) -> None:
        """Requests go round-robin over `base_urls` (instances of one service)."""
        self.kind = kind
        self._next = 0
        self._httpx: list[httpx.AsyncClient] = []
        self._raw: list[RawHttpClient] = []
        if kind == "raw":
            self._raw = [RawHttpClient(url, shards * per_shard) for url in base_urls]
        else:
            limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
            self._httpx = [
                httpx.AsyncClient(
                    base_url=base_urls[i % len(base_urls)], timeout=180, limits=limits
                )
                for i in range(max(shards, len(base_urls)))
            ]

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self._next += 1
        if self._raw:
            return await self._raw[self._next % len(self._raw)].post(path, body)
        response = await self._httpx[self._next % len(self._httpx)].post(
            path, content=body, headers={"content-type": "application/json"}
        )
        return response.status_code, response.content

    async def close(self) -> None:
        for raw in self._raw:
            await raw.close()
        for client in self._httpx:
            await client.aclose()


async def fire(
    client: LoadClient, path: str, count: int, rate: float, tag: str, offset: int
) -> list[Sent]:
    """Open loop: request i is sent at t0 + i/rate whatever the earlier ones do.

    `sent` is taken when the request is due and handed to the client, so time
    spent waiting for a free connection counts as latency (no coordinated omission).
    """
    results = [Sent(offset + i, 0.0) for i in range(count)]
    bodies = [json.dumps(registration_body(s.index, tag)).encode() for s in results]

    async def one(s: Sent, body: bytes) -> None:
        s.sent = time.time()
        try:
            status, payload = await client.post(path, body)
            s.answered = time.time()
            s.status = status
            if status == 201:
                s.registration_id = json.loads(payload)["registration_id"]
            else:
                s.error = payload[:300].decode(errors="replace")
        except Exception as exc:
            s.answered = time.time()
            s.error = repr(exc)

    tasks = []
    t0 = time.time() + 0.05
    for i, s in enumerate(results):
        s.scheduled = t0 + i / rate
        delay = s.scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(s, bodies[i])))
    await asyncio.gather(*tasks)
    return results


def histogram_from_metrics(text: str, name: str, labels: dict[str, str]) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram, from /metrics text."""
    buckets: dict[float, float] = {}
    pattern = re.compile(rf"^{name}_bucket\{{(.*)\}} (\S+)$")
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            le = math.inf if found["le"] == "+Inf" else float(found["le"])
            buckets[le] = buckets.get(le, 0.0) + float(m.group(2))
    return buckets


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile."""
    total = buckets.get(math.inf, 0)
    if not total:
        return None
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return math.inf


def start_service(
    res: Resources,
    service: str,
    env: dict[str, str],
    wrapped: bool,
    log_dir: Path,
    name: str,
) -> subprocess.Popen[bytes]:
    module = ["-m", "bench._service", service] if wrapped else ["-m", f"services.{service}"]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(log_dir / f"{name}.log", "wb")
    proc = subprocess.Popen(
        [str(VENV_PYTHON), *module],
        cwd=REPO,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    res.processes.append((name, proc))
    return proc


REGISTRATION_ROWS = (
    "SELECT substr(e.stream_id, 14) AS registration_id, e.event_id::text AS ce_id,"
    " extract(epoch FROM e.recorded_at)::float8 AS recorded,"
    " extract(epoch FROM o.published_at)::float8 AS published"
    " FROM events e JOIN outbox o ON o.event_id = e.event_id::text"
    " WHERE e.stream_id = ANY($1::text[]) AND e.version = 1"
)


@dataclass
class Platform:
    """The two services under test, their databases and what step 5 needs to drive them."""

    urls: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]]
    reg_conn: asyncpg.Connection
    match_conn: asyncpg.Connection
    group: str
    topic: str
    event_id: str
    ready_s: float
    first_event_s: float
    profiles: dict[str, Path]


async def start_platform(
    res: Resources,
    label: str,
    isolated: bool,
    profile: str | None,
    extra_env: dict[str, str],
    registration_instances: int = 1,
) -> Platform:
    """Start registration (K instances) and matching on fresh databases, named after `label`."""
    suffix = f"-bench{res.hex}-{label}"
    reg_db = await res.create_database(f"bench_{res.hex}_{label}_registration")
    match_db = await res.create_database(f"bench_{res.hex}_{label}_matching")
    topic = "registration.events"
    if isolated:
        topic = await res.create_topic(f"bench{res.hex}.{label}.registration.events")
        await res.create_topic(f"{topic}.dlq", 1)
    admin_key = f"bench-admin-{uuid.uuid4().hex}"
    # Extra registration instances share its database; one relay holds the lock.
    ports = {"registration": free_port(), "matching": free_port()}
    for k in range(2, registration_instances + 1):
        ports[f"registration-{k}"] = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "REGISTRATION_PORT": str(ports["registration"]),
        "MATCHING_PORT": str(ports["matching"]),
        "REGISTRATION_DATABASE_URL": dsn_for(reg_db),
        "MATCHING_DATABASE_URL": dsn_for(match_db),
        "PLATFORM_ADMIN_KEY": admin_key,
        "OTEL_TRACES_EXPORTER": "none",
        "SERVICE_HOST": "127.0.0.1",
        "CONSUMER_GROUP_SUFFIX": suffix,  # ignored if shared.settings lacks it
        "BENCH_REGISTRATION_TOPIC": topic,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("BENCH_PROFILE_FILE", None)
    env.update(extra_env)
    group = f"matching{suffix}"
    res.groups.append(group)
    procs, profiles = {}, {}
    for service, port in ports.items():
        module = service.split("-")[0]
        service_env = env
        if service.startswith("registration"):
            service_env = {**env, "REGISTRATION_PORT": str(port)}
        if profile == service:
            profiles[service] = OUT_DIR / f"{service}.prof"
            profiles[service].unlink(missing_ok=True)
            service_env = {**service_env, "BENCH_PROFILE_FILE": str(profiles[service])}
        wrapped = isolated or profile == service or any(k.startswith("BENCH_") for k in extra_env)
        procs[service] = start_service(
            res, module, service_env, wrapped, OUT_DIR / "logs", f"{label}-{service}"
        )
    urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=5) as probe:
        for service, url in urls.items():

            async def ready(service: str = service, url: str = url) -> bool:
                if procs[service].poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with {procs[service].returncode};"
                        f" see var/bench/logs/{label}-{service}.log"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    return (await probe.get(f"{url}/ready")).status_code == 200
                return False

            await wait_for(ready, limit=90, interval=0.1, what=f"{service} /ready")
        ready_s = time.perf_counter() - started

        match_conn = await asyncpg.connect(dsn_for(match_db))
        res.add_cleanup("matching probe", match_conn.close)
        reg_conn = await asyncpg.connect(dsn_for(reg_db))
        res.add_cleanup("registration probe", reg_conn.close)

        base = urls["registration"]
        r = await probe.post(
            f"{base}/api/organisers",
            json={"name": f"Bench organiser {res.hex}"},
            headers={"X-API-Key": admin_key},
        )
        r.raise_for_status()
        organiser_key = r.json()["api_key"]
        first_day = date.today() + timedelta(days=60)
        r = await probe.post(
            f"{base}/api/events",
            headers={"X-API-Key": organiser_key},
            json={
                "name": f"Bench brokerage event {res.hex}",
                "venue": "Benchmark hall",
                "time_zone": "Europe/Berlin",
                "days": [first_day.isoformat(), (first_day + timedelta(days=1)).isoformat()],
                "sessions": [
                    {"start": "09:00", "end": "12:00"},
                    {"start": "13:00", "end": "17:00"},
                ],
                "slot_minutes": 30,
                "tables": 100,
                "meeting_types": ["Business2Business", "Cluster2Cluster"],
                "registration_deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
        )
        r.raise_for_status()
        event_id = r.json()["event_id"]

    async def matching_knows_event() -> bool:
        return bool(
            await match_conn.fetchval(
                "SELECT count(*) FROM brokerage_events WHERE event_id = $1", event_id
            )
        )

    first_event_s = await wait_for(
        matching_knows_event, limit=60, interval=0.01, what="matching to learn the brokerage event"
    )
    return Platform(
        urls, procs, reg_conn, match_conn, group, topic, event_id, ready_s, first_event_s, profiles
    )


async def step_end_to_end(
    res: Resources,
    p: Platform,
    rate: float,
    duration: float,
    warmup: float,
    offset: int,
    client_kind: str,
) -> dict[str, Any]:
    client = LoadClient(
        client_kind, [url for name, url in p.urls.items() if name.startswith("registration")]
    )
    try:
        return await _phase(res, p, rate, duration, warmup, offset, client)
    finally:
        await client.close()


async def _phase(
    res: Resources,
    p: Platform,
    rate: float,
    duration: float,
    warmup: float,
    offset: int,
    client: LoadClient,
) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as scrape:
        path = f"/api/events/{p.event_id}/registrations"
        warm_count = int(rate * warmup)
        if warm_count:
            warm = await fire(client, path, warm_count, rate, res.hex, offset)
            if all(s.status != 201 for s in warm):
                raise RuntimeError(f"every warm-up registration failed, e.g. {warm[0].error}")
            await asyncio.sleep(1.0)

        metrics_before = (await scrape.get(f"{p.urls['matching']}/metrics")).text
        cpu = CpuWindow(
            labels={proc.pid: f"{name.split('-')[0]} service" for name, proc in p.procs.items()}
        )
        cpu.start()
        count = int(rate * duration)
        client_cpu = time.process_time()
        sent = await fire(client, path, count, rate, res.hex, offset + warm_count)
        client_cpu = time.process_time() - client_cpu
        answered_all = time.time()
        ok = [s for s in sent if s.status == 201 and s.registration_id]
        streams = [f"registration-{s.registration_id}" for s in ok]
        by_reg = {
            r["registration_id"]: r for r in await p.reg_conn.fetch(REGISTRATION_ROWS, streams)
        }
        message_ids = [
            f"/services/registration#{by_reg[s.registration_id]['ce_id']}"
            for s in ok
            if s.registration_id in by_reg
        ]

        async def all_consumed() -> bool:
            got = await p.match_conn.fetchval(
                "SELECT count(*) FROM inbox WHERE consumer = $1 AND message_id = ANY($2::text[])",
                p.group,
                message_ids,
            )
            return int(got) >= len(message_ids)

        drain = await wait_for(
            all_consumed, limit=180, interval=0.05, what="matching to consume every registration"
        )
        cpu_used = cpu.stop()
        metrics_after = (await scrape.get(f"{p.urls['matching']}/metrics")).text
    # published_at is set once the relay's whole batch is acked: read it again now.
    by_reg = {r["registration_id"]: r for r in await p.reg_conn.fetch(REGISTRATION_ROWS, streams)}
    consumed = {
        r["message_id"]: r["processed"]
        for r in await p.match_conn.fetch(
            "SELECT message_id, extract(epoch FROM processed_at)::float8 AS processed"
            " FROM inbox WHERE consumer = $1 AND message_id = ANY($2::text[])",
            p.group,
            message_ids,
        )
    }
    participants = await p.match_conn.fetchval(
        "SELECT count(*) FROM participants WHERE registration_id = ANY($1::text[])",
        [s.registration_id for s in ok],
    )

    e2e, http, ingress, to_published, pub_to_consumed, resp_to_consumed = [], [], [], [], [], []
    for s in ok:
        row = by_reg.get(s.registration_id or "")
        if row is None:
            continue
        processed = consumed.get(f"/services/registration#{row['ce_id']}")
        http.append(s.answered - s.sent)
        ingress.append(row["recorded"] - s.sent)
        if row["published"] is not None:
            to_published.append(row["published"] - s.sent)
        if processed is not None:
            e2e.append(processed - s.sent)
            resp_to_consumed.append(processed - s.answered)
            if row["published"] is not None:
                pub_to_consumed.append(processed - row["published"])
    sends = [s.sent for s in sent]
    lags = [s.sent - s.scheduled for s in sent]
    window = max(sends) - min(sends)
    errors: dict[str, int] = {}
    for s in sent:
        if s.status != 201:
            key = f"{s.status} {(s.error or '')[:80]}"
            errors[key] = errors.get(key, 0) + 1

    labels = {"service": p.group}
    before = histogram_from_metrics(metrics_before, "event_processing_seconds", labels)
    after = histogram_from_metrics(metrics_after, "event_processing_seconds", labels)
    diff = {le: value - before.get(le, 0.0) for le, value in after.items()}
    return {
        "target_rate": rate,
        "client": client.kind,
        "client_cpu_ms_per_command": round(1000 * client_cpu / count, 2),
        "warmup_commands": warm_count,
        "commands": count,
        "ok": len(ok),
        "errors": errors,
        "achieved_send_rate": round((count - 1) / window, 1) if window > 0 else None,
        "completed_rate": round(len(ok) / (answered_all - min(sends)), 1),
        "send_schedule_lag": summary_ms(lags),
        "http_latency": summary_ms(http),
        "send_to_command_txn_start": summary_ms(ingress),
        "send_to_published_acked": summary_ms(to_published),
        "send_to_consumed": summary_ms(e2e),
        "http_response_to_consumed": summary_ms(resp_to_consumed),
        "published_to_consumed": summary_ms(pub_to_consumed),
        "matching_batch_fetch_to_commit": {
            "batches": int(diff.get(math.inf, 0)),
            "p50_le_s": bucket_quantile(diff, 0.5),
            "p99_le_s": bucket_quantile(diff, 0.99),
        },
        "participants_projected": participants,
        "drain_after_last_response_s": round(drain, 2),
        "cpu": cpu_used,
        "cpu_ms_per_command": {
            k: round(1000 * v / count, 2)
            for k, v in cpu_used["cpu_s"].items()
            if not k.startswith("other")
        },
    }


def profile_by_package(path: Path) -> list[tuple[str, float]]:
    """Own time (tottime) summed per library / stdlib module / repo package."""
    stats = pstats.Stats(str(path))
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if filename == "~":
            key = (
                "idle: epoll"
                if "epoll" in function
                else "syscalls: socket send/recv"
                if re.search(r"'(send|recv)\w*' of '_socket", function)
                else "C builtins (json, asyncpg protocol, ...)"
            )
        elif "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0]
        elif "/lib/python3" in filename:
            key = "stdlib " + re.split(r"/lib/python3\.\d+/", filename)[1].split("/")[0]
        elif str(REPO) in filename:
            key = "repo " + "/".join(Path(filename).relative_to(REPO).parts[:2])
        else:
            key = filename
        totals[key] = totals.get(key, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


# What-if configurations of step 5: description, extra environment of the services.
WHATIFS: dict[str, tuple[str, dict[str, str]]] = {
    "linger0": (
        "relay producer linger.ms 0 instead of 5 (bench._service knob)",
        {"BENCH_PRODUCER_LINGER_MS": "0"},
    ),
    "notrace": ("OTEL_SDK_DISABLED=true: no spans at all", {"OTEL_SDK_DISABLED": "true"}),
    "notrace_linger0": (
        "no spans and relay linger.ms 0",
        {"OTEL_SDK_DISABLED": "true", "BENCH_PRODUCER_LINGER_MS": "0"},
    ),
}


def print_profile(path: Path, title: str, top: int = 30) -> str:
    stream = io.StringIO()
    stream.write(f"\n==== cProfile: {title} ({path.relative_to(REPO)}) ====\n")
    grouped = profile_by_package(path)
    busy = sum(v for k, v in grouped if k != "idle: epoll")
    stream.write(f"own time by package (busy total {busy:.2f}s, excluding idle epoll):\n")
    for key, value in grouped[:20]:
        share = "" if key == "idle: epoll" else f"{100 * value / busy:5.1f}%"
        stream.write(f"  {value:8.3f}s {share:>6}  {key}\n")
    stats = pstats.Stats(str(path), stream=stream).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top + 15)
    return stream.getvalue()


# -- report ------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()

    def version(pkg: str) -> str:
        try:
            return importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "packages": {
            p: version(p)
            for p in ("aiokafka", "asyncpg", "httpx", "fastapi", "uvicorn", "opentelemetry-sdk")
        },
        "kafka_bootstrap": BOOTSTRAP,
    }


def fmt_cpu(cpu: dict[str, Any] | None) -> str:
    if not cpu:
        return ""
    parts = [f"{k} {v:.1f}s" for k, v in cpu["cpu_s"].items() if v >= 0.05]
    return (
        f"machine {cpu['machine_busy_pct']:.0f}% busy of {cpu['cores']} cores over "
        f"{cpu['wall_s']:.1f}s; " + ", ".join(parts)
    )


def render(results: dict[str, Any]) -> str:
    out = io.StringIO()
    w = out.write
    m = results["machine"]
    w("\nEvent backbone benchmark  " + results["started_at"] + "\n")
    w(
        f"machine: {m['cores']} x {m['cpu_model']}, {m['memory']} RAM, load avg at start "
        f"{m['loadavg_at_start']}, Python {m['python']}, aiokafka {m['packages']['aiokafka']},"
        f" asyncpg {m['packages']['asyncpg']}\n"
    )
    w(f"N = {results['config']['events']} events; tracing: {results['config']['telemetry']}\n\n")
    rows = []
    s = results["steps"]
    if "raw_produce" in s:
        r = s["raw_produce"]
        rows.append(
            (
                "1  raw aiokafka produce (idempotent, acks=all)",
                r["events_per_s"],
                f"{r['events']} rec in {r['seconds']}s, value {r['value_bytes_avg']} B +"
                f" headers {r['header_bytes_avg']} B, {r['mb_per_s']} MB/s",
            )
        )
    if "raw_consume" in s:
        r = s["raw_consume"]
        rows.append(
            (
                "2  raw aiokafka consume (getmany, no DB)",
                r["events_per_s"],
                f"{r['seconds']}s, {r['getmany_calls']} getmany calls; Envelope.from_kafka"
                f" {r['envelope_decode_us_per_event']} us/event",
            )
        )
    if "outbox_prewrite" in s:
        r = s["outbox_prewrite"]
        rows.append(
            (
                "   (setup) eventstore.append + outbox rows",
                r["events_per_s"],
                f"{r['seconds']}s, {r['transaction_size']} events per transaction",
            )
        )
    if "outbox_relay" in s:
        r = s["outbox_relay"]
        rows.append(
            (
                "3  outbox -> Kafka (OutboxRelay)",
                r["events_per_s"],
                f"{r['seconds']}s, relay batch_size {r['relay_batch_size']}",
            )
        )
    if "inbox" in s:
        r = s["inbox"]
        rows.append(
            (
                "4  Kafka -> projection (InboxConsumer)",
                r["events_per_s"],
                f"{r['seconds']}s, batch_size {r['batch_size_setting']}, avg batch "
                f"{r['avg_batch']}, group join {r['group_join_seconds']}s",
            )
        )
    if "inbox_batch_prototype" in s:
        r = s["inbox_batch_prototype"]
        rows.append(
            (
                "4b same, batch handler (1 statement per batch)",
                r["events_per_s"],
                f"{r['seconds']}s, batch_size {r['batch_size_setting']}, avg batch "
                f"{r['avg_batch']}; {r['handler']}",
            )
        )
    w(f"{'step':<50} {'events/s':>10}  details\n")
    w(f"{'-' * 50} {'-' * 10}  {'-' * 60}\n")
    for name, rate, detail in rows:
        w(f"{name:<50} {rate:>10,}  {detail}\n")
    w("\nCPU during each step (all processes on the machine, from /proc):\n")
    for key, label in (
        ("raw_produce", "1"),
        ("raw_consume", "2"),
        ("outbox_relay", "3"),
        ("inbox", "4"),
        ("inbox_batch_prototype", "4b"),
    ):
        if key in s and s[key].get("cpu"):
            w(f"  {label:<3}{fmt_cpu(s[key]['cpu'])}\n")
    for e in s.get("end_to_end", []):
        w(
            f"\n5  [{e['config']}: {e['description']}] HTTP command -> event consumed by matching\n"
            f"   ({'isolated topic ' + e['topic'] if e['isolated_topic'] else e['topic']};"
            f" {e['registration_instances']} registration process(es); services ready in"
            f" {e['services_ready_seconds']}s; first event reached matching"
            f" {e['first_event_to_matching_seconds'] * 1000:.0f} ms after creation)\n"
        )
        for r in e["phases"]:
            w(
                f"\n   {r['target_rate']:g} commands/s: {r['commands']} commands (after "
                f"{r['warmup_commands']} warm-up); achieved send rate {r['achieved_send_rate']}/s,"
                f" completed {r['completed_rate']}/s; ok {r['ok']},"
                f" errors {sum(r['errors'].values())}; drained {r['drain_after_last_response_s']}s"
                f" after the last response; client {r['client']} used"
                f" {r['client_cpu_ms_per_command']} ms CPU per command\n"
            )
            w(f"   {'latency (ms)':<44} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}\n")
            for key, label in (
                ("send_schedule_lag", "client send lag vs open-loop schedule"),
                ("send_to_command_txn_start", "send -> command transaction start"),
                ("http_latency", "HTTP request -> response (client)"),
                ("send_to_published_acked", "send -> relay marked published (acked)"),
                ("send_to_consumed", "send -> consumed (matching inbox) [E2E]"),
                ("http_response_to_consumed", "HTTP response -> consumed"),
                ("published_to_consumed", "published(acked) -> consumed"),
            ):
                v = {k: "-" if x is None else str(x) for k, x in r[key].items()}
                w(
                    f"   {label:<44} {v['p50_ms']:>8} {v['p95_ms']:>8} {v['p99_ms']:>8}"
                    f" {v['max_ms']:>8}\n"
                )
            b = r["matching_batch_fetch_to_commit"]
            w(
                f"   matching: {b['batches']} batches; fetch->commit per batch p50 <="
                f" {b['p50_le_s']}s, p99 <= {b['p99_le_s']}s (histogram buckets)\n"
            )
            w(f"   cpu: {fmt_cpu(r['cpu'])}\n")
            per = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_command"].items() if v >= 0.05)
            w(f"   cpu ms per command: {per}\n")
            if r["target_rate"] == 500 and e["config"] == "main":
                p99 = r["send_to_consumed"]["p99_ms"]
                met = p99 is not None and p99 <= 50 and r["ok"] == r["commands"]
                w(f"   target p99 <= 50 ms at 500/s: {'MET' if met else 'MISSED'}\n")
    w("\ntargets:\n")
    if "inbox" in s:
        v = s["inbox"]["events_per_s"]
        w(
            f"  inbox >= 10,000 events/s on {results['machine']['cores']} cores:"
            f" {'MET' if v >= 10_000 else 'MISSED'} ({v:,}/s shipped"
            + (
                f"; {s['inbox_batch_prototype']['events_per_s']:,}/s with the batch handlers"
                if "inbox_batch_prototype" in s
                else ""
            )
            + ")\n"
        )
    for e in s.get("end_to_end", []):
        for r in e["phases"]:
            if e["config"] == "main" and r["target_rate"] == 500:
                p99 = r["send_to_consumed"]["p99_ms"]
                met = p99 is not None and p99 <= 50 and r["ok"] == r["commands"]
                w(
                    f"  E2E p99 <= 50 ms at 500 commands/s ({r['client']} client):"
                    f" {'MET' if met else 'MISSED'} (p99 {p99!s} ms; completed"
                    f" {r['completed_rate']}/s)\n"
                )
    if results.get("cleanup_problems"):
        w(f"\ncleanup problems: {results['cleanup_problems']}\n")
    for note in results.get("cleanup_notes", []):
        w(f"\ncleanup note: {note}\n")
    if results.get("error"):
        w(f"\nFAILED: {results['error']}\n")
    return out.getvalue()


# -- main ----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    global RUN_DB_TAG
    hex_id = uuid.uuid4().hex[:10]
    RUN_DB_TAG = f"bench_{hex_id}"
    res = Resources(hex_id)
    if args.quick:
        res.group_wait = 0.0
    steps = {int(x) for x in args.steps.split(",")}
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": hex_id,
        "machine": machine_info(),
        "config": {
            "events": args.events,
            "inbox_batch_size": args.inbox_batch,
            "relay_batch_size": args.relay_batch,
            "phases": args.phases,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "registration_instances": args.registration_instances,
            "whatif": args.whatif,
            "service_env": args.service_env,
            "isolated_topic": not args.shared_topic,
            "steps": sorted(steps),
            "telemetry": "off (no tracer provider)"
            if args.no_telemetry
            else "as services with OTEL_TRACES_EXPORTER=none (spans made, not exported)",
            "profile": args.profile,
        },
        "steps": {},
    }
    out = results["steps"]
    if not args.no_telemetry:
        telemetry.configure(f"bench-{hex_id}", PlatformSettings(otel_traces_exporter="none"))
    in_process = ("relay", "inbox", "client")
    profiler = cProfile.Profile() if args.profile in in_process else None
    service_profiles: list[str] = []
    phases = []
    for spec in args.phases.split(","):
        rate, _, client_kind = spec.partition(":")
        phases.append((float(rate), client_kind or "httpx"))
    try:
        n = args.events
        if 1 in steps or 2 in steps:
            log.info("1: raw produce of %d records", n)
            out["raw_produce"], raw_topic = await step_raw_produce(res, n)
            if 2 in steps:
                log.info("2: raw consume")
                out["raw_consume"] = await step_raw_consume(raw_topic, n)
        if steps & {3, 4}:
            log.info("3: pre-writing %d outbox rows", n)
            db, out["outbox_prewrite"] = await prepare_pipeline(res, n)
            log.info("3: outbox relay")
            if profiler and args.profile == "relay":
                profiler.enable()
            out["outbox_relay"] = await step_relay(res, db, n, args.relay_batch)
            if profiler:
                profiler.disable()
            if 4 in steps:
                log.info("4: inbox consumer, batch_size %d", args.inbox_batch)
                if profiler and args.profile == "inbox":
                    profiler.enable()
                out["inbox"] = await step_inbox(res, db, n, args.inbox_batch, batched=False)
                if profiler:
                    profiler.disable()
                if not args.no_prototype:
                    log.info("4b: inbox consumer with batch handlers")
                    out["inbox_batch_prototype"] = await step_inbox(
                        res, db, n, args.inbox_batch, batched=True
                    )
        if 5 in steps:
            # The shipped configuration with every phase, then each what-if on
            # fresh services with its 150/s (or lowest-rate) phase only.
            configs: list[tuple[str, dict[str, str], list[tuple[float, str]]]] = [
                ("main", dict(kv.split("=", 1) for kv in args.service_env), phases)
            ]
            low = sorted(phases, key=lambda p: (p[0], p[1] != "raw"))[:1]
            for name in filter(None, args.whatif.split(",")):
                configs.append((name, WHATIFS[name][1], low))
            out["end_to_end"] = []
            offset = 0
            for old_log in (OUT_DIR / "logs").glob("*.log"):  # the previous run's
                old_log.unlink()
            for label, extra_env, config_phases in configs:
                log.info("5 [%s]: starting registration and matching %s", label, extra_env or "")
                platform_ = await start_platform(
                    res,
                    label,
                    not args.shared_topic,
                    args.profile if label == "main" else None,
                    extra_env,
                    args.registration_instances,
                )
                e2e: dict[str, Any] = {
                    "config": label,
                    "description": WHATIFS[label][0]
                    if label in WHATIFS
                    else "as shipped"
                    + (f" with {' '.join(args.service_env)}" if args.service_env else ""),
                    "service_env": extra_env,
                    "isolated_topic": not args.shared_topic,
                    "topic": platform_.topic,
                    "consumer_group": platform_.group,
                    "registration_instances": args.registration_instances,
                    "whatif": args.whatif,
                    "services_ready_seconds": round(platform_.ready_s, 2),
                    "first_event_to_matching_seconds": round(platform_.first_event_s, 3),
                    "phases": [],
                }
                out["end_to_end"].append(e2e)
                if profiler and args.profile == "client" and label == "main":
                    profiler.enable()
                for rate, client_kind in config_phases:
                    log.info(
                        "5 [%s]: %g commands/s for %gs (after %gs warm-up), %s client",
                        label,
                        rate,
                        args.duration,
                        args.warmup,
                        client_kind,
                    )
                    phase = await step_end_to_end(
                        res, platform_, rate, args.duration, args.warmup, offset, client_kind
                    )
                    offset += phase["commands"] + phase["warmup_commands"]
                    e2e["phases"].append(phase)
                if profiler:
                    profiler.disable()
                for proc in platform_.procs.values():  # a profiled service writes its stats
                    await stop_process(proc)
                for service, path in platform_.profiles.items():
                    if path.exists():
                        service_profiles.append(print_profile(path, f"{service} service"))
                        results.setdefault("profile_files", []).append(str(path.relative_to(REPO)))
    except asyncio.CancelledError:
        results["error"] = "interrupted"
        log.warning("interrupted", exc_info=True)
        raise
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        log.exception("benchmark step failed; cleaning up")
    finally:
        log.info("cleaning up")
        await asyncio.shield(res.close())
        results["cleanup_problems"] = res.problems
        results["cleanup_notes"] = res.notes
        results["created"] = {
            "topics": res.topics,
            "databases": res.databases,
            "consumer_groups": res.groups,
            "processes": [name for name, _ in res.processes],
        }
        if profiler is not None:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path = OUT_DIR / f"{args.profile}.prof"
            profiler.dump_stats(str(path))
            results["profile_files"] = [str(path.relative_to(REPO))]
            print(print_profile(path, f"bench process during {args.profile}"))
        for text in service_profiles:
            print(text)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backbone", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=None, help="N for steps 1-4 (default 20000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test (~15 s): N=2000, two 2-s phases at 150/s, no what-if",
    )
    parser.add_argument("--steps", default="1,2,3,4,5", help="which steps to run, e.g. 3,4")
    parser.add_argument(
        "--inbox-batch",
        type=int,
        default=2000,
        help="InboxConsumer batch_size in step 4 (its default is 500)",
    )
    parser.add_argument(
        "--relay-batch",
        type=int,
        default=1000,
        help="OutboxRelay batch_size in step 3 (its default is 1000)",
    )
    parser.add_argument(
        "--phases",
        default=None,
        help="step 5 load phases, RATE:CLIENT comma-separated, run one after the"
        " other on the same services; CLIENT is httpx (httpx.AsyncClient) or raw"
        " (a minimal keep-alive HTTP/1.1 client using ~10x less CPU)"
        " (default 500:httpx,150:httpx,500:raw,150:raw; --quick: 150:httpx,150:raw)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of commands per step-5 phase (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of warm-up commands in step 5, not measured (default 2)",
    )
    parser.add_argument(
        "--whatif",
        default=None,
        help="step 5: after the shipped configuration, run the lowest-rate phase"
        f" again on fresh services changed by each of: {', '.join(WHATIFS)}"
        " (comma-separated; default linger0; --quick: none; '' for none)",
    )
    parser.add_argument(
        "--registration-instances",
        type=int,
        default=1,
        help="step 5: run K registration processes on one database, commands"
        " spread round-robin (what horizontal scaling buys on this machine)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="step 5: extra environment for both services, e.g."
        " OTEL_SDK_DISABLED=true (repeatable)",
    )
    parser.add_argument(
        "--shared-topic",
        action="store_true",
        help="step 5: run the services unchanged on the shared "
        "registration.events topic (pollutes it for other consumers)",
    )
    parser.add_argument("--no-prototype", action="store_true", help="skip step 4b (batch handlers)")
    parser.add_argument(
        "--no-telemetry",
        action="store_true",
        help="steps 3-4 without a tracer provider (spans become no-ops)",
    )
    parser.add_argument(
        "--profile",
        choices=("relay", "inbox", "client", "registration", "matching"),
        help="cProfile step 3 (relay), 4 (inbox), step 5's load generator (client)"
        " or a service process; inflates the profiled part; stats to var/bench/",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=OUT_DIR / "backbone.json",
        help="where to write the results (default var/bench/backbone.json)",
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 2000 if args.quick else 20000
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.phases is None:
        args.phases = "150:httpx,150:raw" if args.quick else "500:httpx,150:httpx,500:raw,150:raw"
    if args.whatif is None:
        args.whatif = "" if args.quick else "linger0"
    unknown = [w for w in args.whatif.split(",") if w and w not in WHATIFS]
    if unknown:
        parser.error(f"unknown --whatif {unknown}; choose from {', '.join(WHATIFS)}")
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 2.0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request

    loop = asyncio.new_event_loop()
    task = loop.create_task(run(args))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    results: dict[str, Any] | None = None
    code = 0
    try:
        results = loop.run_until_complete(task)
    except (KeyboardInterrupt, asyncio.CancelledError):
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    if results is not None:
        print(render(results))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
        code = 1 if results.get("error") else 0
    return code


if __name__ == "__main__":
    sys.exit(main())
