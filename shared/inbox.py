"""Inbox consumer: each consumed event applied exactly once to the service's database.

Per fetched batch, one transaction records every new event id in `inbox` and
runs its handler; a subscription may also give *batch handlers*, which apply a
run of consecutive events of one type in a single call (one SQL statement
instead of one per event). Kafka offsets are committed only after that transaction
commits (auto-commit is off), and at most every COMMIT_INTERVAL: a crash or a
rebalance replays what was applied since, which the inbox drops. A redelivered event
finds its id recorded and is skipped. A handler that keeps failing sends its message,
after a bounded number of attempts, to `<topic>.dlq` with the error in the headers, and
the partition moves on (`<topic>` as read, so with any TOPIC_PREFIX it carries).

`InboxCore` is that processing; `InboxConsumer` runs it on aiokafka, and
`shared.faststream_inbox` on FastStream (CONSUMER_ENGINE chooses, aiokafka by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared import metrics
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.envelope import ACTOR, Envelope, MalformedEnvelope
from shared.inbox_telemetry import LagReports, Processed, Sampling, export_zeros, process_span
from shared.kafka import REQUEST_TIMEOUT_MS

log = logging.getLogger(__name__)

# Most records applied in one batch (one transaction), which counts only when catching up:
# 2,000 rather than 500 made reporting's catch-up 1.35x, scheduling's 1.6-2x as fast.
BATCH_SIZE = 2000
# Seconds the aiokafka engine waits to commit applied batches' offsets, so that events
# arriving one at a time share a commit (a broker round trip, a write to __consumer_offsets);
# what a crash leaves uncommitted is replayed and dropped by the inbox.
COMMIT_INTERVAL = 0.25
# How long the broker may hold a fetch of partitions with nothing new (aiokafka: 500 ms).
# Catching up, a fetch of only the drained partitions (others' records still buffered)
# stalled the consumer that long (bench/README, "Catch-up, fifth round").
FETCH_MAX_WAIT_MS = 100

Handler = Callable[[asyncpg.Connection, Envelope, EventPayload], Awaitable[None]]
BatchHandler = Callable[
    [asyncpg.Connection, Sequence[tuple[Envelope, EventPayload]]], Awaitable[None]
]


@dataclass(frozen=True)
class Subscription:
    """What a consumer listens to: handlers by CloudEvents type, across `topics`.

    `batch_handlers` (optional) apply, in the batch's transaction, each run of
    consecutive new events of their type in one call, in order; types that map to the
    same batch handler object share their runs (the handler takes any mix of them). A
    batch handler must have the same effect as its events applied one by one. If it raises,
    the batch is redone message by message, each through `handlers` (or the
    batch handler with a one-event run when a type has no per-event handler).
    """

    topics: tuple[str, ...]
    handlers: Mapping[str, Handler]
    registry: PayloadRegistry
    batch_handlers: Mapping[str, BatchHandler] = field(default_factory=dict)


def envelope_only(handler: Handler) -> Handler:
    """Marks `handler` as one that reads the envelope only, never the payload: a rebuild
    need not validate the payload of an event that only such handlers see (it passes
    None), which is most of what reporting's history reads."""
    handler.envelope_only = True  # type: ignore[attr-defined]
    return handler


def reads_payload(handler: Handler) -> bool:
    return not getattr(handler, "envelope_only", False)


def combine(*handler_maps: Mapping[str, Handler]) -> dict[str, Handler]:
    """One handler per event type that runs each map's handler in turn, in one transaction."""
    chains: dict[str, list[Handler]] = {}
    for handlers in handler_maps:
        for ce_type, handler in handlers.items():
            chains.setdefault(ce_type, []).append(handler)

    def chain(steps: list[Handler]) -> Handler:
        if len(steps) == 1:
            return steps[0]

        async def run_all(
            conn: asyncpg.Connection, envelope: Envelope, payload: EventPayload
        ) -> None:
            for step in steps:
                await step(conn, envelope, payload)

        if not any(reads_payload(step) for step in steps):
            envelope_only(run_all)
        return run_all

    return {ce_type: chain(steps) for ce_type, steps in chains.items()}


class _BatchFailed(Exception):
    """A handler raised in the fast path: redo the batch message by message."""

    def __init__(self, message_id: str, error: Exception) -> None:
        super().__init__(message_id)
        self.message_id = message_id
        self.error = error


@dataclass
class _Message:
    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope | None
    error: str | None  # why it could not be read, if it could not
    # Parsed as the batch was read, for a batch handler's run (`InboxCore.read`).
    payload: EventPayload | None = None
    message_id: str = field(init=False)

    def __post_init__(self) -> None:
        if self.envelope is None:
            r = self.record
            self.message_id = f"kafka:{r.topic}/{r.partition}/{r.offset}"
        else:
            self.message_id = f"{self.envelope.source}#{self.envelope.id}"


class InboxCore:
    """What both consumer engines share: reading, claiming in the inbox, applying,
    retrying and dead-lettering a batch of records. An engine (`InboxConsumer` here,
    `shared.faststream_inbox` on FastStream) fetches the batches and commits offsets."""

    def __init__(
        self,
        *,
        name: str,
        dsn_pool: asyncpg.Pool,
        subscription: Subscription,
        dlq_producer: AIOKafkaProducer,
        max_attempts: int = 3,
        retry_backoff: float = 0.2,
        topic_prefix: str = "",
    ) -> None:
        self.name = name
        # The prefix the subscription's topics carry (`shared.topics`): payload models
        # name canonical topics.
        self._topic_prefix = topic_prefix
        self._pool = dsn_pool
        self._subscription = subscription
        self._dlq = dlq_producer
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self._lag = LagReports(name)
        # Records and their messages as `read` gave them ahead (`InboxConsumer.run`).
        self._read_ahead: tuple[Sequence[ConsumerRecord[bytes, bytes]], list[_Message]] | None = (
            None
        )

    def _export_zeros(self) -> None:
        handled = {*self._subscription.handlers, *self._subscription.batch_handlers}
        export_zeros(
            self.name,
            self._subscription.topics,
            handled,
            self._subscription.registry,
            self._topic_prefix,
        )

    def read(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[_Message]:
        """The batch's messages, each decoded, and parsed where a batch handler's run will
        take it without a recorded span (done as the next batch is fetched, while the
        database works on this one: `InboxConsumer.run`). A payload that fails to parse
        is left for the apply, which parses it again and fails in its place."""
        batch_handlers = self._subscription.batch_handlers
        registry = self._subscription.registry
        sampling = Sampling.current()
        messages = []
        for record in records:
            message = self._read(record)
            envelope = message.envelope
            if (
                envelope is not None
                and registry.current_type(envelope.type) in batch_handlers
                and not sampling.records(envelope)
            ):
                with contextlib.suppress(Exception):
                    message.payload = registry.parse(envelope.type, envelope.data)
            messages.append(message)
        return messages

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply a batch in one transaction; fall back to one savepoint per message."""
        ahead, self._read_ahead = self._read_ahead, None
        # The messages `read` gave for these very records as they were fetched, if it did.
        messages = ahead[1] if ahead is not None and ahead[0] is records else self.read(records)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await self._apply_fresh(conn, await self._claim(conn, messages))
        except _BatchFailed as failed:
            await self._redo_carefully(messages, failed)

    async def _apply_fresh(self, conn: asyncpg.Connection, fresh: list[_Message]) -> None:
        """The fast path: apply the batch's new messages; `_BatchFailed` if one fails."""
        if self._subscription.batch_handlers:
            await self._apply_runs(conn, fresh)
            return
        for message in fresh:
            try:
                await self._apply(conn, message)
            except Exception as exc:
                raise _BatchFailed(message.message_id, exc) from exc

    async def _redo_carefully(self, messages: list[_Message], failed: _BatchFailed) -> None:
        """The slow path, in a new transaction: each message in its own savepoint, with
        its attempts, dead-lettered when they run out."""
        async with self._pool.acquire() as conn, conn.transaction():
            for message in await self._claim(conn, messages):
                first = failed.error if message.message_id == failed.message_id else None
                await self._apply_carefully(conn, message, failed_first=first)

    def _read(self, record: ConsumerRecord[bytes, bytes]) -> _Message:
        try:
            envelope = Envelope.from_kafka(record.key, record.value, record.headers)
        except MalformedEnvelope as exc:
            return _Message(record, None, str(exc))
        return _Message(record, envelope, None)

    async def _claim(self, conn: asyncpg.Connection, messages: list[_Message]) -> list[_Message]:
        """Record the batch's ids in the inbox; return the messages not seen before."""
        rows = await conn.fetch(
            'INSERT INTO inbox (consumer, message_id, topic, partition, "offset")'
            " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING message_id",
            self.name,
            [m.message_id for m in messages],
            [m.record.topic for m in messages],
            [m.record.partition for m in messages],
            [m.record.offset for m in messages],
        )
        fresh = {r["message_id"] for r in rows}
        seen: set[str] = set()
        out = []
        for m in messages:  # a batch may itself carry a repeat
            if m.message_id in fresh and m.message_id not in seen:
                seen.add(m.message_id)
                out.append(m)
        return out

    async def _apply_runs(self, conn: asyncpg.Connection, messages: list[_Message]) -> None:
        """The fast path with batch handlers: one call per run of consecutive events whose
        types share a batch handler (the same object: such a handler takes runs of all its
        types); runs of types whose batch handlers only project (`shared.batching.batched`)
        go as one run of all their types, so that statements of interleaved types still
        batch."""
        from shared.batching import apply_run, projection_of  # imports this module

        batch_handlers = self._subscription.batch_handlers
        handlers = self._subscription.handlers
        registry = self._subscription.registry
        projections = {
            ce_type: projection
            for ce_type, handler in batch_handlers.items()
            if (projection := projection_of(handler)) is not None
        }
        sampling = Sampling.current()
        processed = Processed(self.name)
        run: list[tuple[Envelope, EventPayload]] = []
        run_handler: object = None  # what `run` goes to: a batch handler or `projections`

        async def project(
            conn: asyncpg.Connection, envelope: Envelope, event: EventPayload
        ) -> None:
            await projections[registry.current_type(envelope.type)](conn, envelope, event)

        async def flush() -> None:
            if run:
                try:
                    if run_handler is projections:
                        await apply_run(conn, project, run)
                    else:
                        await cast(BatchHandler, run_handler)(conn, run)
                except Exception as exc:
                    # No single message is to blame: each gets all its attempts.
                    raise _BatchFailed("", exc) from exc
                run.clear()

        for message in messages:
            envelope = message.envelope
            current = registry.current_type(envelope.type) if envelope is not None else ""
            if envelope is not None and current not in batch_handlers and current not in handlers:
                # A type this service does not act on changes nothing (`_apply` returns
                # without parsing it), so the run goes on past it: in scheduling, the
                # requests and declines between accepts cut every run of accepts short.
                # Its span is only started where it would be recorded.
                if sampling.records(envelope):
                    with process_span(message.record, envelope, self.name):
                        pass
                continue
            if envelope is None or current not in batch_handlers:
                await flush()
                try:
                    await self._apply(conn, message)
                except Exception as exc:
                    raise _BatchFailed(message.message_id, exc) from exc
                continue
            handler = projections if current in projections else batch_handlers[current]
            if handler is not run_handler:
                await flush()
                run_handler = handler
            payload = message.payload
            if payload is None and sampling.records(envelope):
                with process_span(message.record, envelope, self.name):
                    payload = registry.parse(envelope.type, envelope.data)
            elif payload is None:
                payload = registry.parse(envelope.type, envelope.data)
            run.append((envelope, payload))
            processed.add(message.record.topic, envelope.type)
        await flush()
        processed.report()

    async def _apply(self, conn: asyncpg.Connection, message: _Message) -> None:
        if message.envelope is None:
            raise MalformedEnvelope(message.error or "unreadable")
        envelope = message.envelope
        # Handlers are keyed by the current version; an old one is upcast when parsed.
        current = self._subscription.registry.current_type(envelope.type)
        handler = self._subscription.handlers.get(current)
        batch_handler = self._subscription.batch_handlers.get(current)
        if handler is None and batch_handler is None:
            if not self._subscription.registry.knows(envelope.type):
                return  # an event type this service does not care about
        with process_span(message.record, envelope, self.name):
            if handler is None and batch_handler is None:
                return
            payload = self._subscription.registry.parse(envelope.type, envelope.data)
            # Events written in reaction carry the actor of the event they react to.
            acting = ACTOR.set(envelope.actor)
            try:
                if handler is not None:
                    await handler(conn, envelope, payload)
                else:
                    assert batch_handler is not None
                    await batch_handler(conn, [(envelope, payload)])
            finally:
                ACTOR.reset(acting)
        metrics.EVENTS_PROCESSED.labels(self.name, message.record.topic, envelope.type).inc()

    async def _apply_carefully(
        self,
        conn: asyncpg.Connection,
        message: _Message,
        *,
        failed_first: Exception | None = None,
    ) -> None:
        # A failure in the batch's fast path was this message's first attempt.
        error: BaseException | None = failed_first
        attempts = 0
        if failed_first is not None and not isinstance(
            failed_first, asyncpg.PostgresConnectionError | OSError
        ):
            attempts = 1
            if not isinstance(failed_first, MalformedEnvelope):
                metrics.EVENT_PROCESSING_ERRORS.labels(self.name, message.record.topic).inc()
        # No retry can make an unreadable message readable.
        while attempts < self._max_attempts and not isinstance(error, MalformedEnvelope):
            if attempts:
                await asyncio.sleep(self._retry_backoff * attempts)
            attempts += 1
            try:
                async with conn.transaction():  # a savepoint
                    await self._apply(conn, message)
                return
            except MalformedEnvelope as exc:
                error = exc
            except (asyncpg.PostgresConnectionError, OSError):
                raise  # not the message's fault: fail the batch, retry it later
            except Exception as exc:
                error = exc
                metrics.EVENT_PROCESSING_ERRORS.labels(self.name, message.record.topic).inc()
                log.warning(
                    "%s: attempt %d failed for %s: %s", self.name, attempts, message.message_id, exc
                )
        assert error is not None
        await self._dead_letter(message, error, attempts)
        await conn.execute(
            "UPDATE inbox SET outcome = 'dead_lettered' WHERE consumer = $1 AND message_id = $2",
            self.name,
            message.message_id,
        )

    async def _dead_letter(self, message: _Message, error: BaseException, attempts: int) -> None:
        r = message.record
        headers = [
            *r.headers,
            ("dlq_error", f"{type(error).__name__}: {error}".encode()[:4000]),
            ("dlq_error_type", type(error).__name__.encode()),
            ("dlq_stacktrace", "".join(traceback.format_exception(error)).encode()[-8000:]),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_consumer", self.name.encode()),
            ("dlq_original_topic", r.topic.encode()),
            ("dlq_original_partition", str(r.partition).encode()),
            ("dlq_original_offset", str(r.offset).encode()),
        ]
        # Awaited before the transaction commits: once the offset moves on, the
        # dead letter is safely on Kafka.
        await (await self._dlq.send(f"{r.topic}.dlq", value=r.value, key=r.key, headers=headers))
        metrics.DEAD_LETTERS.labels(self.name, r.topic).inc()
        log.error(
            "%s: %s sent to %s.dlq after %d attempts: %s",
            self.name,
            message.message_id,
            r.topic,
            attempts,
            error,
        )

    def _observe(self, partitions: Iterable[TopicPartition], fetched: float) -> None:
        elapsed = time.perf_counter() - fetched
        for tp in partitions:
            # Every event of the batch waited until the batch committed.
            metrics.EVENT_PROCESSING_SECONDS.labels(self.name, tp.topic).observe(elapsed)


Batch = Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


Fetched = tuple[Batch, list[_Message]]


async def _settled(ahead: asyncio.Future[Fetched]) -> Fetched:
    """What a fetch started ahead got (nothing, if it was still waiting: it is called off)."""
    if not ahead.done():
        ahead.cancel()
        await asyncio.wait([ahead])  # a cancellation of the caller still goes through
    if ahead.cancelled():
        return {}, []
    return ahead.result()


def _fetched_ahead(ahead: asyncio.Future[Fetched] | None) -> Batch:
    """The records a fetch started ahead has handed out (none while it still waits)."""
    if ahead is None or not ahead.done() or ahead.cancelled() or ahead.exception():
        return {}
    return ahead.result()[0]


class InboxConsumer(InboxCore):
    def __init__(
        self,
        *,
        name: str,
        dsn_pool: asyncpg.Pool,
        bootstrap_servers: str,
        subscription: Subscription,
        dlq_producer: AIOKafkaProducer,
        max_attempts: int = 3,
        batch_size: int = BATCH_SIZE,
        instance_id: str | None = None,
        retry_backoff: float = 0.2,
        topic_prefix: str = "",
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            dsn_pool=dsn_pool,
            subscription=subscription,
            dlq_producer=dlq_producer,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            topic_prefix=topic_prefix,
        )
        self._batch_size = batch_size
        self._consumer = AIOKafkaConsumer(
            *subscription.topics,
            # `kafka_options`: `shared.kafka.client_options` (bootstrap servers, security).
            **{"bootstrap_servers": bootstrap_servers, **(kafka_options or {})},
            group_id=name,
            group_instance_id=instance_id,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            client_id=instance_id or name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.started = False
        # Offsets of applied batches not committed yet, and the task that commits them.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committing: asyncio.Task[None] | None = None

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    async def start(self) -> None:
        await self._consumer.start()
        self._export_zeros()
        self.started = True

    async def stop(self) -> None:
        self.started = False
        if self._committing is not None:
            self._committing.cancel()
        await self._commit_uncommitted()
        await self._consumer.stop()

    async def run(self) -> None:
        """Fetch, apply, commit; while a batch is applied the next one is fetched already
        (records parsed as they arrive), so that catching up a backlog the broker's round
        trips overlap the database's. Nothing waits for a batch to fill: a fetch returns
        what has arrived."""
        ahead: asyncio.Future[Fetched] | None = None
        try:
            while True:
                batch, messages = await (ahead or self._fetch())
                ahead = None
                if messages:
                    ahead = asyncio.ensure_future(self._fetch())
                    if not await self._consume(batch, messages):
                        # Read again from the failed batch on: the batch fetched ahead too.
                        unread, _ = await _settled(ahead)
                        ahead = None
                        self._seek_back(batch, unread)
                        await asyncio.sleep(self._retry_backoff * 5)
                # Also while idle or stuck on a failing batch, when lag matters most.
                await self._lag.report(self._consumer, partial(_fetched_ahead, ahead))
        finally:
            if ahead is not None:
                ahead.cancel()

    async def _fetch(self) -> Fetched:
        batch: Batch = await self._consumer.getmany(timeout_ms=500, max_records=self._batch_size)
        return batch, self.read([r for rs in batch.values() for r in rs])

    def _seek_back(self, *batches: Batch) -> None:
        """Each partition back to the first record of `batches` (in order) it had."""
        for batch in reversed(batches):
            for tp, rs in batch.items():
                if rs:
                    # A partition a rebalance took meanwhile: its new owner reads it.
                    with contextlib.suppress(IllegalStateError):
                        self._consumer.seek(tp, rs[0].offset)

    async def _consume(self, batch: Batch, messages: list[_Message]) -> bool:
        """Apply and commit `batch`; False if it failed (nothing of it was committed)."""
        fetched = time.perf_counter()
        try:
            records = [m.record for m in messages]
            self._read_ahead = (records, messages)
            await self.process(records)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database is unreachable or the transaction failed as a
            # whole: nothing was committed, so read the batch again later.
            log.exception("%s: batch failed; will retry", self.name)
            return False
        await self._commit(batch)
        self._observe(batch, fetched)
        return True

    async def _commit(self, batch: Batch) -> None:
        """Have the offsets `batch` reached committed within COMMIT_INTERVAL, with those of
        the batches applied meanwhile."""
        for tp, rs in batch.items():
            self._uncommitted[tp] = rs[-1].offset + 1
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_soon())

    async def _commit_soon(self) -> None:
        while self._uncommitted:
            await asyncio.sleep(COMMIT_INTERVAL)
            await self._commit_uncommitted()

    async def _commit_uncommitted(self) -> None:
        offsets, self._uncommitted = self._uncommitted, {}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance took the partitions away: whoever gets them re-reads
            # from the last commit, and the inbox drops what we applied.
            log.warning(
                "%s: offset commit failed (%s); the inbox absorbs the replay", self.name, exc
            )
