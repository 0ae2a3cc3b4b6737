"""Structured logs: every line is JSON with the trace, span and correlation ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiokafka import ConsumerRecord
from opentelemetry.sdk.trace import TracerProvider
from starlette.requests import Request

from shared import logs
from shared.api import correlation_of
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox_telemetry import process_span
from shared.traces import log_lines


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing JSON lines to a buffer, as `shared.logs.configure` sets it up."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("matching", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_inside_a_span_carries_its_trace_and_the_correlation_id(
    captured: io.StringIO,
) -> None:
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("process registration.events") as span:
        with logs.correlation("corr-42"):
            logging.getLogger("services.matching.handlers").warning("scored %d partners", 7)
        logging.getLogger("services.matching.handlers").info("after the event")
    logging.getLogger("shared.runtime").info("outside")

    inside, after, outside = lines(captured)
    context = span.get_span_context()
    assert inside == {
        "time": inside["time"],
        "level": "WARNING",
        "logger": "services.matching.handlers",
        "message": "scored 7 partners",
        "service": "matching",
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "correlation_id": "corr-42",
    }
    assert after["trace_id"] == inside["trace_id"] and after["correlation_id"] is None
    assert outside["trace_id"] is None and outside["span_id"] is None


def test_an_exception_is_one_line_with_its_traceback(captured: io.StringIO) -> None:
    try:
        raise ValueError("bad payload")
    except ValueError:
        logging.getLogger("shared.inbox").exception("batch failed")
    (line,) = lines(captured)
    assert line["level"] == "ERROR" and "ValueError: bad payload" in line["exc_info"]


def test_a_trace_leads_to_its_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "matching.log"
    log.write_text(
        "\n".join(
            [
                json.dumps({"time": "2", "trace_id": "t1", "message": "in the trace"}),
                "Traceback (not JSON)",
                json.dumps({"time": "1", "trace_id": None, "correlation_id": "c1", "message": "c"}),
                json.dumps({"time": "3", "trace_id": "t2", "message": "another trace"}),
            ]
        )
    )
    found = log_lines([log], {"t1"}, "c1")
    assert [r["message"] for r in found] == ["c", "in the trace"]


class ThingHappened(EventPayload):
    producer: ClassVar[str] = "things"
    event_name: ClassVar[str] = "ThingHappened"
    thing_id: str


def test_a_consumed_event_logs_under_its_trace_and_correlation_id(
    captured: io.StringIO,
) -> None:
    """The inbox's `process` span: the event's trace continues, its correlation id is set."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    envelope = Envelope.wrap(
        ThingHappened(thing_id="t1"), key="t1", correlation_id="corr-7"
    ).with_trace(traceparent)
    record = ConsumerRecord(
        "things.events", 0, 5, 0, 0, b"t1", b"{}", None, 2, 2, envelope.kafka_headers()
    )
    with process_span(record, envelope, "matching"):
        logging.getLogger("services.matching.handlers").info("applied")
    logging.getLogger("shared.inbox").info("between batches")
    applied, between = lines(captured)
    # With or without a tracer provider, the span continues the event's trace.
    assert applied["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert applied["correlation_id"] == "corr-7"
    assert between["correlation_id"] is None


def test_a_command_logs_under_its_correlation_id(captured: io.StringIO) -> None:
    request = Request(
        {"type": "http", "method": "POST", "path": "/", "headers": [(b"x-correlation-id", b"c-9")]}
    )

    async def command() -> None:
        correlation_of(request)
        logging.getLogger("services.registration.api").info("registered")

    asyncio.run(command())
    (line,) = lines(captured)
    assert line["correlation_id"] == "c-9"
