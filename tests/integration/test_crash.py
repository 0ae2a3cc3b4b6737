"""SIGKILL a real relay process and a real consumer process mid-batch.

The relay may publish an event twice after a kill (at-least-once) but never
loses one; the consumer's projection ends exactly as if every event had been
applied once.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared import eventstore
from shared.envelope import Envelope
from shared.outbox import create_producer
from tests.integration.support import (
    FreshDatabase,
    FreshTopics,
    Infra,
    Processes,
    committed_offsets,
    counter_model,
    end_offsets,
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

    async def some_published() -> bool:
        assert first.poll() is None, processes.log("relay-1")
        return await published() >= EVENTS // 5

    await wait_until(some_published, limit=60, interval=0.01, what="the relay to publish some")
    await processes.kill(first)
    await asyncio.sleep(0.5)  # let the server finish whatever the dead client sent it
    published_at_kill = await published()
    on_kafka_at_kill = sum((await end_offsets(infra.bootstrap_servers, topics.events)).values())
    assert 0 < published_at_kill < EVENTS, "the kill did not land mid-run"

    second = processes.start("tests.integration.procs.relay_proc", *args, name="relay-2")

    async def all_published() -> bool:
        assert second.poll() is None, processes.log("relay-2")
        return await published() == EVENTS

    await wait_until(all_published, limit=60, what="the restarted relay to publish everything")

    records = await read_topic(infra.bootstrap_servers, topics.events)
    ids = [headers_of(r)["ce_id"] for r in records]
    dupes = len(ids) - len(set(ids))
    assert set(ids) == set(written), f"{len(set(written) - set(ids))} events lost"
    # What reached Kafka but was not yet marked published when the relay died is
    # sent again, and only that: at most one batch.
    assert dupes == on_kafka_at_kill - published_at_kill
    assert dupes <= RELAY_BATCH
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
        f"\nrelay kill: {published_at_kill} marked published and {on_kafka_at_kill} on Kafka"
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
        Envelope.wrap(model(counter=counters[i % len(counters)], amount=1), key=counters[i % 30])
        for i in range(EVENTS)
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

    first = processes.start("tests.integration.procs.consumer_proc", *args, name="consumer-1")

    async def some_applied() -> bool:
        assert first.poll() is None, processes.log("consumer-1")
        return await applied() >= EVENTS // 5

    await wait_until(some_applied, limit=60, interval=0.01, what="the consumer to apply some")
    await processes.kill(first)
    await asyncio.sleep(0.5)
    applied_at_kill = await applied()
    committed_at_kill = sum((await committed_offsets(kafka_admin, group, topics.events)).values())
    assert 0 < applied_at_kill < EVENTS, "the kill did not land mid-run"

    second = processes.start("tests.integration.procs.consumer_proc", *args, name="consumer-2")

    async def all_committed() -> bool:
        assert second.poll() is None, processes.log("consumer-2")
        committed = await committed_offsets(kafka_admin, group, topics.events)
        return sum(committed.values()) == records

    await wait_until(all_committed, limit=60, what="the restarted consumer to commit everything")

    expected = Counter(e.key for e in events)
    assert await projection(pool) == dict(expected)
    assert await pool.fetchval("SELECT count(*) FROM inbox") == EVENTS
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE outcome <> 'processed'") == 0
    print(
        f"\nconsumer kill: {applied_at_kill} applied and {committed_at_kill} offsets committed"
        f" at the kill; {records} records for {EVENTS} events, each applied once"
    )
