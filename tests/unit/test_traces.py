from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from shared.telemetry import JsonLinesSpanExporter, rotated
from shared.traces import find_trace, load, render


def span(
    span_id: str, parent: str | None, name: str, start: int, **attributes: Any
) -> dict[str, Any]:
    return {
        "trace_id": "t1",
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "service": name.split()[0],
        "start_time": start,
        "end_time": start + 1_000_000,
        "attributes": attributes,
    }


def test_a_trace_found_by_event_id_prints_as_a_tree() -> None:
    spans = [
        span("a", None, "registration POST", 0),
        span("b", "a", "registration publish", 1, **{"messaging.message.id": "ev-1"}),
        span("c", "b", "matching process", 2),
        {**span("z", None, "other", 0), "trace_id": "t2"},
    ]
    found = find_trace(spans, "ev-1")
    assert {s["span_id"] for s in found} == {"a", "b", "c"}
    assert render(found).splitlines() == [
        "registration: registration POST (1.0 ms)",
        "  registration: registration publish (1.0 ms)",
        "    matching: matching process (1.0 ms)",
    ]


def test_a_trace_found_by_correlation_id_from_the_request_or_a_message() -> None:
    spans = [
        span("a", None, "registration POST", 0, **{"correlation.id": "corr-1"}),
        span("b", "a", "registration publish", 1),
        {
            **span("c", None, "notification send", 2),
            "trace_id": "t3",
            "attributes": {"messaging.message.conversation_id": "corr-1"},
        },
        {**span("z", None, "other", 0), "trace_id": "t2"},
    ]
    assert {s["span_id"] for s in find_trace(spans, "corr-1")} == {"a", "b", "c"}
    assert {s["span_id"] for s in find_trace(spans, "t2")} == {"z"}
    assert find_trace(spans, "nothing") == []


def test_a_full_span_file_is_rotated_and_both_files_are_read(tmp_path: Path) -> None:
    """The exporter moves a file that reached its limit to `<name>.1` (replacing the one
    before) and starts a new one; `load` reads the rotated file, then the current one."""
    path = tmp_path / "spans.jsonl"
    exporter = JsonLinesSpanExporter(path, max_bytes=1500)
    tracer = TracerProvider().get_tracer("test")
    names = []
    for n in range(30):  # about 200 bytes each: rotated more than once
        with tracer.start_as_current_span(f"span {n}") as current:
            pass
        assert isinstance(current, ReadableSpan)
        exporter.export([current])
        names.append(f"span {n}")
    assert rotated(path).exists()
    assert rotated(path).stat().st_size >= 1500  # full when it was moved
    loaded = [s["name"] for s in load(path)]
    # The oldest spans went when `.1` was replaced; what is kept is the newest, in order.
    assert loaded == names[-len(loaded) :] and 1 < len(loaded) < len(names)
