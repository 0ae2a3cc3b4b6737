"""Which consumed events get a recorded `process` span, and the per-batch counts."""

from __future__ import annotations

from typing import ClassVar

from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    TraceIdRatioBased,
)

from shared import metrics
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox_telemetry import Processed, Sampling
from shared.telemetry import sampler

TRACE = "0af7651916cd43dd8448eb211c80319c"


class ThingHappened(EventPayload):
    producer: ClassVar[str] = "things"
    event_name: ClassVar[str] = "ThingHappened"
    thing_id: str


def event(flags: str | None) -> Envelope:
    envelope = Envelope.wrap(ThingHappened(thing_id="t1"), key="t1")
    if flags is None:
        return envelope
    return envelope.with_trace(f"00-{TRACE}-b7ad6b7169203331-{flags}")


def test_without_an_sdk_provider_no_span_is_recorded() -> None:
    assert not Sampling(None).records(event("01"))
    assert not Sampling(None).records(event(None))


def test_a_parent_based_sampler_follows_the_event_s_trace_flags() -> None:
    parent_based = Sampling(sampler("parentbased_traceidratio", 0.0))
    assert parent_based.records(event("01"))
    assert not parent_based.records(event("00"))
    # Without a trace context the span is a root: the sampler decides on an id not drawn yet.
    assert parent_based.records(event(None))


def test_other_samplers_decide_on_the_event_s_trace_id() -> None:
    assert not Sampling(ALWAYS_OFF).records(event("01"))
    assert Sampling(ALWAYS_ON).records(event("00"))
    assert Sampling(ParentBased(ALWAYS_OFF)).records(event("01"))
    assert not Sampling(TraceIdRatioBased(0.0)).records(event("01"))
    assert Sampling(TraceIdRatioBased(1.0)).records(event("00"))


def test_processed_events_are_counted_per_topic_and_type_once_reported() -> None:
    def count() -> float:
        return float(metrics.EVENTS_PROCESSED.labels("g-test", "t.events", "x.v1")._value.get())

    before = count()
    processed = Processed("g-test")
    for _ in range(3):
        processed.add("t.events", "x.v1")
    assert count() == before
    processed.report()
    processed.report()  # reported once
    assert count() == before + 3
