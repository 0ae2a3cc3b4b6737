"""The inbox consumer on FastStream: a batch subscriber with manual acknowledgement.

Same contract as `shared.inbox.InboxConsumer` (same `Subscription`, inbox table,
retries, `<topic>.dlq` headers, spans and metrics), selected per service by
CONSUMER_ENGINE=faststream (`shared.settings`). The consumer's concerns are
FastStream middlewares around a handler that applies the batch's new events:

  AckMiddleware          offsets: `ack()` (commit) after the database transaction
                         committed; on failure `nack()` (seek back to the batch's
                         start) and read the batch again after a pause;
  DeadLetterMiddleware   when the fast path fails, redo the batch message by message
                         in a new transaction, with bounded attempts, then `<topic>.dlq`;
  InboxMiddleware        one transaction per batch: record the ids in `inbox`, hand
                         the new messages to the handler, commit.

The processing itself (`InboxCore`) is shared with the aiokafka engine, so both
apply events identically. `start()` joins the group; events are applied once
`run()` runs (as with `InboxConsumer`), which also reports the consumer lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from faststream import BaseMiddleware
from faststream._internal.context.repository import ContextRepo
from faststream._internal.types import BrokerMiddleware
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy

from shared.inbox import (
    BATCH_SIZE,
    InboxCore,
    Subscription,
    _BatchFailed,
    _Message,
)
from shared.inbox_telemetry import LAG_INTERVAL
from shared.kafka import REQUEST_TIMEOUT_MS, faststream_security

log = logging.getLogger(__name__)

Records = tuple[ConsumerRecord[bytes, bytes], ...]


@dataclass
class _Batch:
    """What `InboxMiddleware` hands the handler: the transaction and the new messages."""

    conn: asyncpg.Connection
    fresh: list[_Message]


_CURRENT: ContextVar[_Batch] = ContextVar("faststream_inbox_batch")


def _records(msg: StreamMessage[Any]) -> Records:
    raw = msg.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


class _InboxStep(BaseMiddleware[Any, Any]):
    """A middleware bound to one consumer (FastStream builds one per message)."""

    def __init__(
        self, msg: Any, /, *, context: ContextRepo, inbox: FastStreamInboxConsumer
    ) -> None:
        super().__init__(msg, context=context)
        self.inbox = inbox


def _bound(step: type[_InboxStep], inbox: FastStreamInboxConsumer) -> BrokerMiddleware[Any, Any]:
    def build(msg: Any, /, *, context: ContextRepo) -> BaseMiddleware[Any, Any]:
        return step(msg, context=context, inbox=inbox)

    return build


class AckMiddleware(_InboxStep):
    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        inbox = self.inbox
        if not await inbox.may_apply():
            await msg.nack()  # stopping: whoever gets the partitions reads the batch again
            return None
        fetched = time.perf_counter()
        try:
            await call_next(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database is unreachable or the transaction failed as a whole:
            # nothing was committed, so read the batch again later.
            log.exception("%s: batch failed; will retry", inbox.name)
            await msg.nack()
            await asyncio.sleep(inbox.retry_backoff * 5)
            return None
        await inbox.acknowledge(msg)
        records = _records(msg)
        inbox.observe({TopicPartition(r.topic, r.partition) for r in records}, fetched)
        return None


class DeadLetterMiddleware(_InboxStep):
    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except _BatchFailed as failed:
            await self.inbox.redo_carefully(_records(msg), failed)
            return None


class InboxMiddleware(_InboxStep):
    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        inbox = self.inbox
        messages = inbox.read_all(_records(msg))
        async with inbox.pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, messages)
            token = _CURRENT.set(_Batch(conn, fresh))
            try:
                return await call_next(msg)
            finally:
                _CURRENT.reset(token)


async def _raw(msg: StreamMessage[Any]) -> None:
    """No decoding: the inbox reads each record's envelope itself."""
    return None


class FastStreamInboxConsumer(InboxCore):
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
        self.retry_backoff = retry_backoff
        self.applying = asyncio.Event()
        self.stopping = asyncio.Event()
        self.started = False
        # The middlewares, bound to this consumer; the first listed is the outermost.
        steps = [
            _bound(step, self) for step in (AckMiddleware, DeadLetterMiddleware, InboxMiddleware)
        ]
        options = kafka_options or {}
        self.broker = KafkaBroker(
            options.get("bootstrap_servers", bootstrap_servers),
            security=faststream_security(options),
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            client_id=instance_id or name,
            middlewares=steps,
            logger=None,
            graceful_timeout=10.0,
        )
        self.subscriber = self.broker.subscriber(
            *subscription.topics,
            batch=True,
            group_id=name,
            group_instance_id=instance_id,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_records=batch_size,
            batch_timeout_ms=200,
            ack_policy=AckPolicy.MANUAL,
            decoder=_raw,
            include_in_schema=False,
        )
        self.subscriber(self._handle)

    async def may_apply(self) -> bool:
        """Wait until `run()` runs (start() only joins the group); False when stopping."""
        if not self.applying.is_set():
            waits = [asyncio.ensure_future(e.wait()) for e in (self.applying, self.stopping)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        return not self.stopping.is_set()

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def assignment(self) -> set[TopicPartition]:
        consumer = self.subscriber.consumer
        return set(consumer.assignment()) if consumer is not None else set()

    async def start(self) -> None:
        self.stopping.clear()
        await self.broker.start()
        self._export_zeros()
        self.started = True

    async def stop(self) -> None:
        self.started = False
        self.applying.clear()
        self.stopping.set()  # a batch waiting for run() gives up instead of holding the stop
        await self.broker.stop()

    async def run(self) -> None:
        """Let the subscriber apply batches; report the lag until cancelled."""
        self.applying.set()
        try:
            while True:
                consumer = self.subscriber.consumer
                if consumer is not None:
                    await self._lag.report(consumer)  # at most once per LAG_INTERVAL
                # Soon again until the group has assigned partitions, then at the interval.
                await asyncio.sleep(LAG_INTERVAL if self._lag.partitions else 0.2)
        finally:
            self.applying.clear()

    async def _handle(self, body: Any) -> None:
        """The subscriber's handler: apply the new messages `InboxMiddleware` claimed."""
        batch = _CURRENT.get()
        await self.apply_batch(batch.conn, batch.fresh)

    async def apply_batch(self, conn: asyncpg.Connection, fresh: list[_Message]) -> None:
        await self._apply_fresh(conn, fresh)

    def read_all(self, records: Records) -> list[_Message]:
        return self.read(records)

    async def claim(self, conn: asyncpg.Connection, messages: list[_Message]) -> list[_Message]:
        return await self._claim(conn, messages)

    async def redo_carefully(self, records: Records, failed: _BatchFailed) -> None:
        await self._redo_carefully(self.read_all(records), failed)

    def observe(self, partitions: set[TopicPartition], fetched: float) -> None:
        self._observe(partitions, fetched)

    async def acknowledge(self, msg: StreamMessage[Any]) -> None:
        """Commit the positions the batch reached (the transaction has committed)."""
        try:
            await msg.ack()
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away: whoever gets them re-reads
            # from the last commit, and the inbox drops what we applied.
            log.warning(
                "%s: offset commit failed (%s); the inbox absorbs the replay", self.name, exc
            )
