"""Structured logs: one JSON object per line, with the trace, span and correlation ids.

Every record names the trace and span it was logged in (OpenTelemetry's logging
instrumentation puts them on the record) and the correlation id of the command
or event being handled (`correlation`, set by `shared.api` per command and by
the inbox per event). So a trace found in Jaeger or with `python -m shared.traces`
leads to its log lines (`--logs var/log/*.log`), and a log line's `trace_id` or
`correlation_id` leads back to its trace.

    {"time": "...", "level": "INFO", "logger": "shared.runtime", "message": "...",
     "service": "matching", "trace_id": "4bf9...", "span_id": "00f0...",
     "correlation_id": "4bf9..."}

Outside any span the ids are null. `configure` is called once per process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO

from opentelemetry import trace
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from pythonjsonlogger.json import JsonFormatter

# The correlation id of the command or event this task is working on.
_correlation: ContextVar[str | None] = ContextVar("correlation_id", default=None)

# The fields of every line, in this order (then any `extra=` the call passes), as
# record attributes; the first three are renamed to time, level and logger.
FIELDS = (
    "asctime",
    "levelname",
    "name",
    "message",
    "service",
    "trace_id",
    "span_id",
    "correlation_id",
)
_NO_ID = "0"  # what the instrumentation puts on records logged outside any span


def current_correlation() -> str | None:
    return _correlation.get()


@contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    """Log lines inside carry `correlation_id` (None: keep the enclosing one)."""
    if correlation_id is None:
        yield
        return
    token = _correlation.set(correlation_id)
    try:
        yield
    finally:
        _correlation.reset(token)


def set_correlation(correlation_id: str) -> None:
    """For the rest of the current task (a request): its log lines carry `correlation_id`."""
    _correlation.set(correlation_id)


class ContextFilter(logging.Filter):
    """Puts the ids on each record: `trace_id`, `span_id`, `correlation_id`, `service`.

    The trace and span ids come from the instrumentation's record factory
    (`otelTraceID`, `otelSpanID`); a record made without it (a factory installed
    before) gets them from the current span here.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = getattr(record, "otelTraceID", None)
        span_id = getattr(record, "otelSpanID", None)
        if trace_id is None:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                trace_id = format(context.trace_id, "032x")
                span_id = format(context.span_id, "016x")
        record.trace_id = None if trace_id in (None, _NO_ID) else trace_id
        record.span_id = None if span_id in (None, _NO_ID) else span_id
        record.correlation_id = _correlation.get()
        record.service = self._service
        return True


def formatter() -> JsonFormatter:
    return JsonFormatter(
        list(FIELDS),
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        reserved_attrs=[
            *JsonFormatter().reserved_attrs,
            "otelTraceID",
            "otelSpanID",
            "otelTraceSampled",
            "otelServiceName",
            "color_message",  # uvicorn's copy of the message with terminal colours
        ],
    )


def handler(service: str, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing JSON lines with the ids to `stream` (default stderr)."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(formatter())
    out.addFilter(ContextFilter(service))
    return out


def configure(service: str, level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every log record of the process, uvicorn's too, to stderr as JSON lines."""
    instrumentor = LoggingInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # Only the record factory (ids on records): no OpenTelemetry log export.
        instrumentor.instrument(inject_trace_context=True, enable_log_auto_instrumentation=False)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(service, stream))
    root.setLevel(level)
    # httpx logs every request it makes at INFO: a line per contacts lookup and per
    # webhook attempt, each already a span of its trace.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)  # uvicorn's own handlers, if it installed any
        logger.handlers.clear()
        logger.propagate = True
