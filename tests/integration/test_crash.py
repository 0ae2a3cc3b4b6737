"""SIGKILL a real relay process and a real consumer process mid-batch.

The relay may publish an event twice after a kill (at-least-once) but never
loses one; the consumer's projection ends exactly as if every event had been
applied once.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections import Counter

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared import eventstore
from shared.envelope import Envelope
from shared.outbox import create_producer
from tests.integration.support import (
    EndOffsets,
    FreshDatabase,
    FreshTopics,
    Infra,
    Processes,
    committed_offsets,
    counter_model,
    duplicates,
    headers_of,
    projection,
    read_topic,
    send_envelope,
    value_of,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 3000
STREAMS = 30
RELAY_BATCH = 50


async def test_relay_killed_mid_batch_loses_nothing(
    infra: Infra, database: FreshDatabase, topics: FreshTopics, processes: Processes
) -> None:
    model = counter_model(topics.producer)
    written: list[str] = []
    async with database.pool.acquire() as conn, conn.transaction():
        for s in range(STREAMS):
            stream = f"stream-{s}"
            envelopes = [
                Envelope.wrap(model(counter=stream, stream=stream, n=n), key=stream)
                for n in range(1, EVENTS // STREAMS + 1)
            ]
            await eventstore.append(conn, stream, 0, envelopes)
            written.extend(e.id for e in envelopes)

    async def published() -> int:
        return int(
            await database.pool.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
            )
        )

    args = [
        "--dsn", database.dsn,
        "--bootstrap", infra.bootstrap_servers,
        "--service", topics.producer,
        "--batch-size", str(RELAY_BATCH),
    ]  # fmt: skip
    first = processes.start(
        "tests.integration.procs.relay_proc", *args, "--send-delay", "0.001", name="relay-1"
    )

    async with EndOffsets(infra.bootstrap_servers, topics.events) as on_kafka:
        in_flight = random.randint(1, RELAY_BATCH // 2)

        async def mid_batch() -> bool:
            """A fifth published, and part of the next batch on Kafka but not yet marked."""
            assert first.poll() is None, processes.log("relay-1")
            marked = await published()
            return marked >= EVENTS // 5 and await on_kafka.total() - marked >= in_flight

        await wait_until(mid_batch, limit=60, interval=0.005, what="the relay to be mid-batch")
        await processes.kill(first)
        await asyncio.sleep(0.5)  # let the server finish whatever the dead client sent it
        published_at_kill = await published()
        on_kafka_at_kill = await on_kafka.total()
    assert 0 < published_at_kill < EVENTS, "the kill did not land mid-run"
    assert on_kafka_at_kill > published_at_kill, "the kill did not land mid-batch"

    second = processes.start("tests.integration.procs.relay_proc", *args, name="relay-2")

    async def all_published() -> bool:
        assert second.poll() is None, processes.log("relay-2")
        return await published() == EVENTS

    await wait_until(all_published, limit=60, what="the restarted relay to publish everything")

    records = await read_topic(infra.bootstrap_servers, topics.events)
    ids = [headers_of(r)["ce_id"] for r in records]
    dupes = duplicates(ids)
    assert set(ids) == set(written), f"{len(set(written) - set(ids))} events lost"
    # What reached Kafka but was not yet marked published when the relay died is
    # sent again, and only that: less than one batch.
    assert dupes == on_kafka_at_kill - published_at_kill
    assert 0 < dupes < RELAY_BATCH
    # Keeping each event's first copy, every stream is still in version order.
    first_seen: dict[str, list[int]] = {}
    seen: set[str] = set()
    for record, event_id in zip(records, ids, strict=True):
        if event_id in seen:
            continue
        seen.add(event_id)
        data = value_of(record)
        first_seen.setdefault(data["stream"], []).append(data["n"])
    assert all(v == list(range(1, EVENTS // STREAMS + 1)) for v in first_seen.values())
    print(
        f"\nrelay kill (aimed at {in_flight} in flight): {published_at_kill} marked published"
        f" and {on_kafka_at_kill} on Kafka"
        f" at the kill; {len(records)} records for {EVENTS} events: {dupes} duplicates"
    )


async def test_consumer_killed_mid_batch_applies_every_event_once(
    infra: Infra,
    database: FreshDatabase,
    topics: FreshTopics,
    processes: Processes,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    model = counter_model(topics.producer)
    counters = [f"c{i}" for i in range(30)]
    events = [
        Envelope.wrap(model(counter=counter, amount=1), key=counter)
        for counter in (counters[i % len(counters)] for i in range(EVENTS))
    ]
    repeats = events[::30]  # 100 events produced a second time, at the end
    producer = create_producer(infra.bootstrap_servers, client_id="crash-test")
    await producer.start()
    try:
        await asyncio.gather(*(send_envelope(producer, topics.events, e) for e in events))
        await asyncio.gather(*(send_envelope(producer, topics.events, e) for e in repeats))
    finally:
        await producer.stop()
    records = len(events) + len(repeats)
    group = f"crash-{topics.producer}"
    args = [
        "--dsn", database.dsn,
        "--bootstrap", infra.bootstrap_servers,
        "--producer", topics.producer,
        "--group", group,
        "--instance-id", f"{group}-0",  # static membership: the restart rejoins at once
        "--batch-size", "100",
        "--delay", "0.001",
    ]  # fmt: skip
    pool = database.pool

    async def applied() -> int:
        return sum((await projection(pool)).values())

    def start_consumer(name: str, *extra: str) -> subprocess.Popen[bytes]:
        return processes.start("tests.integration.procs.consumer_proc", *args, *extra, name=name)

    async def committed() -> int:
        return sum((await committed_offsets(kafka_admin, group, topics.events)).values())

    # Kill 1, at a fifth: a batch's transaction has committed, its offsets not
    # yet. The restarted consumer is handed that batch again; the inbox drops it.
    first = start_consumer("consumer-1", "--commit-delay", "0.05")

    async def database_ahead_of_offsets() -> bool:
        assert first.poll() is None, processes.log("consumer-1")
        offsets = await committed()  # read before the database: it only grows
        done = await applied()
        return done >= EVENTS // 5 and done > offsets

    await wait_until(database_ahead_of_offsets, limit=60, interval=0.005, what="a commit gap")
    await processes.kill(first)
    await asyncio.sleep(0.5)
    kills = [(await applied(), await committed())]
    assert kills[0][0] > kills[0][1], "the kill did not land between the two commits"

    # Kill 2, past half: in the middle of a batch's transaction, with writes done.
    caught: list[str] = []
    second = start_consumer("consumer-2")

    async def inside_a_transaction() -> bool:
        assert second.poll() is None, processes.log("consumer-2")
        if await applied() < EVENTS // 2:
            return False
        writing = await pool.fetch(
            "SELECT state, left(query, 40) AS query FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_xid IS NOT NULL"
            " AND pid <> pg_backend_pid()"
        )
        caught.extend(f"{r['state']}: {r['query']}" for r in writing)
        return bool(writing)

    await wait_until(inside_a_transaction, limit=60, interval=0.005, what="an open transaction")
    await processes.kill(second)
    await asyncio.sleep(0.5)
    kills.append((await applied(), await committed()))
    assert all(0 < done < EVENTS for done, _ in kills), "a kill did not land mid-run"

    third = start_consumer("consumer-3")

    async def all_committed() -> bool:
        assert third.poll() is None, processes.log("consumer-3")
        return await committed() == records

    await wait_until(all_committed, limit=60, what="the restarted consumer to commit everything")

    expected = Counter(e.key for e in events)
    assert await projection(pool) == dict(expected)
    assert await pool.fetchval("SELECT count(*) FROM inbox") == EVENTS
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE outcome <> 'processed'") == 0
    print(
        "\nconsumer kills (applied, offsets committed): "
        + ", ".join(f"{a} / {c}" for a, c in kills)
        + f" (the second inside a transaction: {caught[-1]}...);"
        + f" {records} records for {EVENTS} events, each applied once"
    )
