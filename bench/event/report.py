"""The result of one `make bench-event` run as Markdown (the table it prints and keeps)."""

from __future__ import annotations

from typing import Any

from bench.backbone.common import summary_ms
from bench.event import statements

LAST = "last consumer"  # bench.event.probe.LAST (the probe needs asyncpg and aiokafka)

TARGET_RATIO = 3.0  # whole run / baseline, BIO-Europe (issue 15)


def phase_rows(
    phases: list[dict[str, Any]], commands: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per phase: commands, failures, sending and wall time, rate, HTTP latency."""
    rows = []
    for p in phases:
        http = [c["answered"] - c["sent"] for c in commands if c["phase"] == p["name"]]
        latency = summary_ms(http)
        rows.append(
            {
                **p,
                "commands_per_s": round(p["commands"] / p["sending_s"], 1)
                if p["commands"] and p["sending_s"] > 0
                else None,
                "http_p50_ms": latency["p50_ms"],
                "http_p99_ms": latency["p99_ms"],
            }
        )
    return rows


def converged(
    counts: dict[str, dict[str, int]], emails: dict[str, Any], expect: dict[str, int]
) -> list[str]:
    """What did not converge (empty: everything did)."""
    wrong = []
    for what, want in (
        ("approved participants", expect["approved"]),
        ("accepted meetings", expect["accepted"]),
    ):
        off = {s: n for s, n in counts[what].items() if n != want}
        if off:
            wrong.append(f"{what}: expected {want}, got {off}")
    status = counts["scheduling status"]
    settled = status.get("placed", 0) + status.get("unscheduled", 0)
    if settled != expect["accepted"]:
        wrong.append(
            f"scheduling placed or unscheduled {settled} of {expect['accepted']}: {status}"
        )
    for what in ("lost", "doubled", "unsent"):
        if emails[what]:
            wrong.append(f"e-mails {what}: {emails[what]}")
    if expect.get("failed"):
        wrong.append(f"{expect['failed']} commands failed")
    return wrong


def latency_table(latency: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One row per flow (event type), one column per consumer: p50 / p95 / p99 ms."""
    consumers = sorted({c for by in latency.values() for c in by} - {LAST})
    consumers += [LAST] if any(LAST in by for by in latency.values()) else []
    lines = [
        "| flow | events | " + " | ".join(consumers) + " |",
        "|---|---:|" + "---:|" * len(consumers),
    ]
    for flow, by in latency.items():
        events = max((s["count"] or 0) for s in by.values())
        cells = [_percentiles(by[c]) if c in by else "" for c in consumers]
        name = flow.removeprefix("eu.matchmaking.")
        lines.append(f"| {name} | {events:,} | " + " | ".join(cells) + " |")
    return lines


def split_table(latency: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Each flow's slowest consumer (by p99): its wait before its transaction began and
    the transaction itself, p50 / p95 / p99 ms (none without commit timestamps)."""
    lines = []
    for flow, by in latency.items():
        split = {c: s for c, s in by.items() if "split" in s and s["p99_ms"] is not None}
        if not split:
            continue
        slowest = max(split, key=lambda c: split[c]["p99_ms"])
        parts = [split[slowest]["split"][part] for part in ("wait", "transaction")]
        cells = [_percentiles(part) for part in parts]
        name = flow.removeprefix("eu.matchmaking.")
        lines.append(f"| {name} | {slowest} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return [
        "",
        "Each flow's slowest consumer: the wait before its transaction began (the batches"
        " before it, the fetch) and the transaction, p50 / p95 / p99 ms:",
        "",
        "| flow | slowest consumer | wait | transaction |",
        "|---|---|---:|---:|",
        *lines,
    ]


def _percentiles(summary: dict[str, Any]) -> str:
    """A latency summary's "p50 / p95 / p99" in ms."""
    return f"{_ms(summary['p50_ms'])} / {_ms(summary['p95_ms'])} / {_ms(summary['p99_ms'])}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(result: dict[str, Any]) -> str:
    w = result["workload"]
    lines = [
        f"### bench-event {w['size']}: {w['participants']:,} participants,"
        f" {w['accepted']:,} accepted and {w['declined']:,} declined meetings"
        f" ({result['started']})",
        "",
        *(
            [
                f"Participants' and organiser's commands paced at {w['rate']:g} per second"
                " (open loop), in both runs: the ratio to the stub below says only whether"
                " the platform kept pace.",
                "",
            ]
            if w.get("rate")
            else []
        ),
        "| event phase | commands | failed | sending s | wall s | commands/s | HTTP p50 / p99 ms"
        " | baseline sending s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    baseline = {p["name"]: p for p in result["baseline"]["phases"]}
    for p in result["phases"]:
        base = baseline.get(p["name"], {})
        lines.append(
            f"| {p['name']} | {p['commands']:,} | {p['failed']} | {_s(p['sending_s'])}"
            f" | {_s(p['wall_s'])} | {_s(p['commands_per_s'])}"
            f" | {_ms(p['http_p50_ms'])} / {_ms(p['http_p99_ms'])} | {_s(base.get('sending_s'))} |"
        )
    total, base_total = result["wall_s"], result["baseline"]["wall_s"]
    ratio = total / base_total if base_total else None
    lines += [
        f"| **whole run** | {sum(p['commands'] for p in result['phases']):,}"
        f" | {sum(p['failed'] for p in result['phases'])} | | **{_s(total)}** | | |"
        f" **{_s(base_total)}** |",
        "",
        (
            "Whole run / baseline (the same client and commands against a stub that does"
            f" nothing): **{ratio:.1f}x** (target ≤ {TARGET_RATIO:.0f}x for bioeurope)"
            if ratio
            else "No baseline run (`--no-baseline`)."
        ),
        "",
        f"Latency from a command's transaction (`events.recorded_at`) to each consumer's"
        f" {result['latency_end']}, p50 / p95 / p99 ms:",
        "",
    ]
    lines += latency_table(result["latency"])
    lines += split_table(result["latency"])
    e = result["emails"]
    s = e["accept_to_placed_email"]
    lines += [
        "",
        'From an accept (sent) to the participant\'s "meeting placed" e-mail at the catcher:'
        f" {s['count'] or 0:,} e-mails, p50 / p95 / p99 {_percentiles(s)} ms.",
        "",
        "| part | CPU s | CPU ms per command |",
        "|---|---:|---:|",
    ]
    commands = max(1, sum(p["commands"] for p in result["phases"]))
    for part, seconds in result["cpu"]["cpu_s"].items():
        lines.append(f"| {part} | {seconds:,.1f} | {1000 * seconds / commands:,.2f} |")
    lines += [
        "",
        f"Machine busy {result['cpu']['machine_busy_pct']}% of {result['machine']['cores']} cores"
        f" over the run; load average at the start {result['machine']['loadavg_at_start']}."
        + (
            f" State before the run: PostgreSQL {held['postgres_gb']} GB, Kafka"
            f" {held['kafka_gb']} GB."
            if (held := result.get("state_before"))
            else ""
        ),
        "",
        *statements.render(result.get("statements")),
        "",
        f"E-mails: {e['caught']:,} at the catcher for {sum(e['deliveries'].values()):,}"
        f" deliveries {e['deliveries']}; lost {e['lost']}, doubled {e['doubled']},"
        f" unsent {e['unsent']}; {e['later']} wait for their time (reminders, digests).",
        f"Counts: {result['counts']}.",
        "Converged: "
        + (
            "**yes**"
            if not result["not_converged"]
            else "**no**: " + "; ".join(result["not_converged"])
        ),
    ]
    return "\n".join(lines) + "\n"
