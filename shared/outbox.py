"""Transactional outbox: rows written with the events, published by one relay per service.

The relay reads *unpublished* rows in id order rather than tailing `id > last`:
a bigserial becomes visible in commit order, not id order, so a high-water mark
would skip a row whose transaction commits late. One relay per service holds a
PostgreSQL advisory lock, which keeps per-key order; others wait as standbys.

A round marks what the round before it sent (acknowledged) in the statement that reads
the next rows: one statement per round, not two, when events come one at a time. So
rows stay unmarked until the next round, at most MARK_DELAY after the last: a crash
republishes them, and consumers drop the repeats through their inbox.

Published rows are kept for a while (`OUTBOX_RETENTION_HOURS`: to see when an event
went out), then the leader deletes them, a chunk at a time between its rounds
(`purge`), so that the table holds about a retention's worth of rows, not every event
ever sent. The events themselves stay in the event store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from shared import json_codec, metrics, telemetry
from shared.contracts import UNPUBLISHED
from shared.db import advisory_lock_id
from shared.envelope import Envelope
from shared.kafka import REQUEST_TIMEOUT_MS
from shared.topics import prefixed

log = logging.getLogger(__name__)

LEASE_KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
tracer = trace.get_tracer(__name__)

# Seconds a sent batch may wait for the next round to mark it (then a round runs for it).
MARK_DELAY = 0.1

# Published rows deleted per purge statement, and how long the leader waits for the next
# purge once the old rows are gone (a purge that filled its chunk goes on next round).
PURGE_CHUNK = 5000
PURGE_INTERVAL = 60.0
# The first PURGE_CHUNK published rows in id order (the order they were sent in, but for
# a row that committed late), those older than $1 seconds deleted: the primary key's
# first entries are read, never the whole table.
PURGE = (
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT NULL"
    " ORDER BY id LIMIT $2) AND published_at < now() - make_interval(secs => $1)"
)

# $1: the ids the last round sent, marked published; $2: how many events to read. The read
# sees the table as it was before the mark, hence the `<> ALL`. A row without an envelope
# publishes an event of the event store (`ENVELOPE_OF_EVENT`), looked up only for it; a
# row with `events` publishes each of those, in order (`sql/010_outbox_rows_of_many.sql`).
# Rows are read whole, in id order, while fewer than $2 events come before them: a round
# may publish more than $2 events (a row of many crosses the limit), and only a round
# that publishes fewer than $2 has left nothing behind.
MARK_AND_READ = (
    "WITH marked AS (UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])),"
    " pending AS (SELECT o.*, sum(coalesce(cardinality(o.events), 1)) OVER (ORDER BY o.id)"
    " - coalesce(cardinality(o.events), 1) AS before FROM (SELECT id, topic, event_id,"
    " envelope, events FROM outbox WHERE published_at IS NULL AND id <> ALL($1::bigint[])"
    " ORDER BY id LIMIT $2) AS o)"
    " SELECT p.id, p.topic, coalesce(p.envelope, (SELECT {envelope} FROM events e"
    " WHERE e.event_id = coalesce(x.event, p.event_id::uuid))) AS envelope FROM pending p"
    " LEFT JOIN LATERAL unnest(p.events) WITH ORDINALITY AS x (event, n) ON true"
    " WHERE p.before < $2 ORDER BY p.id, x.n"
)
# Events not yet published (a row of many counts each of its events).
BACKLOG = (
    "SELECT coalesce(sum(coalesce(cardinality(events), 1)), 0) FROM outbox"
    " WHERE published_at IS NULL"
)
# A stored event's envelope (`Envelope.to_record`), from its row `e` of `events`: what
# its outbox row would have carried. A writer may leave the outbox row's envelope NULL
# for an event it stores in the same transaction (`sql/009_outbox_by_reference.sql`).
ENVELOPE_OF_EVENT = "e.metadata || jsonb_build_object('data', e.data)"
MARK_AND_READ = MARK_AND_READ.format(envelope=ENVELOPE_OF_EVENT)


def stamp_trace(envelope: Envelope) -> Envelope:
    """Record the current trace context on the envelope, unless it has one."""
    if envelope.traceparent:
        return envelope
    headers = telemetry.current_trace_headers()
    return envelope if headers is None else envelope.with_trace(*headers)


def conversation(envelope: Envelope) -> dict[str, str]:
    """The span attribute naming the envelope's correlation id, if it has one.

    `python -m shared.traces` finds a trace by it.
    """
    if not envelope.correlation_id:
        return {}
    return {"messaging.message.conversation_id": envelope.correlation_id}


def topic_of(envelope: Envelope) -> str:
    # `/services/registration` publishes to `registration.events` (the canonical name,
    # kept in the outbox row; the relay sends it under its topic prefix).
    return f"{envelope.source.rsplit('/', 1)[-1]}.events"


# The outbox rows of some envelopes, as four arrays (event ids, topics, keys, envelopes)
# bound to $n.. $n+3 of a statement.
ROWS_FROM_ARRAYS = (
    "INSERT INTO outbox (event_id, topic, key, envelope)"
    " SELECT event_id, topic, key, envelope"
    " FROM unnest(${0}::text[], ${1}::text[], ${2}::text[], ${3}::jsonb[])"
    " WITH ORDINALITY AS row (event_id, topic, key, envelope, n) ORDER BY n"
)
# ... and of events stored in the same transaction, referring to them (no envelope: the
# relay reads it from the event, `ENVELOPE_OF_EVENT`), as three arrays bound to $n..
# $n+2: `shared.eventstore` writes them in the statement that stores the events, so
# each event's JSON is built, sent and written once, not twice.
REFERRING_ROWS_FROM_ARRAYS = (
    "INSERT INTO outbox (event_id, topic, key)"
    " SELECT event_id, topic, key FROM unnest(${0}::text[], ${1}::text[], ${2}::text[])"
    " WITH ORDINALITY AS row (event_id, topic, key, n) ORDER BY n"
)


def published(envelopes: Sequence[Envelope]) -> Sequence[Envelope]:
    """Those of `envelopes` that go on a topic: not the types kept in their producer's
    event store only (`EventPayload.published`)."""
    if not any(e.type in UNPUBLISHED for e in envelopes):
        return envelopes
    return [e for e in envelopes if e.type not in UNPUBLISHED]


def references(envelopes: Sequence[Envelope]) -> list[list[str]]:
    """The arrays `REFERRING_ROWS_FROM_ARRAYS` reads: ids, topics, keys (in order: the
    relay publishes by id), of the `published` envelopes."""
    return _references(published(envelopes))


def columns(envelopes: Sequence[Envelope]) -> list[list[str]]:
    """The arrays `ROWS_FROM_ARRAYS` reads: `references` and the envelopes."""
    envelopes = published(envelopes)
    return [*_references(envelopes), [json_codec.dumps(e.to_record()) for e in envelopes]]


def _references(envelopes: Sequence[Envelope]) -> list[list[str]]:
    return [[e.id for e in envelopes], [topic_of(e) for e in envelopes], [e.key for e in envelopes]]


async def add(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    """Write outbox rows, envelopes included, in the caller's transaction (for events
    that are not in this database's event store)."""
    await conn.execute(ROWS_FROM_ARRAYS.format(1, 2, 3, 4), *columns(envelopes))


def create_producer(
    bootstrap_servers: str, client_id: str, options: Mapping[str, Any] | None = None
) -> AIOKafkaProducer:
    """`options`: `shared.kafka.client_options` (bootstrap servers and security)."""
    # Idempotent producer: acks from all in-sync replicas, no duplicates on
    # retry, and per-partition order kept across retries.
    return AIOKafkaProducer(
        **{"bootstrap_servers": bootstrap_servers, **(options or {})},
        client_id=client_id,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        enable_idempotence=True,
        acks="all",
        # The relay batches what it reads from the table; lingering only adds latency.
        linger_ms=0,
        max_batch_size=1024 * 1024,
    )


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer: AIOKafkaProducer,
        service: str,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        standby_interval: float = 1.0,
        topic_prefix: str = "",
        retention_seconds: float = 0.0,
    ) -> None:
        self._dsn = dsn
        # Published rows older than this are deleted (`purge`); 0 keeps them.
        self._retention = retention_seconds
        self._next_purge = 0.0  # time.monotonic() from which the next purge is due
        # Prepended to each row's topic when sending (`shared.topics`, TOPIC_PREFIX).
        self._topic_prefix = topic_prefix
        self._producer = producer
        self._service = service
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self._wakeup = asyncio.Event()
        # What the last round sent, to be marked published by the next.
        self._sent: list[int] = []
        self.is_leader = False
        # Exported from the start (zero), so a dashboard shows the service before it
        # publishes; looked up once (`labels` costs a lock and a dict per call).
        self._published = metrics.OUTBOX_PUBLISHED.labels(service)
        self._backlog = metrics.OUTBOX_BACKLOG.labels(service)

    async def run(self) -> None:
        """Publish forever; survives lost connections by starting over."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay of %s failed; restarting", self._service)
                self.is_leader = False
                await asyncio.sleep(self._standby_interval)

    async def _run_once(self) -> None:
        # The lock lives as long as this session. A process that dies closes its socket
        # and PostgreSQL frees the lock at once; a host that vanishes is noticed by
        # these keepalives (5 s idle, then 3 probes 2 s apart: about 11 s).
        conn = await self._connect()
        try:
            lock = advisory_lock_id(f"outbox-relay:{self._service}")
            # Standby until the active relay's session ends (polling is the only
            # way to wait on a try-lock without holding a transaction open).
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock):  # noqa: ASYNC110
                await asyncio.sleep(self._standby_interval)
            self.is_leader = True
            await conn.add_listener("outbox", self._on_notify)
            while True:
                self._wakeup.clear()
                while await self.publish_pending(conn) >= self._batch_size:
                    pass
                if time.monotonic() >= self._next_purge:
                    full = await self.purge(conn) == PURGE_CHUNK
                    self._next_purge = 0.0 if full else time.monotonic() + PURGE_INTERVAL
                # Polling fallback: a lost NOTIFY costs one interval at most.
                wait = MARK_DELAY if self._sent else self._poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
        finally:
            self.is_leader = False
            # Unmarked rows are published again by whoever relays next.
            self._sent = []
            await conn.close()

    async def _connect(self) -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(
            self._dsn, server_settings=LEASE_KEEPALIVES
        )
        return connection

    async def purge(self, conn: asyncpg.Connection) -> int:
        """Delete up to PURGE_CHUNK published rows older than the retention; how many."""
        if not self._retention:
            return 0  # kept for good
        status = await conn.execute(PURGE, self._retention, PURGE_CHUNK)
        return int(status.rsplit(" ", 1)[1])

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def publish_pending(self, conn: asyncpg.Connection) -> int:
        """Mark what the last round sent, publish one batch of unpublished rows; return how
        many events were published (`batch_size` or more: there may be more waiting)."""
        sent, self._sent = self._sent, []
        rows = await conn.fetch(MARK_AND_READ, sent, self._batch_size)
        if not rows:
            self._backlog.set(0)
            return 0
        # Counted before sending: while Kafka is unreachable the backlog shows how
        # much is waiting, instead of the last figure before the outage.
        backlog = len(rows)
        if backlog >= self._batch_size:
            backlog = await conn.fetchval(BACKLOG)
        self._backlog.set(backlog)
        deliveries = []
        for row in rows:
            envelope = Envelope.from_record(json_codec.loads(row["envelope"]))
            topic = prefixed(self._topic_prefix, row["topic"])
            deliveries.append(await self._send(topic, envelope))
        # Every acknowledgement before marking anything (the next round marks them): a
        # crash here republishes the batch, and consumers drop the repeats through their inbox.
        await asyncio.gather(*deliveries)
        self._sent = list(dict.fromkeys(r["id"] for r in rows))  # a row of many: once
        self._published.inc(len(rows))
        # Rows committed meanwhile are counted by the next round, within a poll interval.
        self._backlog.set(max(backlog - len(rows), 0))
        return len(rows)

    async def _send(self, topic: str, envelope: Envelope) -> asyncio.Future[object]:
        if telemetry.drops_child_of(envelope.traceparent):
            # An unsampled trace: the publish span would not be recorded, and the
            # consumers' spans follow the same decision from the envelope's context.
            unrecorded: asyncio.Future[object] = await self._producer.send(
                topic,
                value=envelope.kafka_value(),
                key=envelope.key.encode(),
                headers=envelope.kafka_headers(),
            )
            return unrecorded
        # Restore the originating request's trace so the publish span, and every
        # consumer span after it, joins that trace.
        parent = propagate.extract(
            {"traceparent": envelope.traceparent or "", "tracestate": envelope.tracestate or ""}
        )
        with tracer.start_as_current_span(
            f"publish {topic}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.destination.name": topic,
                "messaging.message.id": envelope.id,
                "messaging.kafka.message.key": envelope.key,
                "cloudevents.event_type": envelope.type,
                **conversation(envelope),
            },
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            published = replace(
                envelope,
                traceparent=carrier.get("traceparent", envelope.traceparent),
                tracestate=carrier.get("tracestate", envelope.tracestate),
            )
            future: asyncio.Future[object] = await self._producer.send(
                topic,
                value=published.kafka_value(),
                key=published.key.encode(),
                headers=published.kafka_headers(),
            )
        return future
