"""`python -m bench.rebuild` (`make bench-rebuild`): each service's projections rebuilt
from a large event store, with the events per second.

On the default local infrastructure, on fresh databases and topics of its own (removed
afterwards, as `bench.backbone` does): the events of one BIO-Europe-sized brokerage event
(`bench.rebuild_events`: 3,500 registrations, 18,000 accepted meetings and 4,000
declined, their placements and e-mails; about 213,000 events) are written as the
platform would have left them: each producer's own events in its database's event store,
published on its topic, and every consumed event in the consumer's inbox as applied.
Then each service's rebuild (`services/<name>/rebuild.py`, `shared.rebuild`) runs
twice: once switching its rebuilt tables in as the live ones (the bench has no live
service to fill them), once more beside them, which must then find every table equal.
Printed per service: own and consumed events replayed, seconds and events per second
(replay only, without the row-by-row comparison) and this process's CPU per event over
the 2nd run's replay (steadier than the wall time on a shared machine); results, with
each step's seconds and CPU, in var/bench/rebuild.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.backbone.common import BOOTSTRAP, OUT_DIR, dsn_for, machine_info
from bench.backbone.resources import Resources
from bench.rebuild_events import PRODUCERS, Size, Timeline, generate
from services.matching import rebuild as matching_rebuild
from services.notification import rebuild as notification_rebuild
from services.registration import rebuild as registration_rebuild
from services.reporting import rebuild as reporting_rebuild
from services.scheduling import rebuild as scheduling_rebuild
from shared.batching import apply_run
from shared.contracts import UNPUBLISHED, registry
from shared.db import migrate
from shared.rebuild import Plan, one_by_one, rebuild
from shared.topics import prefixed

log = logging.getLogger("bench.rebuild")
PLANS: dict[str, Plan] = {
    plan.service: plan
    for plan in (
        registration_rebuild.PLAN,
        matching_rebuild.PLAN,
        scheduling_rebuild.PLAN,
        notification_rebuild.PLAN,
        reporting_rebuild.PLAN,
    )
}
TOPICS = (*(f"{p}.events" for p in PRODUCERS), "reporting.events")


async def _store_own(dsn: str, events: list[tuple[datetime, Any]]) -> None:
    """The producer's events in its event store, each recorded when it happened."""
    versions: Counter[str] = Counter()
    rows = []
    for at, envelope in events:
        stream = envelope.subject
        versions[stream] += 1
        meta = {k: v for k, v in envelope.to_record().items() if k != "data"}
        rows.append(
            (
                stream,
                versions[stream],
                uuid.UUID(envelope.id),
                envelope.type,
                json.dumps(envelope.data),
                json.dumps(meta),
                at,
            )
        )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "events",
            records=rows,
            columns=[
                "stream_id",
                "version",
                "event_id",
                "event_type",
                "data",
                "metadata",
                "recorded_at",
            ],
        )
    finally:
        await conn.close()


async def publish(prefix: str, line: Timeline) -> dict[str, list[tuple[str, str, int, int]]]:
    """Every producer's published events on its topic (not those kept in its event store
    only, `EventPayload.published`), stamped with their time; per canonical topic,
    (message id, topic, partition, offset) of each record."""
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=1 << 20, acks="all"
    )
    await producer.start()
    out: dict[str, list[tuple[str, str, int, int]]] = {}
    try:
        for name in PRODUCERS:
            topic = prefixed(prefix, f"{name}.events")
            pending = []
            for at, envelope in line.events[name]:
                if envelope.type in UNPUBLISHED:
                    continue
                future = await producer.send(
                    topic,
                    value=envelope.kafka_value(),
                    key=envelope.key.encode(),
                    headers=envelope.kafka_headers(),
                    timestamp_ms=int(at.timestamp() * 1000),
                )
                pending.append((f"{envelope.source}#{envelope.id}", future))
            out[f"{name}.events"] = [
                (message_id, topic, (meta := await future).partition, meta.offset)
                for message_id, future in pending
            ]
    finally:
        await producer.stop()
    return out


async def _inbox(dsn: str, consumer: str, records: list[tuple[str, str, int, int]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "inbox",
            records=[(consumer, *r) for r in records],
            columns=["consumer", "message_id", "topic", "partition", "offset"],
        )
    finally:
        await conn.close()


async def _prepare(res: Resources, size: Size, prefix: str) -> tuple[dict[str, str], int]:
    began = time.perf_counter()
    line = generate(size)
    log.info("generated %d events in %.1fs", line.total, time.perf_counter() - began)
    dsns = {}
    for service, plan in PLANS.items():
        name = await res.create_database(f"bench_rebuild_{res.hex}_{service}")
        dsns[service] = dsn_for(name)
        pool = await asyncpg.create_pool(dsns[service], min_size=1, max_size=1)
        try:
            await migrate(pool, plan.migrations)
        finally:
            await pool.close()
    for topic in TOPICS:
        await res.create_topic(prefixed(prefix, topic), partitions=3)
    for producer in PRODUCERS:
        await _store_own(dsns[producer], line.events[producer])
    published = await publish(prefix, line)
    for service, plan in PLANS.items():
        records = [r for topic in plan.topics for r in published.get(topic, [])]
        await _inbox(dsns[service], plan.consumer, records)
    log.info("event stores, topics and inboxes written in %.1fs", time.perf_counter() - began)
    return dsns, line.total


async def run(size: Size, services: list[str], compare_one_by_one: bool) -> dict[str, Any]:
    hex_id = uuid.uuid4().hex[:10]
    res = Resources(hex_id)
    res.group_wait = 0.0  # no consumer groups
    prefix = f"bench.rebuild.{hex_id}."
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "size": size.__dict__,
        "load_before": os.getloadavg(),
        "services": {},
    }
    try:
        dsns, total = await _prepare(res, size, prefix)
        results["events_generated"] = total
        for service in services:
            plan = PLANS[service]
            runs = []
            modes = [(True, apply_run), (False, apply_run)]
            if compare_one_by_one:
                modes.append((False, one_by_one))
            for switch, apply in modes:
                cpu = time.process_time()
                report = await rebuild(
                    plan,
                    dsns[service],
                    BOOTSTRAP,
                    registry(),
                    topic_prefix=prefix,
                    switch=switch,
                    apply=apply,
                )
                events = report.own_events + report.consumed_events
                cpu = time.process_time() - cpu  # this process: decoding, parsing, handlers
                runs.append(
                    {
                        "own_events": report.own_events,
                        "consumed_events": report.consumed_events,
                        "events": events,
                        "records_read": report.records_read,
                        # With the comparison after the replay (not in `seconds`).
                        "bench_process_cpu_s": round(cpu, 2),
                        "seconds": round(report.seconds, 2),
                        "events_per_s": round(events / report.seconds) if report.seconds else 0,
                        "phases_s": {k: round(v, 2) for k, v in report.phases.items()},
                        # This process's CPU per step, and per event over the replay.
                        "phases_cpu_s": {k: round(v, 2) for k, v in report.phases_cpu.items()},
                        "replay_cpu_us_per_event": (
                            round(sum(report.phases_cpu.values()) / events * 1e6, 1)
                            if events
                            else 0
                        ),
                        "switched": switch,
                        "runs": "one statement per event" if apply is one_by_one else "batched",
                        # Handlers that read on their connection (the fold's end).
                        "released_by_reads": report.released_by_reads,
                        "equal": report.equal if not switch else None,
                        "differences": [d.table for d in report.differences] if not switch else [],
                    }
                )
                log.info("%s;%s", report.lines()[0], report.lines()[1] if report.phases else "")
            results["services"][service] = runs
    finally:
        await res.close()
    results["load_after"] = os.getloadavg()
    results["cleanup_problems"] = res.problems
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        f"rebuild of {results.get('events_generated', 0):,} generated events"
        f" (load {results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after)",
        f"{'service':<14}{'own':>9}{'consumed':>10}{'seconds':>9}{'events/s':>10}"
        f"{'2nd run/s':>11}{'1-by-1/s':>10}{'CPU us/ev':>10}  equal",
    ]
    for service, (first, second, *rest) in results["services"].items():
        plain = f"{rest[0]['events_per_s']:,}" if rest else "-"
        lines.append(
            f"{service:<14}{first['own_events']:>9,}{first['consumed_events']:>10,}"
            f"{first['seconds']:>9.2f}{first['events_per_s']:>10,}{second['events_per_s']:>11,}"
            f"{plain:>10}{second['replay_cpu_us_per_event']:>10}"
            f"  {'yes' if second['equal'] else 'NO: ' + ', '.join(second['differences'])}"
        )
    for service, runs in results["services"].items():
        read = sorted({t for run in runs for t in run.get("released_by_reads", [])})
        if read:
            lines.append(
                f"{service}: folded no more after a handler of {', '.join(read)} read on its"
                " connection (every statement went to the server from then on)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild", description=__doc__)
    parser.add_argument("--participants", type=int, default=Size.participants)
    parser.add_argument("--accepted", type=int, default=Size.accepted)
    parser.add_argument("--declined", type=int, default=Size.declined)
    parser.add_argument("--services", default=",".join(PLANS))
    parser.add_argument(
        "--one-by-one",
        action="store_true",
        help="a third run per service with one statement per event (as before batching)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A SIGTERM (e.g. from `timeout`) cleans up as Ctrl-C does: databases, topics, groups.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    size = Size(participants=args.participants, accepted=args.accepted, declined=args.declined)
    results = asyncio.run(run(size, args.services.split(","), args.one_by_one))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "rebuild.json").write_text(json.dumps(results, indent=2, default=str))
    print(render(results))
    equal = all(run["equal"] is not False for runs in results["services"].values() for run in runs)
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
