"""Dead letters for the dashboard: the services' `<topic>.dlq` records, counted per event.

A service's inbox sends a message it gave up on to `<topic>.dlq`, with the original
key and value and the error in `dlq_*` headers (`shared.inbox`). Reporting reads
those topics under the platform's TOPIC_PREFIX (`shared.topics`), so a platform
counts its own dead letters and not those of another sharing the broker (a test
suite). It reads them with a consumer group of its own and stores one row per record
(keyed by topic, partition and offset, so a re-read stores nothing; the topic as on
Kafka, prefix included), committing offsets only after the rows are. Records are
keyed by their brokerage event's id (see `shared.envelope`), so that key attributes
a dead letter to an event; one with any other key (an organiser's id, none, garbage)
is platform-wide. Any record, however malformed, is stored as well as it can be
read: this consumer is the one place where malformed records must not stop anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.reporting.live import notify
from shared.kafka import client_options
from shared.runtime import ServiceRuntime
from shared.topics import prefixed_all

log = logging.getLogger(__name__)

SERVICES = ("registration", "matching", "scheduling", "notification", "reporting")
# Canonical names; read under the platform's TOPIC_PREFIX (`topics_of`).
TOPICS = tuple(f"{service}.events.dlq" for service in SERVICES)
_TEXT_LIMIT = 2000
_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    record_key: str | None
    original_topic: str | None
    consumer: str | None
    error_type: str | None
    error: str | None
    event_type: str | None
    dead_lettered_at: datetime


def _text(raw: object, limit: int = _TEXT_LIMIT) -> str | None:
    if not isinstance(raw, bytes | bytearray) or not raw:
        return None
    # NUL cannot be stored in a PostgreSQL text column.
    return bytes(raw).decode("utf-8", "replace").replace("\x00", "")[:limit] or None


def read(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    """The dead letter in `record`; never raises, whatever the record holds."""
    headers: dict[str, object] = {}
    try:
        for name, value in record.headers or ():
            headers.setdefault(str(name), value)
    except (TypeError, ValueError):
        pass  # headers not in (name, value) pairs: read none of them
    stamp = record.timestamp if isinstance(record.timestamp, int) else -1
    try:
        at = datetime.fromtimestamp(stamp / 1000, UTC) if stamp > 0 else datetime.now(UTC)
    except (OverflowError, OSError, ValueError):
        at = datetime.now(UTC)
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        record_key=_text(record.key, 500),
        original_topic=_text(headers.get("dlq_original_topic"), 300),
        consumer=_text(headers.get("dlq_consumer"), 300),
        error_type=_text(headers.get("dlq_error_type"), 300),
        error=_text(headers.get("dlq_error")),
        event_type=_text(headers.get("ce_type"), 300),
        dead_lettered_at=at,
    )


async def store(conn: asyncpg.Connection, letters: Sequence[DeadLetter]) -> int:
    """Insert new dead letters (repeats are ignored) and wake their dashboards."""
    if not letters:
        return 0
    columns = list(DeadLetter.__dataclass_fields__)
    rows = await conn.fetch(
        'INSERT INTO dead_letters (topic, partition, "offset", record_key, original_topic,'
        " consumer, error_type, error, event_type, dead_lettered_at)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[],"
        " $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])"
        " ON CONFLICT DO NOTHING RETURNING record_key",
        *[[getattr(letter, column) for letter in letters] for column in columns],
    )
    keys = {r["record_key"] for r in rows}
    known = {
        r["event_id"]
        for r in await conn.fetch(
            "SELECT event_id FROM brokerage_events WHERE event_id = ANY($1::text[])",
            [k for k in keys if k],
        )
    }
    for key in sorted(known):
        await notify(conn, key)
    if keys - known:
        await notify(conn, None)  # platform-wide: every dashboard shows those
    return len(rows)


class DeadLetterConsumer:
    """Reads the `.dlq` topics into `dead_letters`; offsets committed after the insert."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        bootstrap_servers: str,
        group: str,
        topics: Sequence[str],
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._pool = pool
        self._consumer = AIOKafkaConsumer(
            *topics,
            **{"bootstrap_servers": bootstrap_servers, **(kafka_options or {})},
            group_id=group,
            client_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new reader counts the dead letters of the past too
            isolation_level="read_committed",
        )

    async def run(self) -> None:
        await self._consumer.start()
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=1000, max_records=500)
                if batch:
                    await self._apply(batch)
        finally:
            await self._consumer.stop()

    async def _apply(
        self, batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        letters = [read(r) for records in batch.values() for r in records]
        async with self._pool.acquire() as conn, conn.transaction():
            await store(conn, letters)
        try:
            await self._consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
        except KafkaError as exc:  # a rebalance: the rows are there, a re-read adds nothing
            log.warning("dead letters: offset commit failed (%s)", exc)


def group_of(runtime: ServiceRuntime) -> str:
    """Its own consumer group, suffixed like the inbox's, so a second platform reads alone."""
    return f"{runtime.name}-dead-letters{runtime.settings.consumer_group_suffix}"


def topics_of(runtime: ServiceRuntime) -> tuple[str, ...]:
    """The `.dlq` topics of this platform: under its TOPIC_PREFIX, like the inbox's."""
    return prefixed_all(runtime.settings.topic_prefix, TOPICS)


async def consume(runtime: ServiceRuntime) -> None:
    """Background task: the dead-letter consumer, restarted after any failure."""
    while True:
        consumer = DeadLetterConsumer(
            pool=runtime.pool,
            bootstrap_servers=runtime.settings.kafka_bootstrap_servers,
            kafka_options=client_options(runtime.settings),
            group=group_of(runtime),
            topics=topics_of(runtime),
        )
        try:
            await consumer.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # broker or database away: nothing committed, read again later
            log.exception("dead letters: consumer failed; restarting")
        await asyncio.sleep(_RETRY_SECONDS)
