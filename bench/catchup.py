"""`python -m bench.catchup` (second step of `make bench-rebuild`): each service's real
subscription catching up a backlog, against raw aiokafka consumption in the same run.

On the default local infrastructure, with topics and databases of its own (removed
afterwards): the events of a BIO-Europe-sized brokerage event (`bench.rebuild_events`)
are published on their topics; then, per service, three readers start from the
beginning of the topics that service consumes:

- raw: an aiokafka consumer that only counts the records (no parsing, no database);
- batched: the service's subscription as its runtime builds it (handlers, batch handlers
  and the access projection), on `shared.inbox.InboxConsumer` and a fresh database;
- one by one: the same subscription without its batch handlers.

Each inbox run is measured from the last count of its inbox that found nothing applied to
the first that found its last record applied (counted every `--poll` seconds, POLL by
default; the group join is left out) and stops after `--limit` seconds if the backlog is
not done by then: the rate is what it applied per second. A count sees a batch only once
it commits, and a run lasts at least one interval, so a backlog of a few batches reads
too fast with a short interval and too slow with a long one (2,002 events: at most about
10,000 a second at 0.2 s). "server clock/s" is the same backlog over the server's own
times: from its first batch's start (its inbox rows' `processed_at`) to its last commit
(`track_commit_timestamp`). Matching has two subscriptions, measured apart:
`matching` (registration's events: profiles projected, texts queued for the embedding
worker) and `matching-pairs` (its own events: lists queued for the worker); the worker,
which embeds and ranks off the event path, does not run here.
Results in var/bench/catchup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.backbone.common import BOOTSTRAP, OUT_DIR, dsn_for, machine_info
from bench.backbone.resources import Resources
from bench.rebuild import PLANS, TOPICS, publish
from bench.rebuild_events import Size, generate
from services.matching import bootstrap as matching
from services.notification import bootstrap as notification
from services.registration import bootstrap as registration
from services.reporting import bootstrap as reporting
from services.scheduling import bootstrap as scheduling
from shared.db import migrate
from shared.inbox import InboxConsumer, Subscription
from shared.runtime import tune_collector
from shared.topics import prefixed, prefixed_all

log = logging.getLogger("bench.catchup")
# Seconds between two counts of the applied events (a count of the inbox table), by
# default: a shorter interval measures a short run more closely, and costs the server
# a count each time.
POLL = 0.2
# Each consumer measured: its service's bootstrap and which of its subscriptions.
SERVICES: dict[str, tuple[Any, int]] = {
    "registration": (registration, 0),
    "matching": (matching, 0),  # registration's events (texts queued for the worker)
    "matching-pairs": (matching, 1),  # its own events (lists queued for the worker)
    "scheduling": (scheduling, 0),
    "notification": (notification, 0),
    "reporting": (reporting, 0),
}


async def _raw(topics: Sequence[str]) -> dict[str, Any]:
    """Every record of `topics` from the start, counted only."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        enable_auto_commit=False,
        # From the start by the reset itself: a seek after `assign` could lose to the
        # default reset to the end, and this loop then waited for records forever.
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in (await consumer._client.fetch_all_metadata()).partitions_for_topic(t) or ()
        ]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            await consumer.position(tp)  # the reset to the beginning done
        total = sum(end.values())
        count = 0
        began = time.perf_counter()
        while count < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            count += sum(len(records) for records in batch.values())
        seconds = time.perf_counter() - began
    finally:
        await consumer.stop()
    return {"records": count, "seconds": round(seconds, 2), "events_per_s": round(count / seconds)}


@contextlib.asynccontextmanager
async def running(
    res: Resources, pool: asyncpg.Pool, subscription: Subscription, prefix: str, group: str
) -> AsyncIterator[asyncio.Task[None]]:
    """`subscription` on `InboxConsumer` over the `prefix`ed copies of its topics, as
    consumer group `group` (removed with `res`): the consumer's task while it runs."""
    res.groups.append(group)
    dlq = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await dlq.start()
    consumer = InboxConsumer(
        name=group,
        dsn_pool=pool,
        bootstrap_servers=BOOTSTRAP,
        subscription=replace(subscription, topics=tuple(prefixed_all(prefix, subscription.topics))),
        dlq_producer=dlq,
        topic_prefix=prefix,
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await dlq.stop()


async def _inbox(
    res: Resources,
    service: str,
    mode: str,
    subscription: Subscription,
    prefix: str,
    backlog: int,
    limit: float,
    poll: float = POLL,
) -> dict[str, Any]:
    stamps: Any = None
    name = await res.create_database(f"bench_catchup_{res.hex}_{service.replace('-', '_')}_{mode}")
    pool = await asyncpg.create_pool(dsn_for(name), min_size=2, max_size=4)
    assert pool is not None
    await migrate(pool, PLANS[service.partition("-")[0]].migrations)
    first: float | None = None
    last = nothing_yet = time.perf_counter()
    cpu = time.process_time()
    applied = 0
    group = f"bench-catchup-{res.hex}-{service}-{mode}"
    try:
        async with running(res, pool, subscription, prefix, group) as task:
            deadline = time.perf_counter() + limit + 60  # the join comes first
            while time.perf_counter() < deadline:
                await asyncio.sleep(poll)
                now = await pool.fetchval("SELECT count(*) FROM inbox")
                polled = time.perf_counter()
                if not now:
                    nothing_yet = polled
                elif first is None:
                    # From the last poll that found nothing: a run is never shorter than
                    # it was (it was measured from the first poll that found something,
                    # which left out up to a poll interval and reported a run applied
                    # between two polls at millions of events a second).
                    first = nothing_yet
                    deadline = polled + limit
                if now != applied:
                    applied, last = now, polled
                if applied >= backlog or task.done():
                    break
        # The server's own clock: the first batch's transaction began at its rows'
        # `processed_at` and the last commit is stamped (track_commit_timestamp): no
        # poll interval in it, and the first batch's work, invisible to the counts
        # until it commits, counted (a few batches read as far faster than they were
        # with a short poll interval, and slower with a long one).
        stamps = await pool.fetchrow(
            "SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin))"
            " - min(processed_at))::float8 AS seconds FROM inbox"
        )
    finally:
        # The whole process's (the group join and these counts included): wall time
        # swings with the machine's load, CPU time much less.
        cpu = time.process_time() - cpu
        await pool.close()
    exact = stamps["seconds"] if stamps is not None else None
    seconds = (last - first) if first else 0.0
    return {
        "applied": applied,
        "backlog": backlog,
        "done": applied >= backlog,
        "seconds": round(seconds, 2),
        "events_per_s": round(applied / seconds) if seconds else 0,
        # From the first batch's start to the last commit (None: no commit timestamps)
        "server_seconds": round(exact, 3) if exact else None,
        "events_per_s_server": round(applied / exact) if exact else None,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu / applied * 1e6) if applied else None,
    }


async def run(size: Size, services: list[str], limit: float, poll: float = POLL) -> dict[str, Any]:
    res = Resources(uuid.uuid4().hex[:10])
    res.group_wait = 5.0
    prefix = f"bench.catchup.{res.hex}."
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "size": size.__dict__,
        "limit_s": limit,
        "poll_s": poll,
        "load_before": os.getloadavg(),
        "services": {},
    }
    try:
        line = generate(size)
        for topic in TOPICS:
            await res.create_topic(prefixed(prefix, topic), partitions=3)
        published = await publish(prefix, line)
        # As a service's runtime does once started (the bench's own heap, the events it
        # generated, is then out of the collector's sight too, as a service has none).
        tune_collector()
        for service in services:
            module, index = SERVICES[service]
            subscription = module.build_app().state.subscriptions[index]
            backlog = sum(len(published.get(t, [])) for t in subscription.topics)
            raw = await _raw(prefixed_all(prefix, subscription.topics))
            batched = await _inbox(
                res, service, "batched", subscription, prefix, backlog, limit, poll
            )
            plain = replace(subscription, batch_handlers={})
            one = await _inbox(res, service, "one_by_one", plain, prefix, backlog, limit, poll)
            results["services"][service] = {
                "raw": raw,
                "batched": batched,
                "one_by_one": one,
                "batched_share_of_raw": round(batched["events_per_s"] / raw["events_per_s"], 3),
            }
            log.info("%s: %s", service, results["services"][service])
    finally:
        await res.close()
    results["load_after"] = os.getloadavg()
    results["cleanup_problems"] = res.problems
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        f"catch-up from the start of the consumed topics (limit {results['limit_s']:.0f} s per"
        f" run, counted every {results.get('poll_s', POLL)} s; load"
        f" {results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after)",
        f"{'service':<14}{'backlog':>9}{'raw/s':>9}{'batched/s':>11}{'done':>6}"
        f"{'CPU us/ev':>10}{'1-by-1/s':>10}{'batched/raw':>13}{'server clock/s':>16}",
    ]
    for service, r in results["services"].items():
        b, o = r["batched"], r["one_by_one"]
        lines.append(
            f"{service:<14}{b['backlog']:>9,}{r['raw']['events_per_s']:>9,}"
            f"{b['events_per_s']:>11,}{'yes' if b['done'] else 'no':>6}"
            f"{b['cpu_us_per_event'] or 0:>10,}{o['events_per_s']:>10,}"
            f"{r['batched_share_of_raw']:>12.1%}"
            f"{b.get('events_per_s_server') or 0:>16,}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catchup", description=__doc__)
    parser.add_argument("--participants", type=int, default=Size.participants)
    parser.add_argument("--accepted", type=int, default=Size.accepted)
    parser.add_argument("--declined", type=int, default=Size.declined)
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per inbox run")
    parser.add_argument(
        "--poll", type=float, default=POLL, help="seconds between two counts of the inbox"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A SIGTERM (e.g. from `timeout`) cleans up as Ctrl-C does: databases, topics, groups.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    size = Size(participants=args.participants, accepted=args.accepted, declined=args.declined)
    results = asyncio.run(run(size, args.services.split(","), args.limit, args.poll))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "catchup.json").write_text(json.dumps(results, indent=2, default=str))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
