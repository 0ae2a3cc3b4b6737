"""Which traces the services record: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG."""

from __future__ import annotations

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from shared import telemetry
from shared.settings import DEFAULT_TRACE_RATIO, PlatformSettings
from shared.telemetry import drops_child_of, follows_remote_parent, sampler, span_to_dict

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def recording(name: str, ratio: float) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler(name, ratio))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider.get_tracer("test"), exported


def test_by_default_a_low_share_of_new_traces_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_INSTRUMENT_SQL"):
        monkeypatch.delenv(variable, raising=False)
    settings = PlatformSettings()
    assert settings.otel_traces_sampler == "parentbased_traceidratio"
    assert settings.otel_traces_sampler_arg == DEFAULT_TRACE_RATIO <= 0.1
    assert settings.otel_instrument_sql is False

    tracer, exported = recording(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    for _ in range(4000):
        with tracer.start_as_current_span("POST /api/events", kind=SpanKind.SERVER):
            pass
    share = len(exported.get_finished_spans()) / 4000
    assert DEFAULT_TRACE_RATIO / 2 < share < DEFAULT_TRACE_RATIO * 2


def test_an_unrecorded_request_still_has_a_trace_id_that_propagates_unsampled() -> None:
    # The correlation id of a command defaults to its trace id, and the events it
    # causes carry the (unsampled) context, so no other service records that trace.
    tracer, exported = recording("parentbased_traceidratio", 0.0)
    with tracer.start_as_current_span("POST", kind=SpanKind.SERVER) as span:
        context = span.get_span_context()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        with tracer.start_as_current_span("publish", kind=SpanKind.PRODUCER):
            pass
    assert context.is_valid and not context.trace_flags.sampled
    assert int(carrier["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0  # the sampled flag
    assert exported.get_finished_spans() == ()


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_a_caller_that_sends_a_sampled_trace_context_is_always_traced(ratio: float) -> None:
    tracer, exported = recording("parentbased_traceidratio", ratio)
    parent = propagate.extract({"traceparent": SAMPLED_PARENT})
    with tracer.start_as_current_span("POST", context=parent, kind=SpanKind.SERVER):
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT):
            pass
    names = [s.name for s in exported.get_finished_spans()]
    assert names == ["SELECT", "POST"]  # a statement inside a recorded trace is kept


def test_a_message_from_an_unrecorded_trace_is_not_recorded_even_at_ratio_one() -> None:
    tracer, exported = recording("parentbased_traceidratio", 1.0)
    parent = propagate.extract({"traceparent": UNSAMPLED_PARENT})
    with tracer.start_as_current_span("process", context=parent, kind=SpanKind.CONSUMER):
        pass
    assert exported.get_finished_spans() == ()


@pytest.mark.parametrize("name", ["always_on", "parentbased_always_on", "traceidratio"])
def test_statements_outside_any_request_are_never_recorded(name: str) -> None:
    tracer, exported = recording(name, 1.0)
    with tracer.start_as_current_span("SELECT outbox", kind=SpanKind.CLIENT):
        pass
    with tracer.start_as_current_span("relay poll", kind=SpanKind.INTERNAL):
        pass
    assert [s.name for s in exported.get_finished_spans()] == ["relay poll"]


def test_always_off_and_non_parent_based_samplers_decide_every_span() -> None:
    tracer, exported = recording("always_off", 1.0)
    parent = propagate.extract({"traceparent": SAMPLED_PARENT})
    with tracer.start_as_current_span("POST", context=parent, kind=SpanKind.SERVER):
        pass
    assert exported.get_finished_spans() == ()
    tracer, exported = recording("always_on", 1.0)
    parent = propagate.extract({"traceparent": UNSAMPLED_PARENT})
    with tracer.start_as_current_span("POST", context=parent, kind=SpanKind.SERVER):
        pass
    assert len(exported.get_finished_spans()) == 1


def test_the_standard_variables_choose_the_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    monkeypatch.setenv("OTEL_INSTRUMENT_SQL", "true")
    settings = PlatformSettings()
    assert settings.otel_traces_sampler == "parentbased_always_on"
    assert settings.otel_traces_sampler_arg == 0.25
    assert settings.otel_instrument_sql is True
    tracer, exported = recording(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    for _ in range(50):
        with tracer.start_as_current_span("POST", kind=SpanKind.SERVER):
            pass
    assert len(exported.get_finished_spans()) == 50


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_SAMPLER_ARG", "-0.1"),
        ("OTEL_TRACES_SAMPLER_ARG", "half"),
    ],
)
def test_a_sampler_setting_the_platform_cannot_honour_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.lower()):
        PlatformSettings()


def test_an_unknown_sampler_name_is_refused_by_the_factory_too() -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER"):
        sampler("parentbased_jaeger_remote", 1.0)


def test_a_span_attribute_the_sdk_did_not_check_does_not_cost_the_export() -> None:
    """ReadableSpan takes attributes as given; a None (or an odd object) in them must
    not raise in span_to_dict, which would drop the exporter's whole batch."""
    context = trace.SpanContext(trace_id=1, span_id=2, is_remote=False)
    span = ReadableSpan(
        name="x",
        context=context,
        attributes={"none": None, "tuple": ("a", "b"), "number": 3, "odd": object()},  # type: ignore[dict-item]
    )
    attributes = span_to_dict(span)["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["none"] is None and attributes["tuple"] == ["a", "b"]
    assert attributes["number"] == 3 and isinstance(attributes["odd"], str)


@pytest.mark.parametrize(
    "name",
    [
        "parentbased_traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "traceidratio",
        "always_on",
        "always_off",
    ],
)
def test_drops_child_of_says_what_the_sampler_decides_for_a_remote_parent(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay skips its publish span where this says the span would not be recorded:
    it must never say so for a span the sampler would record."""
    monkeypatch.setattr(telemetry, "_follows_remote_parent", follows_remote_parent(name))
    for parent in (SAMPLED_PARENT, UNSAMPLED_PARENT):
        tracer, exported = recording(name, 1.0)
        context = propagate.extract({"traceparent": parent})
        with tracer.start_as_current_span("publish", context=context, kind=SpanKind.PRODUCER):
            pass
        recorded = bool(exported.get_finished_spans())
        if drops_child_of(parent):
            assert not recorded, (name, parent)
    # An unsampled parent is dropped exactly by the parent-based samplers.
    assert drops_child_of(UNSAMPLED_PARENT) is name.startswith("parentbased_")
    assert not drops_child_of(SAMPLED_PARENT)


def test_drops_child_of_refuses_what_is_not_a_trace_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry, "_follows_remote_parent", True)
    for value in (
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-00",  # invalid trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-00",  # invalid span id
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",  # unknown version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
    ):
        assert not drops_child_of(value), value


@pytest.mark.parametrize("name", ["parentbased_traceidratio", "always_on", "always_off"])
def test_current_trace_headers_are_what_the_propagator_injects(name: str) -> None:
    tracer, _ = recording(name, 0.5)
    assert telemetry.current_trace_headers() is None  # no span
    for parent in (SAMPLED_PARENT, UNSAMPLED_PARENT, None):
        context = propagate.extract({"traceparent": parent} if parent else {})
        if parent:
            context = propagate.extract(
                {"traceparent": parent, "tracestate": "vendor=value,other=2"}
            )
        for _ in range(20):
            with tracer.start_as_current_span("POST", context=context, kind=SpanKind.SERVER):
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                expected = (carrier["traceparent"], carrier.get("tracestate"))
                assert telemetry.current_trace_headers() == expected
