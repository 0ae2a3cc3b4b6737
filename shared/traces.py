"""Print one trace from the local span file as a tree.

    python -m shared.traces TRACE_ID|EVENT_ID|CORRELATION_ID [--file var/telemetry/spans.jsonl]

An event id (CloudEvents id) finds the trace whose publish or process spans
carry it as `messaging.message.id`; a correlation id (a command's
`X-Correlation-Id`, by default its trace id) the traces whose request or
messages carry it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from shared.settings import PlatformSettings


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Span attributes that name what a trace is about: an event's id, a correlation id.
KEY_ATTRIBUTES = ("messaging.message.id", "messaging.message.conversation_id", "correlation.id")


def find_trace(spans: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The spans of every trace `key` names: a trace id, an event id or a correlation id."""
    trace_ids = {
        s["trace_id"]
        for s in spans
        if s["trace_id"] == key or any(s["attributes"].get(a) == key for a in KEY_ATTRIBUTES)
    }
    return [s for s in spans if s["trace_id"] in trace_ids]


def render(spans: list[dict[str, Any]]) -> str:
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in sorted(spans, key=lambda s: s["start_time"]):
        children[s["parent_span_id"] if s["parent_span_id"] in ids else None].append(s)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in children[parent]:
            ms = (s["end_time"] - s["start_time"]) / 1e6
            lines.append(f"{'  ' * depth}{s['service']}: {s['name']} ({ms:.1f} ms)")
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key", help="a trace id, an event id or a correlation id")
    parser.add_argument("--file", default=PlatformSettings().telemetry_jsonl_path)
    args = parser.parse_args()
    spans = find_trace(load(Path(args.file)), args.key)
    if not spans:
        print(f"no trace for {args.key} in {args.file}", file=sys.stderr)
        return 1
    print(render(spans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
