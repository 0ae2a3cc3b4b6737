"""OpenTelemetry tracer and meter providers, with the exporter chosen by settings.

`jsonl` writes one JSON object per finished span to a local file (no collector
needed; `python -m shared.traces` prints a trace from it), `otlp` sends spans to
a collector over OTLP/HTTP, `none` keeps tracing on but exports nothing.
Metrics go to Prometheus' registry, served at /metrics.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes

from shared.settings import PlatformSettings

_configured: str | None = None


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line.

    Several service processes share one file: each line goes out in a single
    `write` on a file opened with O_APPEND, so lines never interleave.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(s), separators=(",", ":")) + "\n" for s in spans)
        with self._lock:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_to_dict(span: ReadableSpan) -> dict[str, object]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_time": span.start_time,
        "end_time": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {
            k: v if isinstance(v, str | int | float | bool) else list(v)  # type: ignore[arg-type]
            for k, v in (span.attributes or {}).items()
        },
    }


class NoOrphanQueries(Sampler):
    """Drops database spans that belong to no request or message.

    The relay's polling and the consumers' bookkeeping would otherwise fill the
    trace store with one-span traces nobody asked for.
    """

    def should_sample(
        self,
        parent_context: object,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: object = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "NoOrphanQueries"


def configure(service: str, settings: PlatformSettings) -> None:
    """Install the global tracer and meter providers once per process."""
    global _configured
    if _configured is not None:
        return
    resource = Resource.create({"service.name": service})
    provider = TracerProvider(
        resource=resource,
        sampler=ParentBased(
            root=NoOrphanQueries(),
            remote_parent_sampled=ALWAYS_ON,
            remote_parent_not_sampled=ALWAYS_OFF,
        ),
    )
    if settings.otel_traces_exporter == "jsonl":
        provider.add_span_processor(
            BatchSpanProcessor(
                JsonLinesSpanExporter(settings.telemetry_jsonl_path), schedule_delay_millis=500
            )
        )
    elif settings.otel_traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()])
    )
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    _configured = service


def current_context() -> dict[str, str]:
    """The current trace context as W3C headers (empty outside any span).

    Stored beside work that is done later by another task (a delivery row), so
    that the work's spans can rejoin the trace that caused it.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def resumed_span(
    name: str,
    carrier: Mapping[str, str] | None,
    *,
    follows: bool = False,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
) -> Iterator[Span]:
    """A current span continuing the trace in `carrier` (from `current_context`).

    As its child; or, with `follows` (a timer firing long after its cause), as
    the root of a new trace with a link to the cause, so a trace does not stretch
    over days.
    """
    parent = propagate.extract(dict(carrier or {}))
    cause = trace.get_current_span(parent).get_span_context()
    tracer = trace.get_tracer(__name__)
    if follows:
        links = [Link(cause)] if cause.is_valid else []
        with tracer.start_as_current_span(
            name, context=Context(), kind=kind, attributes=attributes, links=links
        ) as span:
            yield span
        return
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as span:
        yield span


def shutdown() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
        provider.shutdown()
