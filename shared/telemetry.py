"""OpenTelemetry tracer and meter providers, with the exporter chosen by settings.

`jsonl` writes one JSON object per finished span to a local file (no collector
needed; `python -m shared.traces` prints a trace from it), `otlp` sends spans to
a collector over OTLP/HTTP, `none` keeps tracing on but exports nothing. Either
exporter runs in the batch processor's thread: a request only hands its finished
spans over.

What is recorded is cheap by default: a share of the traces (`sampler`, set by the
standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG variables; unsampled spans
are not built, only their ids propagate) and no span per SQL statement unless
OTEL_INSTRUMENT_SQL asks for them. Metrics go to Prometheus' registry, served at
/metrics, whatever is sampled.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind, get_current_span
from opentelemetry.util.types import Attributes

from shared.settings import PlatformSettings

_configured: str | None = None
# Whether the installed sampler follows a remote parent's decision (`parentbased_*`):
# then a span continuing an unsampled trace context is never recorded (`drops_child_of`).
_follows_remote_parent = False


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line.

    Several service processes share one file: each line goes out in a single
    `write` on a file opened with O_APPEND, so lines never interleave. A file that has
    reached `max_bytes` is renamed to `<name>.1` (replacing the one before) and a new
    one started, so a platform left running keeps about two files' worth of spans.
    """

    def __init__(self, path: str | Path, max_bytes: int = 100 * 1024 * 1024) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(s), separators=(",", ":")) + "\n" for s in spans)
        with self._lock:
            fd = self._open()
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def _open(self) -> int:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        full = os.fstat(fd)
        if full.st_size < self._max_bytes:
            return fd
        os.close(fd)
        # Another process may have rotated it meanwhile: only the file measured is moved.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self._path).st_ino == full.st_ino:
                os.replace(self._path, rotated(self._path))
        return os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def shutdown(self) -> None:
        return None


def rotated(path: Path) -> Path:
    """Where `JsonLinesSpanExporter` moves a full span file (the older spans)."""
    return path.with_name(path.name + ".1")


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
        "attributes": {k: _attribute_value(v) for k, v in (span.attributes or {}).items()},
    }


def _attribute_value(value: object) -> object:
    """A span attribute as JSON: scalars as they are, sequences as lists. None is kept:
    the SDK does not check what instrumentation sets, and a None must not cost the
    exporter its whole batch of spans."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return list(value) if isinstance(value, Iterable) else str(value)


class NoOrphanQueries(Sampler):
    """Drops client spans (database statements) that belong to no request or message,
    and leaves every other decision to `then`.

    The relay's polling and the consumers' bookkeeping would otherwise fill the
    trace store with one-span traces nobody asked for (with OTEL_INSTRUMENT_SQL).
    """

    def __init__(self, then: Sampler) -> None:
        self._then = then

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: object = None,
    ) -> SamplingResult:
        orphan = not get_current_span(parent_context).get_span_context().is_valid
        if kind == SpanKind.CLIENT and orphan:
            return SamplingResult(Decision.DROP)
        return self._then.should_sample(
            parent_context,
            trace_id,
            name,
            kind,
            attributes,
            links,
            trace_state,  # type: ignore[arg-type]
        )

    def get_description(self) -> str:
        return f"NoOrphanQueries{{{self._then.get_description()}}}"


def sampler(name: str, ratio: float) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER names (with OTEL_TRACES_SAMPLER_ARG the ratio of
    the `traceidratio` ones), as OpenTelemetry's SDK reads those variables, except that
    orphan database spans are always dropped and the ratio defaults to a low one
    (`shared.settings.DEFAULT_TRACE_RATIO`) rather than 1.

    `parentbased_*`: a span with a parent follows its parent's decision (so a trace is
    recorded whole, across services, or not at all); the rest decides for root spans.
    """
    parent_based = name.startswith("parentbased_")
    root_name = name.removeprefix("parentbased_")
    roots: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
    }
    if root_name not in roots:
        raise ValueError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}")
    root = roots[root_name]
    if not parent_based:
        return NoOrphanQueries(root)
    return ParentBased(
        root=NoOrphanQueries(root),
        remote_parent_sampled=ALWAYS_ON,
        remote_parent_not_sampled=ALWAYS_OFF,
    )


def configure(service: str, settings: PlatformSettings) -> None:
    """Install the global tracer and meter providers once per process."""
    global _configured
    if _configured is not None:
        return
    resource = Resource.create({"service.name": service})
    provider = TracerProvider(
        resource=resource,
        sampler=sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
    )
    if settings.otel_traces_exporter == "jsonl":
        provider.add_span_processor(
            BatchSpanProcessor(
                JsonLinesSpanExporter(
                    settings.telemetry_jsonl_path, settings.telemetry_jsonl_max_mb * 1024 * 1024
                ),
                schedule_delay_millis=500,
            )
        )
    elif settings.otel_traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    global _follows_remote_parent
    _follows_remote_parent = follows_remote_parent(settings.otel_traces_sampler)
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()])
    )
    if settings.otel_instrument_sql:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    _configured = service


def follows_remote_parent(name: str) -> bool:
    """Whether `sampler(name, ...)` leaves a span with a remote parent to the parent's
    decision (it records none of an unsampled parent's children)."""
    return name.startswith("parentbased_")


def drops_child_of(traceparent: str | None) -> bool:
    """Whether a span continuing the W3C `traceparent` (as a remote parent) would not be
    recorded: the sampler `configure` installed follows the parent's decision, and the
    parent was not sampled. Work that only makes such a span, to pass its context on,
    can pass the parent's instead (nothing of either is recorded) and skip the SDK."""
    if not _follows_remote_parent or not traceparent or len(traceparent) != 55:
        return False
    parts = traceparent.split("-")
    if len(parts) != 4 or parts[0] != "00":
        return False
    try:
        trace_id, span_id, flags = (int(part, 16) for part in parts[1:])
    except ValueError:
        return False
    return trace_id != 0 and span_id != 0 and not flags & 1


def current_trace_headers() -> tuple[str, str | None] | None:
    """The current span's `traceparent` and `tracestate` (None: no span, or the global
    propagator writes no W3C trace context), as `propagate.inject` writes them, without
    its propagators' round (the outbox stamps every event with them)."""
    if "traceparent" not in propagate.get_global_textmap().fields:
        return None
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    return traceparent, context.trace_state.to_header() if context.trace_state else None


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
