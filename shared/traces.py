"""Print one trace from the local span file as a tree.

    python -m shared.traces TRACE_ID|EVENT_ID|CORRELATION_ID [--file var/telemetry/spans.jsonl]
                            [--logs var/log/*.log]

An event id (CloudEvents id) finds the trace whose publish or process spans
carry it as `messaging.message.id`; a correlation id (a command's
`X-Correlation-Id`, by default its trace id) the traces whose request or
messages carry it. With `--logs`, the services' JSON log lines (`shared.logs`) of
those traces, or carrying that correlation id, follow the tree; a log line's
`trace_id` or `correlation_id` is in turn a key for this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from shared.settings import PlatformSettings
from shared.telemetry import rotated


def load(path: Path) -> list[dict[str, Any]]:
    """The spans of `path` and of the file rotated out before it (older first)."""
    spans = []
    for part in (rotated(path), path):
        if part.exists():
            with part.open() as lines:
                spans += [json.loads(line) for line in lines if line.strip()]
    return spans


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


def log_lines(paths: list[Path], trace_ids: set[str], key: str) -> list[dict[str, Any]]:
    """The JSON log lines in `paths` logged in one of `trace_ids` or under correlation `key`,
    oldest first (lines that are not JSON, e.g. a crash's output, are skipped)."""
    found: list[dict[str, Any]] = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("trace_id") in trace_ids or record.get("correlation_id") == key:
                found.append(record)
    return sorted(found, key=lambda r: str(r.get("time", "")))


def render_logs(records: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r.get('time')} {r.get('service')} {r.get('level')} {r.get('logger')}:"
        f" {r.get('message')} (span {r.get('span_id')})"
        for r in records
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key", help="a trace id, an event id or a correlation id")
    parser.add_argument("--file", default=PlatformSettings().telemetry_jsonl_path)
    parser.add_argument(
        "--logs", nargs="*", type=Path, default=[], help="service logs (e.g. var/log/*.log)"
    )
    args = parser.parse_args()
    path = Path(args.file)
    spans = find_trace(load(path), args.key)
    if spans:
        print(render(spans))
    else:
        print(f"no trace for {args.key} in {args.file}", file=sys.stderr)
    records: list[dict[str, Any]] = []
    if args.logs:  # also without spans (not exported): the key may be a trace id
        records = log_lines(args.logs, {s["trace_id"] for s in spans} | {args.key}, args.key)
        print(f"\n{len(records)} log lines")
        if records:
            print(render_logs(records))
    return 0 if spans or records else 1


if __name__ == "__main__":
    sys.exit(main())
