"""The what-if configurations, cProfile summaries and the results table."""

from __future__ import annotations

import io
import pstats
import re
from pathlib import Path
from typing import Any

from bench.backbone.common import REPO


def profile_by_package(path: Path) -> list[tuple[str, float]]:
    """Own time (tottime) summed per library / stdlib module / repo package."""
    stats = pstats.Stats(str(path))
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if filename == "~":
            key = (
                "idle: epoll"
                if "epoll" in function
                else "syscalls: socket send/recv"
                if re.search(r"'(send|recv)\w*' of '_socket", function)
                else "C builtins (json, asyncpg protocol, ...)"
            )
        elif "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0]
        elif "/lib/python3" in filename:
            key = "stdlib " + re.split(r"/lib/python3\.\d+/", filename)[1].split("/")[0]
        elif str(REPO) in filename:
            key = "repo " + "/".join(Path(filename).relative_to(REPO).parts[:2])
        else:
            key = filename
        totals[key] = totals.get(key, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


# The steps, by the names the results table and bench/README.md give them
# (tests/unit/test_bench_readme.py checks the README names no other).
STEPS: dict[str, str] = {
    "1": "raw aiokafka produce",
    "2": "raw aiokafka consume",
    "3": "outbox -> Kafka",
    "4": "Kafka -> projection",
    "4b": "batch handlers",
    "5": "HTTP command -> committed",
}
# What the README's step-5 table may name in its phase column: rates, load clients
# (`bench.backbone.load.LoadClient`) and what-ifs.
CLIENTS = ("httpx", "raw")

# What-if configurations of step 5: description, extra environment of the services.
WHATIFS: dict[str, tuple[str, dict[str, str]]] = {
    "linger5": (
        "relay producer linger.ms 5 instead of 0 (the old default; bench._service knob)",
        {"BENCH_PRODUCER_LINGER_MS": "5"},
    ),
    "notrace": ("OTEL_SDK_DISABLED=true: no spans at all", {"OTEL_SDK_DISABLED": "true"}),
    "inline_embedding": (
        "matching embeds each registration's texts in the consumer's transaction"
        " (MATCHING_EMBEDDING=inline: the behaviour before the embedding worker)",
        {"MATCHING_EMBEDDING": "inline"},
    ),
    "noexport": (
        "OTEL_TRACES_EXPORTER=none: spans made, not exported",
        {"OTEL_TRACES_EXPORTER": "none"},
    ),
    "sample_all": (
        "OTEL_TRACES_SAMPLER=parentbased_always_on: every trace recorded",
        {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    ),
    "sqlspans": (
        "OTEL_INSTRUMENT_SQL=true: a span per SQL statement",
        {"OTEL_INSTRUMENT_SQL": "true"},
    ),
    "old_tracing": (
        "every trace recorded, with a span per SQL statement (the tracing before 2026-12-04)",
        {"OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_INSTRUMENT_SQL": "true"},
    ),
    "notrace_linger5": (
        "no spans and relay linger.ms 5",
        {"OTEL_SDK_DISABLED": "true", "BENCH_PRODUCER_LINGER_MS": "5"},
    ),
}


def print_profile(path: Path, title: str, top: int = 30) -> str:
    stream = io.StringIO()
    stream.write(f"\n==== cProfile: {title} ({path.relative_to(REPO)}) ====\n")
    grouped = profile_by_package(path)
    busy = sum(v for k, v in grouped if k != "idle: epoll")
    stream.write(f"own time by package (busy total {busy:.2f}s, excluding idle epoll):\n")
    for key, value in grouped[:20]:
        share = "" if key == "idle: epoll" else f"{100 * value / busy:5.1f}%"
        stream.write(f"  {value:8.3f}s {share:>6}  {key}\n")
    stats = pstats.Stats(str(path), stream=stream).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top + 15)
    return stream.getvalue()


def fmt_cpu(cpu: dict[str, Any] | None) -> str:
    if not cpu:
        return ""
    parts = [f"{k} {v:.1f}s" for k, v in cpu["cpu_s"].items() if v >= 0.05]
    return (
        f"machine {cpu['machine_busy_pct']:.0f}% busy of {cpu['cores']} cores over "
        f"{cpu['wall_s']:.1f}s; " + ", ".join(parts)
    )


def render(results: dict[str, Any]) -> str:
    out = io.StringIO()
    w = out.write
    m = results["machine"]
    w("\nEvent backbone benchmark  " + results["started_at"] + "\n")
    w(
        f"machine: {m['cores']} x {m['cpu_model']}, {m['memory']} RAM, load avg at start "
        f"{m['loadavg_at_start']}, Python {m['python']}, aiokafka {m['packages']['aiokafka']},"
        f" asyncpg {m['packages']['asyncpg']}\n"
    )
    w(f"N = {results['config']['events']} events; tracing: {results['config']['telemetry']}\n\n")
    rows = []
    s = results["steps"]
    if "raw_produce" in s:
        r = s["raw_produce"]
        rows.append(
            (
                f"1  {STEPS['1']} (idempotent, acks=all)",
                r["events_per_s"],
                f"{r['events']} rec in {r['seconds']}s, value {r['value_bytes_avg']} B +"
                f" headers {r['header_bytes_avg']} B, {r['mb_per_s']} MB/s",
            )
        )
    if "raw_consume" in s:
        r = s["raw_consume"]
        rows.append(
            (
                f"2  {STEPS['2']} (getmany, no DB)",
                r["events_per_s"],
                f"{r['seconds']}s, {r['getmany_calls']} getmany calls; Envelope.from_kafka"
                f" {r['envelope_decode_us_per_event']} us/event",
            )
        )
    if "outbox_prewrite" in s:
        r = s["outbox_prewrite"]
        rows.append(
            (
                "   (setup) eventstore.append + outbox rows",
                r["events_per_s"],
                f"{r['seconds']}s, {r['transaction_size']} events per transaction",
            )
        )
    if "outbox_relay" in s:
        r = s["outbox_relay"]
        rows.append(
            (
                f"3  {STEPS['3']} (OutboxRelay)",
                r["events_per_s"],
                f"{r['seconds']}s, relay batch_size {r['relay_batch_size']}",
            )
        )
    if "inbox" in s:
        r = s["inbox"]
        rows.append(
            (
                f"4  {STEPS['4']} (InboxConsumer)",
                r["events_per_s"],
                f"{r['seconds']}s, batch_size {r['batch_size_setting']}, avg batch "
                f"{r['avg_batch']}, group join {r['group_join_seconds']}s",
            )
        )
    if "inbox_batch_handlers" in s:
        r = s["inbox_batch_handlers"]
        rows.append(
            (
                f"4b same with {STEPS['4b']} (1 statement per batch)",
                r["events_per_s"],
                f"{r['seconds']}s, batch_size {r['batch_size_setting']}, avg batch "
                f"{r['avg_batch']}; {r['handler']}",
            )
        )
    for key, label in (("inbox_faststream", "4"), ("inbox_batch_handlers_faststream", "4b")):
        if key in s:  # --engines with faststream
            r = s[key]
            rows.append(
                (
                    f"{label:<3}same on FastStream (shared.faststream_inbox)",
                    r["events_per_s"],
                    f"{r['seconds']}s, batch_size {r['batch_size_setting']}, avg batch "
                    f"{r['avg_batch']}; {r['handler']}",
                )
            )
    w(f"{'step':<50} {'events/s':>10}  details\n")
    w(f"{'-' * 50} {'-' * 10}  {'-' * 60}\n")
    for name, rate, detail in rows:
        w(f"{name:<50} {rate:>10,}  {detail}\n")
    w("\nCPU during each step (all processes on the machine, from /proc):\n")
    for key, label in (
        ("raw_produce", "1"),
        ("raw_consume", "2"),
        ("outbox_relay", "3"),
        ("inbox", "4"),
        ("inbox_batch_handlers", "4b"),
        ("inbox_faststream", "4f"),
        ("inbox_batch_handlers_faststream", "4bf"),
    ):
        if key in s and s[key].get("cpu"):
            w(f"  {label:<3}{fmt_cpu(s[key]['cpu'])}\n")
    for e in s.get("end_to_end", []):
        w(
            f"\n5  [{e['config']}: {e['description']}] {STEPS['5']} by matching\n"
            f"   ({'isolated topic ' + e['topic'] if e['isolated_topic'] else e['topic']};"
            f" {e['registration_instances']} registration process(es); services ready in"
            f" {e['services_ready_seconds']}s; first event reached matching"
            f" {e['first_event_to_matching_seconds'] * 1000:.0f} ms after creation)\n"
        )
        for r in e["phases"]:
            w(
                f"\n   {r['target_rate']:g} commands/s: {r['commands']} commands (after "
                f"{r['warmup_commands']} warm-up); achieved send rate {r['achieved_send_rate']}/s,"
                f" completed {r['completed_rate']}/s; ok {r['ok']},"
                f" errors {sum(r['errors'].values())}; drained {r['drain_after_last_response_s']}s"
                f" after the last response; client {r['client']} used"
                f" {r['client_cpu_ms_per_command']} ms CPU per command\n"
            )
            w(f"   {'latency (ms)':<44} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}\n")
            for key, label in (
                ("send_schedule_lag", "client send lag vs open-loop schedule"),
                ("send_to_command_txn_start", "send -> command transaction start"),
                ("http_latency", "HTTP request -> response (client)"),
                ("send_to_published_acked", "send -> marked published (next relay round)"),
                ("send_to_inbox_claim", "send -> matching's inbox claim (txn start)"),
                ("inbox_claim_to_commit", "inbox claim -> commit (handlers, commit)"),
                ("send_to_committed", "send -> matching committed [E2E]"),
                ("http_response_to_committed", "HTTP response -> committed"),
                ("published_to_committed", "marked published -> committed"),
                ("send_to_vectors", "send -> matching's vectors stored"),
                ("committed_to_vectors", "committed -> vectors stored"),
            ):
                if key not in r:  # results of a bench from before the vectors were timed
                    continue
                v = {k: "-" if x is None else str(x) for k, x in r[key].items()}
                w(
                    f"   {label:<44} {v['p50_ms']:>8} {v['p95_ms']:>8} {v['p99_ms']:>8}"
                    f" {v['max_ms']:>8}\n"
                )
            b = r["matching_batch_fetch_to_commit"]
            w(
                f"   matching: {b['batches']} batches; fetch->commit per batch p50 <="
                f" {b['p50_le_s']}s, p99 <= {b['p99_le_s']}s (histogram buckets)\n"
            )
            if "vectors_drain_after_last_response_s" in r:
                w(
                    f"   matching: vectors of {r['vectors_stored']} registrations stored,"
                    f" the last {r['vectors_drain_after_last_response_s']}s after the last"
                    " response (cpu below counts until then)\n"
                )
            w(f"   cpu: {fmt_cpu(r['cpu'])}\n")
            per = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_command"].items() if v >= 0.05)
            w(f"   cpu ms per command: {per}\n")
            sql = r.get("registration_sql_per_command")
            if sql:
                db = r["registration_database_per_command"]
                spans = ", ".join(f"{k} {v}" for k, v in r["spans_exported_per_command"].items())
                w(
                    f"   registration's SQL per command: {sql['round_trips']} round trips,"
                    f" {sql['statements']} statements; its database (pg_stat_database):"
                    f" {db['transactions']} transactions, {db['rows_written']} rows written;"
                    f" spans exported per command: {spans or 'none'}\n"
                )
                for query, (trips, statements) in list(sql["by_statement"].items())[:14]:
                    w(f"     {trips:6.2f} {statements:6.2f}  {query}\n")
            if r["target_rate"] == 500 and e["config"] == "main":
                p99 = r["send_to_committed"]["p99_ms"]
                met = p99 is not None and p99 <= 50 and r["ok"] == r["commands"]
                w(f"   target p99 <= 50 ms at 500/s: {'MET' if met else 'MISSED'}\n")
    w("\ntargets:\n")
    if "inbox" in s:
        v = s["inbox"]["events_per_s"]
        w(
            f"  inbox >= 10,000 events/s on {results['machine']['cores']} cores:"
            f" {'MET' if v >= 10_000 else 'MISSED'} ({v:,}/s shipped"
            + (
                f"; {s['inbox_batch_handlers']['events_per_s']:,}/s with the batch handlers"
                if "inbox_batch_handlers" in s
                else ""
            )
            + ")\n"
        )
    for e in s.get("end_to_end", []):
        for r in e["phases"]:
            if e["config"] == "main" and r["target_rate"] == 500:
                p99 = r["send_to_committed"]["p99_ms"]
                met = p99 is not None and p99 <= 50 and r["ok"] == r["commands"]
                w(
                    f"  E2E p99 <= 50 ms at 500 commands/s ({r['client']} client):"
                    f" {'MET' if met else 'MISSED'} (p99 {p99!s} ms; completed"
                    f" {r['completed_rate']}/s)\n"
                )
    if results.get("cleanup_problems"):
        w(f"\ncleanup problems: {results['cleanup_problems']}\n")
    for note in results.get("cleanup_notes", []):
        w(f"\ncleanup note: {note}\n")
    if results.get("error"):
        w(f"\nFAILED: {results['error']}\n")
    return out.getvalue()
