"""`make bench-event SIZE=...`: the baseline against the stub, then the event on the platform."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.backbone.common import ADMIN_DSN, OUT_DIR, REPO, VENV_PYTHON, free_port, machine_info
from bench.event import report, statements
from bench.event.api import SERVICES, Api
from bench.event.cpu import Window
from bench.event.driver import Run, drive
from bench.event.probe import Probe
from bench.event.workload import SIZES, Workload, workload

DEFAULT_URLS = {
    "registration": "http://127.0.0.1:8001",
    "matching": "http://127.0.0.1:8002",
    "scheduling": "http://127.0.0.1:8003",
    "notification": "http://127.0.0.1:8004",
    "reporting": "http://127.0.0.1:8000",
}


def platform_urls() -> dict[str, str]:
    urls = {s: os.environ.get(f"{s.upper()}_URL", DEFAULT_URLS[s]) for s in SERVICES}
    if "PUBLIC_BASE_URL" in os.environ:  # ports.env names notification's so
        urls["notification"] = os.environ["PUBLIC_BASE_URL"]
    return urls


def log(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S} {message}", flush=True)


async def baseline(
    work: Workload, concurrency: int, rate: float | None
) -> tuple[Run, list[dict[str, Any]], float]:
    """The same driver and commands against `bench.event.stub`, nothing waited for."""
    port = free_port()
    stub = subprocess.Popen([str(VENV_PYTHON), "-m", "bench.event.stub", str(port)], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        api = Api(dict.fromkeys(SERVICES, f"http://127.0.0.1:{port}"), concurrency)
        started = time.perf_counter()
        run = await drive(api, work, "stub-admin", None, concurrency, lambda _: None, rate=rate)
        wall = time.perf_counter() - started
        await api.close()
    finally:
        stub.terminate()
        stub.wait(10)
    return run, [dataclasses.asdict(c) for c in api.commands], wall


def state_size(state_dir: Path, digits: int = 2) -> dict[str, float]:
    """GB on disk of the platform's PostgreSQL data and Kafka logs before the run: runs on
    platforms that hold very different state are not comparable (a database of 27 GB of
    earlier runs cost PostgreSQL a third more CPU than a fresh one at the same load)."""

    def gigabytes(paths: list[Path]) -> float:
        total = 0
        for root in paths:
            for path in root.rglob("*"):
                with contextlib.suppress(OSError):  # (a file gone meanwhile, or unreadable)
                    if path.is_file():
                        total += path.stat().st_blocks * 512  # (sparse index files)
        return round(total / 1e9, digits)

    return {
        "postgres_gb": gigabytes([state_dir / "postgres"]),
        "kafka_gb": gigabytes([d / "data" for d in state_dir.glob("kafka*") if d.is_dir()]),
    }


def check_catcher() -> None:
    """The mail catcher must be the one that indexes arrivals (scripts.mail_catcher)."""
    try:
        pid = (REPO / "var/run/mail.pid").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        cmdline = ""
    if "mail_catcher" not in cmdline:
        sys.exit(
            "bench-event reads var/log/mail.jsonl, which only scripts.mail_catcher writes;"
            " this platform's catcher is not running or predates it: `make down && make up`"
        )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    check_catcher()
    tag = uuid.uuid4().hex[:6]
    work = workload(args.size, tag)
    machine = machine_info()
    log(
        f"bench-event {args.size}: {len(work.participants)} participants,"
        f" {len(work.accepted)} accepted and {len(work.declined)} declined requests"
    )
    base_phases: list[dict[str, Any]] = []
    base_wall = 0.0
    if args.baseline:
        base_run, base_commands, base_wall = await baseline(work, args.concurrency, args.rate)
        log(f"baseline (stub): {base_wall:.1f}s for {len(base_commands)} commands")
        base_phases = report.phase_rows(
            [dataclasses.asdict(p) for p in base_run.phases], base_commands
        )

    state_dir = Path(os.environ.get("MATCHMAKING_STATE_DIR", "/var/tmp/matchmaking"))
    probe = Probe(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"), REPO / "var/log/mail.jsonl"
    )
    await probe.open()
    api = Api(platform_urls(), args.concurrency)
    held = state_size(state_dir)
    log(f"state before the run: PostgreSQL {held['postgres_gb']} GB, Kafka {held['kafka_gb']} GB")
    window = Window(state_dir)
    since = time.time()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    before = await statements.snapshot(ADMIN_DSN)
    window.start()
    t0 = time.perf_counter()
    run = Run()
    stopped = ""
    # SIGTERM (and Ctrl-C, asyncio.run's own handler) cancel the driving; what it did
    # so far is still measured and kept.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await drive(
            api, work, os.environ.get("PLATFORM_ADMIN_KEY", "local-admin-key"), probe,
            args.concurrency, log, run, args.rate,
        )  # fmt: skip
    except (Exception, asyncio.CancelledError) as exc:
        # Interrupted (SIGTERM, SIGINT) or failed: keep and report what was done.
        stopped = f"stopped in phase {run.current or '?'}: {exc!r}"
        log(stopped)
    asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
    wall = time.perf_counter() - t0
    cpu = window.stop()
    await api.close()
    log(f"platform: {wall:.1f}s; reading what the services recorded")
    if not stopped:
        await probe.quiet()  # anything still under way (not timed) before counting
    commands = [dataclasses.asdict(c) for c in api.commands]
    after = await statements.snapshot(ADMIN_DSN)
    latency = await probe.consumer_latencies(since - 1)
    emails = await probe.emails(run.event_id, since - 1, run.accepted_at)
    counts = await probe.counts(run.event_id)
    await probe.close()
    failed = sum(p.failed for p in run.phases)
    result: dict[str, Any] = {
        "started": started_at,
        "workload": {
            "size": work.size,
            "participants": len(work.participants),
            "accepted": len(work.accepted),
            "declined": len(work.declined),
            "bursts": [len(b) for b in work.bursts],
            "concurrency": args.concurrency,
            "rate": args.rate,
        },
        "event_id": run.event_id,
        "machine": machine,
        "state_before": held,
        "wall_s": round(wall, 2),
        "phases": report.phase_rows([dataclasses.asdict(p) for p in run.phases], commands),
        "baseline": {"wall_s": round(base_wall, 2), "phases": base_phases},
        "latency_end": "commit (pg_xact_commit_timestamp of its inbox row)"
        if probe.commit_timestamps
        else "inbox claim (inbox.processed_at; track_commit_timestamp is off)",
        "latency": latency,
        "emails": emails,
        "cpu": cpu,
        "statements": statements.difference(before, after, sum(p.commands for p in run.phases))
        if before is not None and after is not None
        else None,
        "counts": counts,
        "failures": run.failures,
    }
    registered = sum(1 for r in run.registrations if r)
    result["not_converged"] = report.converged(
        counts, emails, {"approved": registered, "accepted": len(run.accepted_at), "failed": failed}
    )
    if stopped:
        result["not_converged"].insert(0, stopped)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.event", description=__doc__)
    parser.add_argument("size", choices=SIZES)
    parser.add_argument(
        "--concurrency", type=int, default=32, help="commands in flight at once (default 32)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="pace register, approve, request and answer at this many commands per second"
        " (an open loop: latency at a load the platform is meant to carry); default: as fast"
        " as --concurrency connections are answered (capacity)",
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the run against the stub (its time is not needed to compare latencies:"
        " at a paced rate it takes as long as the platform's run)",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    table = report.render(result)
    (OUT_DIR / f"event-{args.size}.json").write_text(json.dumps(result, indent=2, default=str))
    (OUT_DIR / f"event-{args.size}.md").write_text(table)
    print()
    print(table)
    print(f"(kept in {OUT_DIR}/event-{args.size}.json and .md)")
    return 0 if not result["not_converged"] else 1


if __name__ == "__main__":
    sys.exit(main())
