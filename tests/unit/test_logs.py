"""Structured logs: every line is JSON with the trace, span and correlation ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from shared import logs
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
