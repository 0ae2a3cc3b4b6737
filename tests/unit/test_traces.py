from __future__ import annotations

from typing import Any

from shared.traces import find_trace, render


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
