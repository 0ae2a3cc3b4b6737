"""Print one trace from the local span file as a tree.

    python -m shared.traces TRACE_ID_OR_EVENT_ID [--file var/telemetry/spans.jsonl]

An event id (CloudEvents id) finds the trace whose publish or process spans
carry it as `messaging.message.id`.
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


def find_trace(spans: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    trace_ids = {s["trace_id"] for s in spans if s["trace_id"] == key}
    trace_ids |= {
        s["trace_id"] for s in spans if s["attributes"].get("messaging.message.id") == key
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
    parser.add_argument("key", help="a trace id or an event id")
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
