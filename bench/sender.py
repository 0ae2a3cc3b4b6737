"""`python -m bench.sender` (`make bench-sender`): notification's sender alone, draining
a queue of due e-mails into a real SMTP server, with its CPU per e-mail.

On the default local infrastructure, with a database and topics of its own (removed
afterwards):

1. the events of a brokerage event (`bench.rebuild_events`, scaled by `--participants`,
   `--accepted`, `--declined`) are published, and notification's real subscription
   (`services.notification.bootstrap`, on `shared.inbox.InboxConsumer`) applies them
   with no sender running: its queue then holds the deliveries the platform would
   have queued (requests, answers, placements; reminders due later);
2. the local mail catcher (`scripts.mail_catcher`, aiosmtpd, as `make demo` runs it)
   and a stand-in for registration's contacts endpoint (`bench.contacts_stub`, uvicorn)
   start in processes of their own;
3. timed: the sender (`services.notification.sender.Sender`, its workers as the
   service runs them) sends every due delivery.

Printed: the e-mails sent, wall time, e-mails per second, and CPU seconds (and ms per
e-mail) of this process (the sender), the catcher, the contacts stand-in and
PostgreSQL; `--profile FILE` writes a cProfile of step 3. Results in
var/bench/sender.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench.backbone.common import (
    OUT_DIR,
    REPO,
    VENV_PYTHON,
    CpuWindow,
    dsn_for,
    free_port,
    machine_info,
    wait_for,
)
from bench.backbone.resources import Resources
from bench.catchup import running
from bench.rebuild import PLANS, TOPICS, publish
from bench.rebuild_events import Size, generate
from services.notification import bootstrap as notification
from services.notification.sender import Sender
from shared.db import migrate
from shared.settings import NotificationSettings
from shared.topics import prefixed

log = logging.getLogger("bench.sender")
ADMIN_KEY = "bench-sender-admin-key"
DUE = "status = 'pending' AND channel = 'email' AND next_attempt_at <= $1"


def _settings(dsn: str, smtp_port: int, contacts_url: str, workers: int, batch: int) -> Any:
    return NotificationSettings(
        notification_database_url=dsn,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        registration_url=contacts_url,
        platform_admin_key=ADMIN_KEY,
        delivery_workers=workers,
        delivery_batch_size=batch,
        delivery_poll_seconds=0.2,
        notification_stale_after_hours=24 * 365,
    )


async def _fill(res: Resources, pool: asyncpg.Pool, prefix: str, backlog: int) -> None:
    """Notification's subscription applies the published events (no sender running)."""
    subscription = notification.build_app().state.subscriptions[0]
    async with running(res, pool, subscription, prefix, f"bench-sender-{res.hex}") as task:

        async def applied() -> bool:
            if task.done():
                raise RuntimeError(f"the consumer stopped: {task.exception()!r}")
            return bool(await pool.fetchval("SELECT count(*) FROM inbox") >= backlog)

        await wait_for(applied, limit=900, interval=0.5, what="notification's backlog")


def _start(res: Resources, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    res.processes.append((name, proc))
    return proc


async def _drain(pool: asyncpg.Pool, settings: Any, due_at: datetime, profile: str | None) -> float:
    """The sender's workers until no delivery due at `due_at` is pending: wall seconds."""
    # CPU time, not wall time: on a shared machine a wall-clock profile charges a
    # syscall for the time the process waited for a core.
    profiler = cProfile.Profile(time.process_time) if profile else None
    async with httpx.AsyncClient(timeout=10) as http:
        sender = Sender(pool, settings.notification_database_url, settings, http)
        began = time.perf_counter()
        if profiler:
            profiler.enable()
        task = asyncio.create_task(sender.run())
        try:

            async def drained() -> bool:
                if task.done():
                    raise RuntimeError(f"the sender stopped: {task.exception()!r}")
                return not await pool.fetchval(
                    f"SELECT count(*) FROM deliveries WHERE {DUE}", due_at
                )

            await wait_for(drained, limit=1800, interval=0.2, what="the due deliveries")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if profiler:
                profiler.disable()
                assert profile is not None
                profiler.dump_stats(profile)
        return time.perf_counter() - began


async def run(size: Size, workers: int, batch: int, profile: str | None) -> dict[str, Any]:
    res = Resources(uuid.uuid4().hex[:10])
    res.group_wait = 5.0
    prefix = f"bench.sender.{res.hex}."
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "size": size.__dict__,
        "workers": workers,
        "batch": batch,
        "load_before": os.getloadavg(),
    }
    index = OUT_DIR / f"sender-mail-{res.hex}.jsonl"
    try:
        line = generate(size)
        for topic in TOPICS:
            await res.create_topic(prefixed(prefix, topic), partitions=3)
        published = await publish(prefix, line)
        name = await res.create_database(f"bench_sender_{res.hex}")
        dsn = dsn_for(name)
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=workers + 4)
        assert pool is not None
        try:
            await migrate(pool, PLANS["notification"].migrations)
            backlog = sum(len(published.get(t, [])) for t in notification.TOPICS)
            began = time.perf_counter()
            await _fill(res, pool, prefix, backlog)
            due_at = datetime.now(UTC)
            due = await pool.fetchval(f"SELECT count(*) FROM deliveries WHERE {DUE}", due_at)
            log.info(
                "%d events applied, %d e-mails due, in %.1fs",
                backlog,
                due,
                time.perf_counter() - began,
            )
            smtp_port, contacts_port = free_port(), free_port()
            catcher = _start(res, "mail catcher", [
                str(VENV_PYTHON), "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}",
                "-c", "scripts.mail_catcher.StampingDebugging", str(index),
            ])  # fmt: skip
            contacts = _start(res, "contacts stand-in", [
                str(VENV_PYTHON), "-m", "uvicorn", "bench.contacts_stub:app",
                "--port", str(contacts_port), "--log-level", "warning",
            ])  # fmt: skip
            async with httpx.AsyncClient() as probe:

                async def contacts_up() -> bool:
                    try:
                        url = f"http://127.0.0.1:{contacts_port}/api/registrations/x/contacts"
                        return (await probe.get(url)).status_code == 200
                    except httpx.HTTPError:
                        return False

                await wait_for(contacts_up, limit=30, interval=0.2, what="the contacts stand-in")
            settings = _settings(
                dsn, smtp_port, f"http://127.0.0.1:{contacts_port}", workers, batch
            )
            window = CpuWindow(
                labels={catcher.pid: "mail catcher", contacts.pid: "contacts stand-in"},
                database_tag=name,
            )
            window.start()
            seconds = await _drain(pool, settings, due_at, profile)
            cpu = window.stop()
            statuses = dict(
                (r["status"], r["n"])
                for r in await pool.fetch(
                    "SELECT status, count(*) AS n FROM deliveries"
                    " WHERE channel = 'email' AND next_attempt_at <= $1 GROUP BY status",
                    due_at,
                )
            )
            skipped = dict(
                (r["reason"], r["n"])
                for r in await pool.fetch(
                    "SELECT last_error AS reason, count(*) AS n FROM deliveries"
                    " WHERE status = 'skipped' GROUP BY 1"
                )
            )
        finally:
            await pool.close()
        await asyncio.sleep(0.5)  # the catcher's last index lines
        arrived = [json.loads(x) for x in index.read_text().splitlines()] if index.exists() else []
        sent = statuses.get("sent", 0)
        results.update(
            events=backlog,
            due=due,
            statuses=statuses,
            skipped=skipped,
            arrived=len(arrived),
            distinct_message_ids=len({m["message_id"] for m in arrived}),
            seconds=round(seconds, 2),
            emails_per_s=round(sent / seconds, 1) if seconds else 0,
            cpu=cpu,
            cpu_ms_per_email={
                k: round(1000 * v / sent, 3) for k, v in cpu["cpu_s"].items() if sent
            },
        )
    finally:
        await res.close()
        index.unlink(missing_ok=True)
    results["load_after"] = os.getloadavg()
    results["cleanup_problems"] = res.problems
    return results


def render(r: dict[str, Any]) -> str:
    lines = [
        f"sender: {r['due']:,} e-mails due after {r['events']:,} events;"
        f" {r['workers']} workers, batches of {r['batch']}"
        f" (load {r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after)",
        f"  sent {r['statuses'].get('sent', 0):,} ({r['statuses']}), {r['arrived']:,} arrived"
        f" ({r['distinct_message_ids']:,} distinct Message-IDs; skipped: {r['skipped']})"
        f" in {r['seconds']:.2f}s: {r['emails_per_s']:,} e-mails/s,"
        f" machine {r['cpu']['machine_busy_pct']}% busy",
    ]
    for who, seconds in r["cpu"]["cpu_s"].items():
        lines.append(
            f"  {who:<24} {seconds:8.2f} CPU s  {r['cpu_ms_per_email'].get(who, 0):7.3f} ms/e-mail"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sender", description=__doc__)
    parser.add_argument("--participants", type=int, default=400)
    parser.add_argument("--accepted", type=int, default=2000)
    parser.add_argument("--declined", type=int, default=400)
    parser.add_argument("--workers", type=int, default=NotificationSettings().delivery_workers)
    parser.add_argument("--batch", type=int, default=NotificationSettings().delivery_batch_size)
    parser.add_argument("--profile", help="write a cProfile of the sender's run here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    size = Size(participants=args.participants, accepted=args.accepted, declined=args.declined)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(size, args.workers, args.batch, args.profile))
    (OUT_DIR / "sender.json").write_text(json.dumps(results, indent=2, default=str))
    print(render(results))
    sent = results["statuses"].get("sent", 0)
    complete = results["arrived"] == results["distinct_message_ids"] == sent
    return 0 if complete and results["due"] else 1


if __name__ == "__main__":
    sys.exit(main())
