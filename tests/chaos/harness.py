"""The fault tests' load, cluster control and bookkeeping (see tests/chaos/README in conftest).

Load: a writer appends counter events to the event store (outbox rows) at a steady
rate; relay processes (`procs/relay_proc`, the real `OutboxRelay`) publish them to a
replicated topic; consumer processes (`procs/consumer_proc`, the real `InboxConsumer`,
one group) apply them to `test_projection`. Every event adds 1 to its stream's counter,
so after the drain a counter below its stream's event count is a lost event and one
above it an event applied twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from shared import eventstore
from shared.db import advisory_lock_id
from shared.envelope import Envelope
from tests.integration.support import REPO_ROOT, counter_model, projection

RESULTS = REPO_ROOT / "var" / "chaos"


def state_dir() -> Path:
    return Path(os.environ.get("MATCHMAKING_STATE_DIR", "/var/tmp/matchmaking"))


def node_count() -> int:
    """KAFKA_BROKERS, else as many as KAFKA_BOOTSTRAP_SERVERS lists (as infra.sh counts:
    `KAFKA_BROKERS=3 . deploy/local/ports.env` leaves only the list behind in bash)."""
    named = os.environ.get("KAFKA_BROKERS", "")
    listed = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    return int(named) if named else len([a for a in listed.split(",") if a.strip()])


class Cluster:
    """The local KRaft nodes infra.sh started (KAFKA_BROKERS > 1): their pids by node."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.root = state_dir() / "kafka" / f"cluster-{nodes}"

    @classmethod
    def ours(cls) -> Cluster | None:
        """The cluster of this environment, if infra.sh runs one here with 3+ nodes."""
        nodes = node_count()
        if nodes < 3:
            return None
        cluster = cls(nodes)
        return cluster if all(cluster.pid(n) for n in range(1, nodes + 1)) else None

    def pid(self, node: int) -> int | None:
        path = self.root / f"node-{node}" / "kafka.pid"
        try:
            pid = int(path.read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        return None if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X") else pid

    def signal(self, node: int, sig: signal.Signals) -> None:
        pid = self.pid(node)
        assert pid is not None, f"node {node} is not running"
        os.kill(pid, sig)

    async def kill(self, node: int) -> None:
        pid = self.pid(node)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while self.pid(node) is not None:
            await asyncio.sleep(0.05)

    async def restart_missing(self) -> None:
        """`infra.sh up`: starts the stopped nodes, waits for leaders everywhere."""
        proc = await asyncio.create_subprocess_exec(
            "bash", "deploy/local/infra.sh", "up", cwd=REPO_ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()


@dataclass
class Writer:
    """Appends one event per tick to each of `streams` streams, `rate` events a second."""

    pool: asyncpg.Pool
    producer: str
    rate: float
    streams: int = 30
    written: dict[str, int] = field(default_factory=dict)
    failed_ticks: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def total(self) -> int:
        return sum(self.written.values())

    async def run(self, seconds: float) -> None:
        model = counter_model(self.producer)
        tick = 0.1
        per_tick = max(1, round(self.rate * tick))
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end and not self._stop.is_set():
            started = time.monotonic()
            done: dict[str, int] = {}
            try:
                async with self.pool.acquire(timeout=5) as conn, conn.transaction():
                    for i in range(per_tick):
                        stream = f"s{(n + i) % self.streams}"
                        version = self.written.get(stream, 0) + done.get(stream, 0)
                        envelope = Envelope.wrap(
                            model(counter=stream, stream=stream, n=version + 1), key=stream
                        )
                        await eventstore.append(conn, stream, version, [envelope])
                        done[stream] = done.get(stream, 0) + 1
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                # The database is away (a fault under test): this command failed, as an
                # API call would; it was not written, so it is not counted.
                self.failed_ticks += 1
                await asyncio.sleep(tick)
                continue
            n += per_tick
            for stream, k in done.items():
                self.written[stream] = self.written.get(stream, 0) + k
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()


async def applied(pool: asyncpg.Pool) -> int:
    return sum((await projection(pool)).values())


async def unpublished(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


async def drained(pool: asyncpg.Pool, writer: Writer, *, limit: float = 240.0) -> float:
    """Wait until every written event is published and applied; the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if await unpublished(pool) == 0 and await applied(pool) >= writer.total:
            return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"not drained after {limit}s: {await unpublished(pool)} unpublished,"
        f" {await applied(pool)} of {writer.total} applied"
    )


async def tally(pool: asyncpg.Pool, writer: Writer) -> tuple[int, int]:
    """(lost, applied twice) from the projection against what was written."""
    counts = await projection(pool)
    lost = sum(max(0, w - counts.get(s, 0)) for s, w in writer.written.items())
    twice = sum(max(0, counts.get(s, 0) - w) for s, w in writer.written.items())
    inbox = int(await pool.fetchval("SELECT count(*) FROM inbox"))
    assert inbox == writer.total - lost, f"inbox has {inbox} rows for {writer.total} events"
    return lost, twice


async def relay_leader_port(pool: asyncpg.Pool, service: str) -> int | None:
    """The client port of the session holding `service`'s relay lock, if any."""
    lock = advisory_lock_id(f"outbox-relay:{service}")
    port = await pool.fetchval(
        "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1::bigint",
        lock,
    )
    return int(port) if port is not None else None


def process_of_port(port: int, candidates: list[int]) -> int | None:
    """Which of the `candidates` pids owns the local TCP port `port`."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[3].endswith(f":{port}"):
            for pid in map(int, re.findall(r"pid=(\d+)", line)):
                if pid in candidates:
                    return pid
    return None


@dataclass
class Row:
    fault: str
    load: str
    lost: int
    duplicated: int
    recovery_s: float
    notes: str = ""


def record(row: Row) -> None:
    """Append the row to var/chaos/results.jsonl and rewrite var/chaos/table.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "results.jsonl").open("a") as out:
        out.write(json.dumps({**row.__dict__, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    latest: dict[str, dict[str, object]] = {}
    for line in (RESULTS / "results.jsonl").read_text().splitlines():
        entry = json.loads(line)
        latest[str(entry["fault"])] = entry
    lines = [
        "| fault | load | lost | duplicated | recovery s | notes |",
        "|---|---|---|---|---|---|",
        *(
            f"| {e['fault']} | {e['load']} | {e['lost']} | {e['duplicated']}"
            f" | {float(str(e['recovery_s'])):.1f} | {e['notes']} |"
            for e in latest.values()
        ),
    ]
    (RESULTS / "table.md").write_text("\n".join(lines) + "\n")
