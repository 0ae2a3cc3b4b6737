"""`python -m bench.placement [--accepted N] [--fetch K]`: scheduling's placement of a
stream of accepts, alone (no Kafka, no HTTP): where its share of bench-event's latency
goes.

A fresh database (on `BENCH_DATABASE_ADMIN_URL`, dropped afterwards) gets scheduling's
schema; the registration and matching events of a bremen-sized brokerage event
(`bench.rebuild_events`: 700 participants, 32 slots, 100 tables) go through the
service's live handlers and batch handlers (`bootstrap`'s subscription, without the
inbox table), in fetches of `--fetch` records as a live inbox applies them, each fetch
in one transaction. Reported: the time per fetch holding accepts (p50 / p99 / max), by
how far the agenda has grown, the accepts placed per second, and the statements sent
per placement (`pg_stat_database.xact_commit` is useless here: one transaction per fetch,
so asyncpg's calls are counted instead). Each meeting placed once, no clashes: checked.
Then the organiser re-optimises the agenda (`handlers.reoptimise`, the API's default
time limit): the solver's share of its wall time, the changes recorded, the round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any
from unittest.mock import patch

import asyncpg

from bench.backbone.common import ADMIN_DSN, dsn_for
from bench.rebuild_events import Size, generate
from services.scheduling import bursts, handlers, rebuild
from services.scheduling.solver.portfolio import solve
from shared.access.policy import Principal, Role
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted
from shared.contracts.registration import BrokerageEventCreated
from shared.db import create_database, migrate
from shared.envelope import Envelope

PAYLOADS = registry()
ADMIN = Principal(Role.ADMIN, "bench")
Event = tuple[Envelope, EventPayload]


class Counting:
    """The connection, counting the round trips the handlers make."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._conn, name)
        if name in {"execute", "executemany", "fetch", "fetchrow", "fetchval"}:
            self.calls += 1
        return found


async def _apply(conn: Any, events: Sequence[Event]) -> None:
    """As `InboxCore._apply_runs`: each run of one type through its batch handler."""
    run: list[Event] = []
    run_type = ""

    async def flush() -> None:
        if run:
            await bursts.BATCH_HANDLERS[run_type](conn, run)
            run.clear()

    for envelope, payload in events:
        current = PAYLOADS.current_type(envelope.type)
        if current not in bursts.BATCH_HANDLERS:
            await flush()
            if current in handlers.HANDLERS:
                await handlers.HANDLERS[current](conn, envelope, payload)
            continue
        if current != run_type:
            await flush()
            run_type = current
        run.append((envelope, payload))
    await flush()


async def _reoptimise(raw: asyncpg.Connection, event_id: str, limit: float) -> dict[str, Any]:
    """The organiser's re-optimisation of the placed agenda: its solver's time and the
    rest (loading, recording the changes and projecting them), in one transaction."""
    conn = Counting(raw)
    solving = 0.0

    def timed(instance: Any, time_limit: float) -> Any:
        nonlocal solving
        began = time.perf_counter()
        try:
            return solve(instance, time_limit)
        finally:
            solving = time.perf_counter() - began

    began = time.perf_counter()
    with patch.object(handlers, "solve", timed):
        async with raw.transaction():
            out = await handlers.reoptimise(conn, ADMIN, event_id, limit, None)
    took = time.perf_counter() - began
    changed = out["assigned"] + out["moved"] + out["released"]
    return {
        "time limit s": limit,
        "wall s": round(took, 2),
        "solver s": round(solving, 2),
        "changes recorded": changed,
        "round trips": conn.calls,
    }


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def run(accepted: int, fetch: int, limit: float) -> dict[str, Any]:
    size = Size(participants=700, accepted=accepted, declined=accepted // 8, slots=32, tables=100)
    line = generate(size, seed=5)
    consumed = sorted(
        (item for p in ("registration", "matching") for item in line.events[p]),
        key=lambda item: item[0],
    )
    events = [(env, PAYLOADS.parse(env.type, env.data)) for _, env in consumed]
    event_id = next(p.event_id for _, p in events if isinstance(p, BrokerageEventCreated))
    name = f"bench_placement_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(create_database(name))
    try:
        pool = await asyncpg.create_pool(dsn_for(name), min_size=1, max_size=1)
        assert pool is not None
        await migrate(pool, rebuild.PLAN.migrations)
        fetches: list[tuple[int, int, float]] = []  # (accepts in it, placed before, seconds)
        placed = 0
        calls = 0
        cpu = 0.0
        async with pool.acquire() as raw:
            conn = Counting(raw)
            for start in range(0, len(events), fetch):
                chunk = events[start : start + fetch]
                accepts = sum(isinstance(p, MeetingAccepted) for _, p in chunk)
                before = conn.calls
                began, began_cpu = time.perf_counter(), time.process_time()
                async with raw.transaction():
                    await _apply(conn, chunk)
                took = time.perf_counter() - began
                if accepts:
                    cpu += time.process_time() - began_cpu
                    fetches.append((accepts, placed, took))
                    calls += conn.calls - before
                    placed += accepts
            rows = await raw.fetch(
                "SELECT status, count(*) FROM meetings GROUP BY status ORDER BY status"
            )
            clashes = await raw.fetchval(
                "SELECT count(*) FROM (SELECT p, slot_id FROM meetings, unnest(participants) p"
                " WHERE status = 'placed' GROUP BY p, slot_id HAVING count(*) > 1) c"
            )
            tables = await raw.fetchval(
                "SELECT count(*) FROM (SELECT slot_id, table_no FROM meetings WHERE status ="
                " 'placed' AND table_no IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) c"
            )
            assigned = await raw.fetchval(
                "SELECT count(*) FROM events WHERE event_type LIKE '%SlotAssigned%'"
            )
            reoptimised = await _reoptimise(raw, event_id, limit)
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    total = sum(s for _, _, s in fetches)
    quarters = []
    for q in range(4):
        part = [f for f in fetches if q * accepted / 4 <= f[1] < (q + 1) * accepted / 4]
        per = sum(s for _, _, s in part) / max(1, sum(a for a, _, _ in part))
        quarters.append(round(per * 1000, 2))
    seconds = [s for _, _, s in fetches]
    return {
        "accepted": placed,
        "fetch": fetch,
        "fetches with accepts": len(fetches),
        "seconds in those fetches": round(total, 2),
        "accepts/s": round(placed / total, 1),
        "CPU ms per accept (this process: the handlers)": round(cpu / placed * 1000, 2),
        "fetch ms p50 / p99 / max": [
            round(statistics.median(seconds) * 1000, 1),
            round(_pct(seconds, 99) * 1000, 1),
            round(max(seconds) * 1000, 1),
        ],
        "ms per accept by quarter of the agenda": quarters,
        "round trips per accept": round(calls / placed, 2),
        "meetings": {r["status"]: r["count"] for r in rows},
        "SlotAssigned events": assigned,
        "participant clashes": clashes,
        "table clashes": tables,
        "reoptimise": reoptimised,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accepted", type=int, default=2500)
    parser.add_argument("--fetch", type=int, default=20, help="records per fetch")
    parser.add_argument(
        "--time-limit", type=float, default=3.0, help="the re-optimisation's (the API's default)"
    )
    args = parser.parse_args()
    for key, value in asyncio.run(run(args.accepted, args.fetch, args.time_limit)).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
