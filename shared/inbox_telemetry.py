"""What the inbox consumer (`shared.inbox`) tells about its work: each event's `process
<topic>` span, the counts of processed events, the dead letters and errors, and its lag
(`LagReports`).

Catching up a backlog, the inbox applies thousands of events a second, and whatever it
does per event counts: so an event's span is only started where it would be recorded
(`Sampling.records`: an unsampled span is never exported, only its ids propagate, and
in a batch handler's run nothing reads them), and the processed events are counted
once per batch (`Processed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, get_current_span

from shared import logs, metrics
from shared.contracts.registry import PayloadRegistry
from shared.envelope import Envelope
from shared.outbox import conversation
from shared.topics import prefixed

tracer = trace.get_tracer("shared.inbox")


def parent_of(envelope: Envelope) -> object:
    """The trace context the event carries (W3C headers), as a parent context."""
    return propagate.extract(
        {"traceparent": envelope.traceparent or "", "tracestate": envelope.tracestate or ""}
    )


@contextmanager
def process_span(
    record: ConsumerRecord[bytes, bytes], envelope: Envelope, group: str
) -> Iterator[Span]:
    """The event's `process <topic>` span, continuing the trace the event carries;
    log lines inside carry the event's correlation id (`shared.logs`)."""
    with (
        tracer.start_as_current_span(
            f"process {record.topic}",
            context=parent_of(envelope),  # type: ignore[arg-type]
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": group,
                "messaging.message.id": envelope.id,
                "cloudevents.event_type": envelope.type,
                **conversation(envelope),
            },
        ) as span,
        logs.correlation(envelope.correlation_id),
    ):
        yield span


class Sampling:
    """Whether an event's `process` span would be recorded, asked of the sampler the
    installed tracer provider has (looked up once per batch: `current`)."""

    __slots__ = ("_sampler",)

    def __init__(self, sampler: object | None) -> None:
        self._sampler = sampler

    @classmethod
    def current(cls) -> Sampling:
        # Only the SDK's provider has a sampler; without one (the API's default, as in
        # the benchmarks) no span is ever recorded.
        return cls(getattr(trace.get_tracer_provider(), "sampler", None))

    def records(self, envelope: Envelope) -> bool:
        sampler = self._sampler
        if sampler is None:
            return False
        if not envelope.traceparent:
            return True  # a root span: the sampler decides on an id not drawn yet
        parent = parent_of(envelope)
        carried = get_current_span(parent).get_span_context()  # type: ignore[arg-type]
        if not carried.is_valid:
            return True
        # The span's trace id is its parent's, so this is the decision it would get.
        decision = sampler.should_sample(  # type: ignore[attr-defined]
            parent, carried.trace_id, "process", SpanKind.CONSUMER
        ).decision
        return bool(decision.is_sampled())


class Processed:
    """Events processed in a batch, by topic and type, added to `events_processed` once
    the batch is applied (one increment per label set, not one per event)."""

    __slots__ = ("_counts", "_group")

    def __init__(self, group: str) -> None:
        self._group = group
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, topic: str, ce_type: str) -> None:
        self._counts[topic, ce_type] += 1

    def report(self) -> None:
        for (topic, ce_type), count in self._counts.items():
            metrics.EVENTS_PROCESSED.labels(self._group, topic, ce_type).inc(count)
        self._counts.clear()


def export_zeros(
    group: str,
    topics: tuple[str, ...],
    handled: set[str],
    registry: PayloadRegistry,
    topic_prefix: str,
) -> None:
    """Export zeros from the start, so dashboards show "none" rather than "no data"
    and rate() sees the first failure."""
    for topic in topics:
        metrics.EVENT_PROCESSING_SECONDS.labels(group, topic)
        metrics.EVENT_PROCESSING_ERRORS.labels(group, topic)
        metrics.DEAD_LETTERS.labels(group, topic)
    for model in registry.models():
        topic = prefixed(topic_prefix, model.topic())
        if model.ce_type() in handled and topic in topics:
            metrics.EVENTS_PROCESSED.labels(group, topic, model.ce_type())


# Seconds between two reports of the consumer lag (each asks for every partition's position).
LAG_INTERVAL = 2.0


class LagReports:
    """One consumer's `consumer_lag` gauges, set per assigned partition (`report`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._reported_at = 0.0
        self.partitions: set[TopicPartition] = set()  # those reported last time

    async def report(
        self,
        consumer: AIOKafkaConsumer,
        unapplied: Callable[[], Mapping[TopicPartition, Sequence[object]]] = dict,
    ) -> None:
        """Set `consumer_lag` per assigned partition: its end minus what has been applied.

        That is the consumer's position less the records it has handed out and we have
        not applied yet (`unapplied`: the batch `InboxConsumer.run` fetched ahead, once
        its fetch has returned; without it the lag read up to a batch short while
        catching up). After a failed batch the position was sought back to its start. At
        most once per LAG_INTERVAL; partitions a rebalance took away stop being reported.
        """
        now = time.monotonic()
        if now - self._reported_at < LAG_INTERVAL:
            return
        assigned = consumer.assignment()
        if not assigned and not self.partitions:
            return  # not in the group yet: ask again soon, not in LAG_INTERVAL
        self._reported_at = now
        for tp in self.partitions - assigned:
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.name, tp.topic, str(tp.partition))
        self.partitions = set()
        ends = {tp: consumer.highwater(tp) for tp in assigned}
        unknown = [tp for tp, end in ends.items() if end is None]
        if unknown:  # no fetch has answered for them yet (e.g. empty partitions): ask
            with contextlib.suppress(KafkaError, IllegalStateError, TimeoutError):
                ends.update(await asyncio.wait_for(consumer.end_offsets(unknown), 1))
        for tp, end in ends.items():
            if end is None:
                continue  # the next report has it
            try:
                position = await asyncio.wait_for(consumer.position(tp), 1)
            except (KafkaError, IllegalStateError, TimeoutError):
                continue  # being reassigned: the next report has it
            # Read right after the position, with no await between: the fetch ahead
            # hands its records out (moving the position) exactly when it returns.
            position -= len(unapplied().get(tp, ()))
            metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                max(end - position, 0)
            )
            self.partitions.add(tp)
