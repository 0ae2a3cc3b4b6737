"""The fault matrix on a real three-broker cluster: load running, a fault, then
nothing lost, nothing applied twice, the outbox drained, the recovery measured.

Recovery seconds: from the fault's start until the lag (events written, not yet
applied) last exceeded two seconds of load; when it never did, until the events
written before the fault were applied.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.chaos.harness import (
    Cluster,
    Row,
    Writer,
    applied,
    drained,
    process_of_port,
    record,
    relay_leader_port,
    state_dir,
    tally,
)
from tests.integration.support import (
    EndOffsets,
    FreshDatabase,
    FreshTopics,
    Infra,
    Processes,
    headers_of,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration
chaos = pytest.mark.chaos


@dataclass
class Run:
    infra: Infra
    database: FreshDatabase
    topics: FreshTopics
    processes: Processes
    relays: list[subprocess.Popen[bytes]]
    consumers: list[subprocess.Popen[bytes]]
    send_delay: float = 0.0
    ack_delay: float = 0.0

    def relay(self, name: str) -> subprocess.Popen[bytes]:
        proc = self.processes.start(
            "tests.integration.procs.relay_proc",
            "--dsn", self.database.dsn,
            "--bootstrap", self.infra.bootstrap_servers,
            "--service", self.topics.producer,
            "--batch-size", "200",
            # A little time per send: a batch takes long enough to be killed mid-way,
            # between "some of it is on Kafka" and "it is marked published".
            "--send-delay", str(self.send_delay),
            # And, if asked, a pause after the acks before the batch is marked: a window
            # in which all of it is on Kafka and none of it marked, however fast the
            # machine (without it the kill can miss the window on a quiet one).
            "--ack-delay", str(self.ack_delay),
            name=name,
        )  # fmt: skip
        self.relays.append(proc)
        return proc

    def consumer(self, name: str) -> subprocess.Popen[bytes]:
        proc = self.processes.start(
            "tests.integration.procs.consumer_proc",
            "--dsn", self.database.dsn,
            "--bootstrap", self.infra.bootstrap_servers,
            "--producer", self.topics.producer,
            "--group", f"chaos-{self.topics.producer}",
            "--instance-id", f"chaos-{name}-{os.getpid()}",
            "--batch-size", "200",
            name=name,
        )  # fmt: skip
        self.consumers.append(proc)
        return proc


Fault = Callable[[Run], Awaitable[str]]


async def under_load(
    fault_name: str,
    fault: Fault,
    *,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
    relays: int = 1,
    consumers: int = 2,
    rate: float = 100,
    seconds: float = 40,
    fault_at: float = 8,
    send_delay: float = 0.0,
    ack_delay: float = 0.0,
) -> Row:
    run = Run(infra, database, topics, processes, [], [], send_delay, ack_delay)
    for i in range(relays):
        run.relay(f"relay-{i + 1}")
    for i in range(consumers):
        run.consumer(f"consumer-{i + 1}")
    await wait_until(
        lambda: all(
            "consumer started" in processes.log(f"consumer-{i + 1}") for i in range(consumers)
        ),
        limit=60,
        what="the consumers to start",
    )
    writer = Writer(database.pool, topics.producer, rate)
    writing = asyncio.create_task(writer.run(seconds))
    await asyncio.sleep(fault_at)
    backlog, t_fault = writer.total, time.monotonic()
    samples: list[tuple[float, int, int]] = []
    sampling = asyncio.create_task(sample_lag(database.pool, writer, writing, samples))
    notes = await fault(run)
    await writing
    await sampling
    # Recovery: from the fault's start to the last moment the lag (written, not yet
    # applied) was above two seconds of load; 0 if the platform rode the fault out.
    stalled = [t - t_fault for t, lag, _ in samples if t >= t_fault and lag > 2 * rate]
    recovery = max(stalled, default=0.0)
    if not stalled:
        # The lag never built up: the time until the events written before it were in.
        caught_up = [t - t_fault for t, _, done in samples if t >= t_fault and done >= backlog]
        recovery = min(caught_up, default=0.0)
    notes += f"; max lag {max((lag for _, lag, _ in samples), default=0)} events"
    await drained(database.pool, writer)
    lost, twice = await tally(database.pool, writer)
    records = await read_topic(infra.bootstrap_servers, topics.events)
    republished = len(records) - len({headers_of(r)["ce_id"] for r in records})
    if republished:
        notes += f"; {republished} events published twice, dropped by the inbox"
    load = (
        f"{writer.total} events, {rate:.0f}/s for {seconds:.0f}s; {relays} relay(s),"
        f" {consumers} consumer(s); RF 3, min ISR 2"
    )
    if writer.failed_ticks:
        notes += f"; {writer.failed_ticks} write ticks refused during the fault"
    row = Row(fault_name, load, lost, twice, recovery, notes)
    record(row)
    print(f"\n{row}")
    assert lost == 0 and twice == 0, row
    return row


async def sample_lag(
    pool: asyncpg.Pool,
    writer: Writer,
    writing: asyncio.Task[None],
    out: list[tuple[float, int, int]],
) -> None:
    """(time, events written but not yet applied, applied) every 0.2 s, until the lag
    is gone after the writer stopped."""
    while True:
        written = writer.total
        try:
            done = await applied(pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.2)  # the database is the fault: no sample
            continue
        lag = written - done
        out.append((time.monotonic(), lag, done))
        if writing.done() and lag <= 0:
            return
        await asyncio.sleep(0.2)


async def leader_of(admin: AIOKafkaAdminClient, topic: str) -> int:
    """The broker (= local node number) leading most of `topic`'s partitions."""
    partitions = (await admin.describe_topics([topic]))[0]["partitions"]
    leaders: list[int] = [p["leader"] for p in partitions]
    return max(set(leaders), key=leaders.count)


async def isr_full(admin: AIOKafkaAdminClient, topic: str, size: int, limit: float = 120) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        partitions = (await admin.describe_topics([topic]))[0]["partitions"]
        if all(len(p["isr"]) == size for p in partitions):
            return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise AssertionError(f"{topic}'s ISR not back to {size} after {limit}s")


def broker_kill(cluster: Cluster, admin: AIOKafkaAdminClient, down: float) -> Fault:
    async def fault(run: Run) -> str:
        node = await leader_of(admin, run.topics.events)
        await cluster.kill(node)
        await asyncio.sleep(down)
        t0 = time.monotonic()
        await cluster.restart_missing()
        back = time.monotonic() - t0
        full = await isr_full(admin, run.topics.events, 3)
        return (
            f"SIGKILL of node {node} (leader of most partitions), down {down:.0f}s;"
            f" restarted and serving in {back:.1f}s, ISR 3/3 {full:.1f}s later"
        )

    return fault


async def test_broker_killed_and_restarted_briefly(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    """The representative fault of `make test` (about a minute)."""
    await under_load(
        "one broker of three killed and restarted (short)",
        broker_kill(cluster, kafka_admin, down=8),
        infra=infra, database=database, topics=topics, processes=processes,
        rate=50, seconds=25, fault_at=6,
    )  # fmt: skip


@chaos
async def test_broker_killed_and_restarted_under_load(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    await under_load(
        "one broker of three killed and restarted",
        broker_kill(cluster, kafka_admin, down=20),
        infra=infra, database=database, topics=topics, processes=processes,
        rate=150, seconds=45,
    )  # fmt: skip


async def test_replica_killed_mid_batch_relay_leader_taken_over(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
) -> None:
    """The second fault of `make test` (about half a minute): a service replica (its
    relay, the leader, and one consumer) SIGKILLed while part of a batch is on Kafka
    but not yet marked published; the standby relay takes over."""

    async def fault(run: Run) -> str:
        port = await relay_leader_port(database.pool, topics.producer)
        assert port is not None, "no relay holds the lock"
        pid = process_of_port(port, [p.pid for p in run.relays])
        assert pid is not None, f"no relay process owns port {port}"
        leader = next(p for p in run.relays if p.pid == pid)
        async with EndOffsets(infra.bootstrap_servers, topics.events) as on_kafka:

            async def mid_batch() -> bool:
                marked = await database.pool.fetchval(
                    "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
                )
                return await on_kafka.total() - int(marked) >= 5

            await wait_until(mid_batch, limit=30, interval=0.005, what="the relay mid-batch")
            t0 = time.monotonic()
            await asyncio.gather(run.processes.kill(leader), run.processes.kill(run.consumers[0]))
        while True:
            now = await relay_leader_port(database.pool, topics.producer)
            if now is not None and now != port:
                break
            await asyncio.sleep(0.02)
        takeover = time.monotonic() - t0
        return (
            "SIGKILL of a replica mid-batch (the relay leader and a consumer);"
            f" the standby relay holds the lock {takeover:.2f}s later"
        )

    row = await under_load(
        "replica killed mid-batch, relay leader taken over",
        fault,
        infra=infra, database=database, topics=topics, processes=processes,
        relays=2, rate=100, seconds=20, fault_at=5, send_delay=0.005, ack_delay=0.3,
    )  # fmt: skip
    assert "published twice" in row.notes, f"the kill did not land mid-batch: {row}"


@chaos
async def test_relay_leader_killed_with_a_standby(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
) -> None:
    async def fault(run: Run) -> str:
        port = await relay_leader_port(database.pool, topics.producer)
        assert port is not None, "no relay holds the lock"
        pid = process_of_port(port, [p.pid for p in run.relays])
        assert pid is not None, f"no relay process owns port {port}"
        leader = next(p for p in run.relays if p.pid == pid)
        t0 = time.monotonic()
        await run.processes.kill(leader)
        while True:
            now = await relay_leader_port(database.pool, topics.producer)
            if now is not None and now != port:
                break
            await asyncio.sleep(0.02)
        takeover = time.monotonic() - t0
        return f"SIGKILL of the relay leader; the standby holds the lock {takeover:.2f}s later"

    await under_load(
        "relay leader killed, second replica present",
        fault,
        infra=infra, database=database, topics=topics, processes=processes,
        relays=2, rate=150, seconds=30, send_delay=0.002,
    )  # fmt: skip


@chaos
async def test_broker_paused_longer_than_the_session_timeout(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    async def fault(run: Run) -> str:
        node = await leader_of(kafka_admin, topics.events)
        cluster.signal(node, signal.SIGSTOP)
        try:
            await asyncio.sleep(20)  # > broker.session.timeout.ms (9 s) and the consumers' 10 s
        finally:
            cluster.signal(node, signal.SIGCONT)
        full = await isr_full(kafka_admin, topics.events, 3)
        return f"SIGSTOP of node {node} (leading most partitions) 20s; ISR 3/3 {full:.1f}s after"

    await under_load(
        "broker paused (SIGSTOP) 20 s, longer than the session timeouts",
        fault,
        infra=infra, database=database, topics=topics, processes=processes,
        rate=100, seconds=45,
    )  # fmt: skip


@chaos
async def test_consumer_replica_added_and_another_killed(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
) -> None:
    async def fault(run: Run) -> str:
        run.consumer("consumer-3")
        await asyncio.sleep(2)
        await run.processes.kill(run.consumers[0])
        return "a third consumer joined; 2 s later the first was SIGKILLed"

    await under_load(
        "consumer replica added mid-stream, another SIGKILLed",
        fault,
        infra=infra, database=database, topics=topics, processes=processes,
        rate=150, seconds=35,
    )  # fmt: skip


@chaos
async def test_postgres_restarted_under_load(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
) -> None:
    data = state_dir() / "postgres" / "data"
    assert ":5432/" not in infra.admin_dsn, "never restart the default PostgreSQL"
    assert (data / "postmaster.pid").exists(), f"no PostgreSQL of ours in {data}"

    async def fault(run: Run) -> str:
        bins = sorted(p for p in os.listdir("/usr/lib/postgresql"))
        pg_ctl = f"/usr/lib/postgresql/{bins[-1]}/bin/pg_ctl"
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-m", "fast", "-w",
            "restart", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
        )  # fmt: skip
        assert await proc.wait() == 0
        return f"pg_ctl restart -m fast ({time.monotonic() - t0:.1f}s)"

    await under_load(
        "PostgreSQL restarted",
        fault,
        infra=infra, database=database, topics=topics, processes=processes,
        rate=100, seconds=30,
    )  # fmt: skip


@chaos
@pytest.mark.timeout(600)  # 90 s of load, 60 s down, JVMs restarting: over 300 s when busy
async def test_whole_cluster_down_for_a_minute(
    cluster: Cluster,
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
) -> None:
    async def fault(run: Run) -> str:
        for node in range(1, cluster.nodes + 1):
            await cluster.kill(node)
        await asyncio.sleep(60)
        t0 = time.monotonic()
        await cluster.restart_missing()
        back = time.monotonic() - t0
        return f"all {cluster.nodes} nodes SIGKILLed for 60s, writes queued; up in {back:.1f}s"

    await under_load(
        "whole cluster down 60 s",
        fault,
        infra=infra, database=database, topics=topics, processes=processes,
        rate=50, seconds=90, fault_at=8,
    )  # fmt: skip
