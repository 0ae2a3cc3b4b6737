"""The rebuild's read of the topics a service consumes (`shared.rebuild`): every record
from the start to the current end, and the events of those the live consumer applied,
decoded as they come."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.envelope import Envelope, MalformedEnvelope, header_texts
from shared.inbox import reads_payload
from shared.inserts import Insert
from shared.rebuild_write import PendingWrite, Stream

if TYPE_CHECKING:
    from shared.rebuild import Plan
    from shared.rebuild_fold import Fold


async def read_topics(
    bootstrap: str,
    topics: Sequence[str],
    start: Mapping[TopicPartition, int] | None = None,
    kafka_options: Mapping[str, Any] | None = None,
    each_batch: Callable[[Sequence[ConsumerRecord[bytes, bytes]]], None] | None = None,
) -> tuple[list[ConsumerRecord[bytes, bytes]], dict[TopicPartition, int]]:
    """Every record of `topics` from `start` (default: the beginning) to their current end;
    `each_batch` is called with each fetched batch as it comes.

    `kafka_options`: `shared.kafka.client_options` (bootstrap servers, security)."""
    consumer = AIOKafkaConsumer(
        **{"bootstrap_servers": bootstrap, **(kafka_options or {})},
        enable_auto_commit=False,
        group_id=None,
        # Where an assigned partition starts without a committed offset: set, not sought
        # after the assignment (a seek raced with the default reset to the end).
        auto_offset_reset="earliest",
        # The broker answers a fetch at once when it has data; the default wait (500 ms)
        # held each offset lookup below for that long, on an idle topic.
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # every topic's partitions
        partitions = []
        for topic in topics:
            numbers = cluster.partitions_for_topic(topic)
            if not numbers:
                raise RuntimeError(f"topic {topic} does not exist on {bootstrap}")
            partitions += [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        # The consumer's own metadata must know the topics before it asks for offsets
        # (an unknown partition would answer an end of 0, and nothing would be read).
        for _ in range(100):
            if all(consumer._client.cluster.partitions_for_topic(t) for t in topics):
                break
            await consumer._client.force_metadata_update()
            if all(consumer._client.cluster.partitions_for_topic(t) for t in topics):
                break
            await asyncio.sleep(0.1)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            await consumer.position(tp)  # the reset to the beginning done
            if start and tp in start:
                consumer.seek(tp, start[tp])
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, got in batch.items():
                kept = [r for r in got if r.offset < end[tp]]
                records += kept
                if each_batch is not None:
                    each_batch(kept)
        return records, dict(end)
    finally:
        await consumer.stop()


Event = tuple[Envelope, EventPayload]
# A consumed record's place in time order (its time, then where it is) and its event.
Placed = tuple[tuple[int, str, int, int], Event]


def consumed_events(
    plan: Plan, registry: PayloadRegistry, applied: set[str]
) -> tuple[
    list[Placed],
    list[Envelope],
    Callable[[Sequence[ConsumerRecord[bytes, bytes]]], None],
    dict[Insert, list[Envelope]],
]:
    """Two lists, what adds to them the events of records the live consumer applied
    (for `read_topics`' `each_batch`: decoded while the next fetch is on its way), and
    the envelopes per `Plan.inserts`: the events a handler here takes (but those of
    `inserts`), every envelope if the plan has an `every_record`, and those of the
    types of each of its `inserts` (their current versions: older ones are upcast
    through the handlers, as live)."""
    handlers, current_type, parse = plan.consumed, registry.current_type, registry.parse
    found: list[Placed] = []
    every: list[Envelope] = []
    keep_every = plan.every_record is not None
    inserts = plan.inserts
    inserted: dict[Insert, list[Envelope]] = {each: [] for each in inserts.values()}
    # Per raw `ce_type` header (bytes, as the record holds it; the last of a repeated
    # name, as `header_texts` takes it): whether a handler here reads its payload, None
    # when no handler here takes the type (or there is none). A record for no handler is
    # passed over before its headers are decoded: half or more of the records of
    # scheduling's and registration's topics.
    payload_read: dict[bytes | None, bool | None] = {}
    from_texts = Envelope.from_header_texts
    no_payload = cast(EventPayload, None)

    def reads_of(raw_type: bytes | None) -> bool | None:
        if raw_type is None:
            return None
        handler = handlers.get(current_type(raw_type.decode("utf-8", "replace")))
        return None if handler is None else reads_payload(handler)

    def add(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            # From the headers alone first: most records of a topic are not for this
            # service's projection, and their values need not be decoded.
            headers = record.headers
            raw_type = None
            for name, raw in headers:
                if name == "ce_type":
                    raw_type = raw
            if raw_type in payload_read:
                reads = payload_read[raw_type]
            else:
                reads = payload_read[raw_type] = reads_of(raw_type)
            if reads is None and not keep_every:
                continue  # no handler here
            texts = header_texts(headers)
            source, ce_id, ce_type = (
                texts.get("ce_source"),
                texts.get("ce_id"),
                texts.get("ce_type"),
            )
            if source is None or ce_id is None or ce_type is None:
                continue  # malformed: the live consumer dead-lettered it
            # As `Envelope.from_kafka` decodes them, which the live inbox's message id uses.
            if f"{source}#{ce_id}" not in applied:
                continue  # the live consumer did not apply it (or never saw it)
            try:
                envelope = from_texts(record.key, record.value, texts)
            except MalformedEnvelope:
                continue
            if keep_every:
                every.append(envelope)
            if (insert := inserts.get(ce_type)) is not None:
                inserted[insert].append(envelope)
                continue  # (its one handler is the insert's)
            if reads is None:
                continue  # no handler here but the plan's `every_record`
            place = (record.timestamp, record.topic, record.partition, record.offset)
            if reads:
                found.append((place, (envelope, parse(envelope.type, envelope.data))))
            else:  # validated when its producer recorded it; no handler here reads it
                found.append((place, (envelope, no_payload)))

    return found, every, add, inserted


async def apply_insert(
    target: asyncpg.Pool, insert: Insert, envelopes: Sequence[Envelope], fold: Fold | None
) -> None:
    """`insert`'s statement for each envelope: folded while its table is (the fold's rows
    are the server's, `shared.rebuild_fold`), else sent, in one transaction."""
    query, args = insert.query, insert.args
    rest = envelopes
    if fold is not None:
        take = fold.take
        for n, envelope in enumerate(envelopes):
            if not take(query, args(envelope)):
                rest = envelopes[n:]
                break
        else:
            return
    if rest:
        async with target.acquire() as conn, conn.transaction():
            await conn.executemany(query, [args(envelope) for envelope in rest])


class EveryRecordAsRead:
    """`every`'s statement folded for the envelopes as the topics are read, not after the
    read, and its table's rows streamed to the server meanwhile (`shared.rebuild_write`'s
    `Stream`): the server's COPY of reporting's history (one row per record, most of its
    work in a rebuild) then overlaps the read instead of following it.

    `each_batch` wraps `consumed_events`' `add` for `read_topics`; `start`, once the fold
    exists, folds what was read so far and from then on each batch as it comes.
    `apply_insert` takes the `rest` after the read (all of them without a start,
    or if the statement does not fold)."""

    # Rows per chunk sent (each chunk is one COPY on the stream's connection).
    CHUNK = 10000

    def __init__(self, every: Insert, envelopes: list[Envelope]) -> None:
        self._every, self._envelopes = every, envelopes
        self._folded = 0
        self._since_drain = 0
        self._fold: Fold | None = None
        self._stream: Stream | None = None

    @property
    def rest(self) -> list[Envelope]:
        """The envelopes not folded yet."""
        return self._envelopes[self._folded :]

    def each_batch(
        self, add: Callable[[Sequence[ConsumerRecord[bytes, bytes]]], None]
    ) -> Callable[[Sequence[ConsumerRecord[bytes, bytes]]], None]:
        def add_and_fold(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            add(records)
            if self._stream is not None:
                self._fold_new()

        return add_and_fold

    def start(self, target: asyncpg.Pool, fold: Fold) -> PendingWrite | None:
        """Fold and stream from now on, if the statement folds as an insert; the stream's
        write (what a statement naming the table waits for), or None."""
        if not fold.appends(self._every.query):
            return None
        self._fold, self._stream = fold, Stream(target, fold, self._every.table)
        self._fold_new()
        return self._stream.pending

    def _fold_new(self) -> None:
        assert self._fold is not None and self._stream is not None
        query, args, take = self._every.query, self._every.args, self._fold.take
        new = self.rest
        for envelope in new:
            # (An insert into a streamed table folds until the table is released.)
            if not take(query, args(envelope)):
                raise RuntimeError(f"{self._every.table}: a streamed insert did not fold")
        self._folded += len(new)
        self._since_drain += len(new)
        if self._since_drain >= self.CHUNK:
            self._since_drain = 0
            self._stream.drain()
