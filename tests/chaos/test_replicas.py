"""Replica faults of the five real services on the cluster (fault 4 and 5 of the matrix).

Two processes of one service (`python -m services.<name>`, REPLICA_ID 1 and 2) share
its database and consumer group while the events of four brokerage events arrive
(keyed by event, so the work spreads over partitions and so over replicas). Mid-stream
the replica holding the outbox relay's lock is SIGKILLed while it works (scheduling: a
batch of accepted meetings half placed; notification: messages in flight to the SMTP
server; the others: events half applied), and a third replica is added. Then:
  - scheduling: every accepted meeting placed exactly once (one `SlotAssigned` each in
    the event store), no participant or table booked twice in a slot;
  - notification: every registration confirmed by exactly one message (one Message-ID
    per recipient; a copy resent with the same Message-ID after the kill, which mail
    clients collapse, is counted in the notes);
  - all five: every event of the topics the service reads applied (inbox), the outbox
    drained, the projections rebuilt from the events (`shared.rebuild`) equal to the
    live ones (an event applied twice would show there).
The row in var/chaos/table.md: lost = meetings not placed / registrations without a
message / events not applied; duplicated = meetings placed twice / a second, different
message / projection rows that differ from the rebuild.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.matching.rebuild import PLAN as MATCHING_PLAN
from services.notification.rebuild import PLAN as NOTIFICATION_PLAN
from services.registration.rebuild import PLAN as REGISTRATION_PLAN
from services.reporting.rebuild import PLAN as REPORTING_PLAN
from services.scheduling.rebuild import PLAN as SCHEDULING_PLAN
from shared.contracts import registry
from shared.contracts.scheduling import SlotAssigned
from shared.rebuild import Plan, rebuild
from shared.rebuild_report import Report
from tests.chaos.harness import Cluster, Row, process_of_port, record, relay_leader_port
from tests.integration.notification_support import (
    Contacts,
    ServiceProcess,
    SmtpSink,
    World,
    create_database,
    drop_database,
    envelope_topic,
    service_env,
)
from tests.integration.support import TEST_TOPIC_PREFIX, Infra, topic_under_test, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

WORLDS = 4


class Replicas:
    """Processes of one service on one database and one consumer group."""

    def __init__(self, service: str, env: dict[str, str], logs: Path) -> None:
        self.service, self.env, self.logs = service, env, logs
        self.running: list[ServiceProcess] = []

    async def add(self) -> ServiceProcess:
        n = len(self.running) + 1
        env = {**self.env, "REPLICA_ID": str(n)}
        proc = ServiceProcess(env, self.logs / f"{self.service}-{n}.log", service=self.service)
        # Only the first replica starts the fresh group at the topics' end: a later one
        # doing so would skip what the group has not consumed yet.
        proc._started = n > 1
        await proc.start()
        self.running.append(proc)
        return proc

    async def kill_relay_leader(self, dsn: str) -> tuple[int, float]:
        """SIGKILL the replica holding the relay lock: (its REPLICA_ID, seconds until
        another replica held the lock)."""
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            port = await relay_leader_port(pool, self.service)
            assert port is not None, "no replica holds the relay lock"
            pids = [p.proc.pid for p in self.running if p.proc is not None]
            pid = process_of_port(port, pids)
            assert pid is not None, f"no replica owns port {port}"
            index = next(i for i, p in enumerate(self.running) if p.proc and p.proc.pid == pid)
            t0 = time.monotonic()
            await self.running[index].kill()
            while await relay_leader_port(pool, self.service) in (None, port):
                await asyncio.sleep(0.02)
            return index + 1, time.monotonic() - t0
        finally:
            await pool.close()

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.running))


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def consumed_once_drained_and_rebuilt(
    dsn: str,
    env: dict[str, str],
    consumer: str,
    worlds: list[World],
    plan: Plan,
    read: set[str] | None = None,
) -> Report:
    """Every event the worlds published is in the inbox (once: it is the key), the outbox
    is drained; the projections rebuilt from the events, to compare with the live ones."""
    suffix = env["CONSUMER_GROUP_SUFFIX"]
    inbox = await fetch(dsn, "SELECT message_id FROM inbox WHERE consumer = $1", consumer + suffix)
    consumed = {str(r["message_id"]).rsplit("#", 1)[-1] for r in inbox}
    published = {e.id for w in worlds for e in w.sent if read is None or envelope_topic(e) in read}
    assert published - consumed == set(), "events the consumer never applied"

    async def drained() -> bool:
        rows = await fetch(dsn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        return int(rows[0]["n"]) == 0

    await wait_until(drained, limit=60, what="the outbox drained")
    report = await rebuild(
        plan,
        dsn,
        env["KAFKA_BOOTSTRAP_SERVERS"],
        registry(),
        topic_prefix=TEST_TOPIC_PREFIX,
        group_suffix=suffix,
    )
    return report


async def test_scheduling_replica_killed_mid_batch_and_another_added(
    cluster: Cluster, infra: Infra, tmp_path: Path
) -> None:
    participants, meetings_per_world = 24, 60
    name, dsn = await create_database(infra.admin_dsn)
    env = {
        **service_env(
            dsn=dsn, bootstrap=infra.bootstrap_servers, smtp_port=1, registration_url="http://-"
        ),
        "SCHEDULING_DATABASE_URL": dsn,
    }
    replicas = Replicas("scheduling", env, tmp_path)
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    contacts = Contacts()
    try:
        await replicas.add()
        await replicas.add()
        worlds = [World(producer, contacts) for _ in range(WORLDS)]
        people: list[list[str]] = []
        for w in worlds:
            await w.open_event()
            people.append([await w.register(f"P{i}") for i in range(participants)])
        pairs = [(i, j) for i in range(participants) for j in range(i + 1, participants)]
        accepted: list[str] = []

        async def accept_all() -> None:
            # Pairs spread so that nobody needs more than the day's 16 slots.
            for k in range(meetings_per_world):
                for w, who in zip(worlds, people, strict=True):
                    a, b = pairs[(k * 7) % len(pairs)]
                    meeting = f"{w.tag}-{k}"
                    await w.accept(meeting, who[a], who[b])
                    accepted.append(meeting)
                await asyncio.sleep(0.05)

        accepting = asyncio.create_task(accept_all())
        slot_assigned = SlotAssigned.ce_type()

        async def placed() -> int:
            rows = await fetch(
                dsn, "SELECT count(*) AS n FROM events WHERE event_type = $1", slot_assigned
            )
            return int(rows[0]["n"])

        async def some_placed() -> bool:
            return await placed() >= 40

        await wait_until(some_placed, limit=60, what="40 placed")
        t_fault, at_kill, sent_at_kill = time.monotonic(), await placed(), len(accepted)
        killed, takeover = await replicas.kill_relay_leader(dsn)
        await replicas.add()
        await accepting
        total = len(accepted)

        async def all_placed() -> bool:
            rows = await fetch(dsn, "SELECT count(*) AS n FROM meetings WHERE status = 'placed'")
            return int(rows[0]["n"]) == total

        await wait_until(all_placed, limit=120, what=f"all {total} meetings placed")
        recovery = time.monotonic() - t_fault
        await replicas.stop()
        per_meeting = Counter(
            str(r["m"])
            for r in await fetch(
                dsn,
                "SELECT data->>'meeting_id' AS m FROM events WHERE event_type = $1",
                slot_assigned,
            )
        )
        twice = sum(n - 1 for n in per_meeting.values() if n > 1)
        lost = len(set(accepted) - set(per_meeting))
        clashes = await fetch(
            dsn,
            "SELECT p, slot_id FROM meetings, unnest(participants) AS p WHERE status = 'placed'"
            " GROUP BY p, event_id, slot_id HAVING count(*) > 1",
        )
        tables = await fetch(
            dsn,
            "SELECT slot_id, table_no FROM meetings WHERE status = 'placed'"
            " GROUP BY event_id, slot_id, table_no HAVING count(*) > 1",
        )
        report = await consumed_once_drained_and_rebuilt(
            dsn, env, "scheduling", worlds, SCHEDULING_PLAN
        )
        row = Row(
            "scheduling replica SIGKILLed mid-batch (relay leader), a third added",
            f"{total} meetings accepted in {WORLDS} events at ~{WORLDS * 20}/s; 2 replicas, then 2",
            lost,
            twice,
            recovery,
            f"replica {killed} killed with {at_kill} of {sent_at_kill} accepted so far placed;"
            f" the relay lock taken over in {takeover:.2f}s; recovery = until all placed;"
            f" {len(clashes)} participant and {len(tables)} table clashes;"
            f" rebuilt projections {'equal' if report.equal else 'DIFFERENT'}",
        )
        record(row)
        print(f"\n{row}")
        assert lost == 0 and twice == 0 and not clashes and not tables, row
        assert report.equal, "\n".join(report.lines())
    finally:
        await replicas.stop()
        await producer.stop()
        await contacts.http.stop()
        await drop_database(infra.admin_dsn, name)


async def test_notification_replica_killed_mid_sending_and_another_added(
    cluster: Cluster, infra: Infra, tmp_path: Path
) -> None:
    registrations_per_world, workers = 40, 2
    smtp, contacts = SmtpSink(), Contacts()
    smtp.delay = 0.05  # every message is in flight for a while: the kill lands mid-send
    await smtp.start()
    await contacts.http.start()
    name, dsn = await create_database(infra.admin_dsn)
    env = service_env(
        dsn=dsn,
        bootstrap=infra.bootstrap_servers,
        smtp_port=smtp.port,
        registration_url=contacts.http.url,
        DELIVERY_WORKERS=str(workers),
    )
    replicas = Replicas("notification", env, tmp_path)
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await replicas.add()
        await replicas.add()
        worlds = [World(producer, contacts) for _ in range(WORLDS)]
        for w in worlds:
            await w.open_event()
        addresses: list[str] = []

        async def register_all() -> None:
            for i in range(registrations_per_world):
                for w in worlds:
                    await w.register(f"R{i}")
                    addresses.append(w.email_of(f"R{i}"))
                await asyncio.sleep(0.1)

        registering = asyncio.create_task(register_all())

        def mid_send() -> bool:
            return len(smtp.mails) >= 30 and len(smtp.seen_data) > len(smtp.mails)

        await wait_until(mid_send, limit=60, interval=0.005, what="30 sent and one in flight")
        t_fault, in_flight = time.monotonic(), len(smtp.seen_data) - len(smtp.mails)
        killed, takeover = await replicas.kill_relay_leader(dsn)
        await replicas.add()
        await registering

        await wait_until(
            lambda: all(smtp.to(a) for a in addresses),
            limit=120,
            what="every registration confirmed",
        )
        recovery = time.monotonic() - t_fault
        await asyncio.sleep(2)  # room for anything sent twice to show up
        await replicas.stop()
        ids_by_recipient = {a: [m.message_id for m in smtp.to(a)] for a in addresses}
        lost = sum(1 for ids in ids_by_recipient.values() if not ids)
        second = sum(len(set(ids)) - 1 for ids in ids_by_recipient.values())
        resent = sum(len(ids) - len(set(ids)) for ids in ids_by_recipient.values())
        rows = await fetch(
            dsn,
            "SELECT recipient, status, message_id FROM deliveries WHERE template = $1",
            "application.received",
        )
        assert len(rows) == len(addresses) and {r["status"] for r in rows} == {"sent"}
        assert {r["message_id"] for r in rows} == {
            i for ids in ids_by_recipient.values() for i in ids
        }
        report = await consumed_once_drained_and_rebuilt(
            dsn, env, "notification", worlds, NOTIFICATION_PLAN
        )
        row = Row(
            "notification replica SIGKILLed mid-send (relay leader), a third added",
            f"{len(addresses)} registrations in {WORLDS} events at ~{WORLDS * 10}/s;"
            f" 2 replicas x {workers} senders, then 2",
            lost,
            second,
            recovery,
            f"replica {killed} killed with {in_flight} message(s) in flight;"
            f" the relay lock taken over in {takeover:.2f}s; {resent} resent with the same"
            " Message-ID (kept by the server, unrecorded at the kill); recovery = until every"
            " registration confirmed;"
            f" rebuilt projections {'equal' if report.equal else 'DIFFERENT'}",
        )
        record(row)
        print(f"\n{row}")
        assert lost == 0 and second == 0, row
        assert report.equal, "\n".join(report.lines())
        assert resent <= workers, f"more copies than the killed replica had in flight: {row}"
    finally:
        await replicas.stop()
        await producer.stop()
        await smtp.stop()
        await contacts.http.stop()
        await drop_database(infra.admin_dsn, name)


PLANS = {"registration": REGISTRATION_PLAN, "matching": MATCHING_PLAN, "reporting": REPORTING_PLAN}


@pytest.mark.parametrize("service", sorted(PLANS))
async def test_replica_killed_mid_stream_and_another_added(
    service: str, cluster: Cluster, infra: Infra, tmp_path: Path
) -> None:
    """The other three services: their consumers and relays under the same fault; every
    event of the topics they read applied once, outbox drained, projections equal."""
    plan, per_world = PLANS[service], 30
    name, dsn = await create_database(infra.admin_dsn)
    env = {
        **service_env(
            dsn=dsn, bootstrap=infra.bootstrap_servers, smtp_port=1, registration_url="http://-"
        ),
        f"{service.upper()}_DATABASE_URL": dsn,
    }
    replicas = Replicas(service, env, tmp_path)
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    contacts = Contacts()
    consumer = plan.consumer + env["CONSUMER_GROUP_SUFFIX"]
    read = {topic_under_test(t) for t in plan.topics}
    try:
        await replicas.add()
        await replicas.add()
        worlds = [World(producer, contacts) for _ in range(WORLDS)]

        async def stream() -> None:
            for w in worlds:
                await w.open_event()
            people = [[await w.register(f"P{i}") for i in range(per_world)] for w in worlds]
            for i in range(per_world - 1):
                for w, who in zip(worlds, people, strict=True):
                    await w.request(f"{w.tag}-{i}", who[i], who[i + 1])
                    await w.accept(f"{w.tag}-{i}", who[i], who[i + 1])
                await asyncio.sleep(0.05)

        def expected() -> set[str]:
            return {e.id for w in worlds for e in w.sent if envelope_topic(e) in read}

        async def applied() -> set[str]:
            rows = await fetch(
                dsn, "SELECT message_id, outcome FROM inbox WHERE consumer = $1", consumer
            )
            return {str(r["message_id"]).rsplit("#", 1)[-1] for r in rows}

        streaming = asyncio.create_task(stream())

        async def some_applied() -> bool:
            return len(await applied()) >= 40

        await wait_until(some_applied, limit=90, what="40 events applied")
        t_fault, at_kill = time.monotonic(), len(await applied())
        killed, takeover = await replicas.kill_relay_leader(dsn)
        await replicas.add()
        await streaming

        async def all_applied() -> bool:
            return expected() <= await applied()

        await wait_until(all_applied, limit=120, what=f"every event {service} reads applied")
        recovery = time.monotonic() - t_fault
        await replicas.stop()
        outcomes = Counter(
            str(r["outcome"])
            for r in await fetch(dsn, "SELECT outcome FROM inbox WHERE consumer = $1", consumer)
        )
        lost = len(expected() - await applied())
        report = await consumed_once_drained_and_rebuilt(
            dsn, env, plan.consumer, worlds, plan, read
        )
        # An event applied twice would leave the live projection off the rebuilt one.
        differing = sum(d.only_live + d.only_rebuilt for d in report.differences)
        row = Row(
            f"{service} replica SIGKILLed mid-stream (relay leader), a third added",
            f"{len(expected())} events of {', '.join(sorted(plan.topics))} from {WORLDS}"
            " events; 2 replicas, then 2",
            lost,
            differing,
            recovery,
            f"replica {killed} killed after {at_kill} events applied; the relay lock taken over"
            f" in {takeover:.2f}s; inbox outcomes {dict(outcomes)}; recovery = until every event"
            " applied; duplicated = projection rows differing from a rebuild from the events",
        )
        record(row)
        print(f"\n{row}")
        assert lost == 0 and report.equal, "\n".join(report.lines())
    finally:
        await replicas.stop()
        await producer.stop()
        await contacts.http.stop()
        await drop_database(infra.admin_dsn, name)
