"""What the dashboard reads beyond the report, on the real broker and server: dead letters
(reporting's own `.dlq` reader) and notification outcomes (its projection of
`notification.events`), each change announced on the `dashboard` channel."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.reporting import dashboard_projection, dashboard_queries, deadletters, live
from services.reporting import projection as reporting_projection
from shared.contracts import registry
from shared.contracts.notification import Channel, NotificationFailed, NotificationSent
from shared.contracts.registration import BrokerageEventCreated, Session
from shared.db import migrate
from shared.envelope import Envelope
from shared.inbox import InboxConsumer, Subscription, combine
from shared.outbox import create_producer
from tests.integration.support import (
    FreshDatabase,
    FreshTopics,
    Infra,
    committed_offsets,
    send_envelope,
    wait_until,
)

pytestmark = pytest.mark.integration

REPORTING_MIGRATIONS = Path(deadletters.__file__).parent / "migrations"


@pytest.fixture
async def reporting_db(database: FreshDatabase) -> FreshDatabase:
    await migrate(database.pool, REPORTING_MIGRATIONS)
    return database


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    made = create_producer(infra.bootstrap_servers, client_id="dashboard-feeds-test")
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


@contextlib.asynccontextmanager
async def listening(dsn: str) -> AsyncIterator[list[str]]:
    """The payloads notified on the dashboard channel while inside."""
    heard: list[str] = []
    conn = await asyncpg.connect(dsn)
    await conn.add_listener(live.CHANNEL, lambda *args: heard.append(args[-1]))
    try:
        yield heard
    finally:
        await conn.close()


async def add_event(pool: asyncpg.Pool, event_id: str) -> None:
    await pool.execute(
        "INSERT INTO brokerage_events (event_id, organiser_id, name, venue, time_zone, days)"
        " VALUES ($1, 'o1', 'Feeds test', 'Here', 'Europe/Berlin', '[\"2026-05-04\"]')",
        event_id,
    )


async def test_dead_letters_are_stored_once_attributed_and_announced(
    infra: Infra,
    reporting_db: FreshDatabase,
    topics: FreshTopics,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    event_id = f"ev-{uuid.uuid4().hex}"
    await add_event(reporting_db.pool, event_id)
    # As `shared.inbox` dead-letters a message it gave up on...
    await producer.send_and_wait(
        topics.dlq,
        key=event_id.encode(),
        value=b'{"meeting_id": "m1"}',
        headers=[
            ("ce_type", b"eu.matchmaking.scheduling.SlotAssigned.v1"),
            ("dlq_error", b"KeyError: 'm1'"),
            ("dlq_error_type", b"KeyError"),
            ("dlq_consumer", b"reporting"),
            ("dlq_original_topic", b"scheduling.events"),
        ],
    )
    # ...and a record nobody could read: no key, no headers, not JSON.
    await producer.send_and_wait(topics.dlq, key=None, value=b"\xff\x00 not json")
    group = f"test-dead-letters-{uuid.uuid4().hex[:8]}"
    consumer = deadletters.DeadLetterConsumer(
        pool=reporting_db.pool,
        bootstrap_servers=infra.bootstrap_servers,
        group=group,
        topics=[topics.dlq],
    )
    async with listening(reporting_db.dsn) as heard:
        task = asyncio.create_task(consumer.run())
        try:

            async def stored() -> bool:
                found: int = await reporting_db.pool.fetchval("SELECT count(*) FROM dead_letters")
                return found == 2

            await wait_until(stored, limit=30, what="both dead letters stored")
            await wait_until(
                lambda: {event_id, live.EVERY_EVENT} <= set(heard), limit=10, what="notifies"
            )

            async def committed() -> bool:
                offsets = await committed_offsets(kafka_admin, group, topics.dlq)
                return offsets == {0: 2}

            await wait_until(committed, limit=10, what="offsets committed after the insert")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    shown = await dashboard_queries.load(reporting_db.pool, event_id)
    assert shown is not None
    letters = shown["dead_letters"]
    assert letters["event"]["count"] == 1
    assert letters["event"]["latest"][0]["consumer"] == "reporting"
    assert letters["event"]["latest"][0]["error_type"] == "KeyError"
    assert letters["platform"]["count"] == 1
    assert letters["platform"]["latest"][0]["event_type"] is None
    assert shown["totals"]["dead_letters"] == 1
    # Read again (a rebalance, a restart): nothing is stored twice.
    rows = await reporting_db.pool.fetch("SELECT * FROM dead_letters")
    async with reporting_db.pool.acquire() as conn:
        again = [deadletters.DeadLetter(**{k: r[k] for k in r.keys()}) for r in rows]
        assert await deadletters.store(conn, again) == 0


def notification(
    kind: type[NotificationSent | NotificationFailed],
    event_id: str,
    delivery: str,
    channel: Channel,
    what: str,
) -> Envelope:
    extra = {"message_id": f"<{delivery}@test>"} if kind is NotificationSent else {"reason": "550"}
    payload = kind(
        delivery_id=delivery,
        event_id=event_id,
        recipient_id="r1",
        channel=channel,
        kind=what,
        cause_id="/services/matching#x",
        attempts=1,
        **extra,
    )
    return Envelope.wrap(payload, key=event_id)


async def test_notification_outcomes_are_counted_per_delivery_and_announced(
    infra: Infra, reporting_db: FreshDatabase, topics: FreshTopics, producer: AIOKafkaProducer
) -> None:
    event_id = f"ev-{uuid.uuid4().hex}"
    created = BrokerageEventCreated(
        event_id=event_id,
        organiser_id="o1",
        name="Feeds test",
        venue="Here",
        time_zone="Europe/Berlin",
        days=[date(2026, 5, 4)],
        sessions=[Session(start=time(9, 0), end=time(10, 0))],
        slot_minutes=20,
        tables=4,
        meeting_types=[],
        registration_deadline=datetime(2026, 5, 1, tzinfo=UTC),
    )
    sent = [
        Envelope.wrap(created, key=event_id),
        notification(NotificationSent, event_id, "d1", Channel.EMAIL, "meeting.placed"),
        # The same delivery reported again (a sender killed before its commit).
        notification(NotificationSent, event_id, "d1", Channel.EMAIL, "meeting.placed"),
        notification(NotificationSent, event_id, "d2", Channel.WEBHOOK, "meeting.placed"),
        notification(NotificationFailed, event_id, "d3", Channel.EMAIL, "application.approved"),
    ]
    handlers = live.notifying(combine(reporting_projection.HANDLERS, dashboard_projection.HANDLERS))
    consumer = InboxConsumer(
        name=f"test-reporting-{uuid.uuid4().hex[:8]}",
        dsn_pool=reporting_db.pool,
        bootstrap_servers=infra.bootstrap_servers,
        subscription=Subscription((topics.events,), handlers, registry()),
        dlq_producer=producer,
    )
    await consumer.start()
    async with listening(reporting_db.dsn) as heard:
        task = asyncio.create_task(consumer.run())
        try:
            for envelope in sent:
                await send_envelope(producer, topics.events, envelope)

            async def counted() -> bool:
                found: int = await reporting_db.pool.fetchval(
                    "SELECT count(*) FROM notification_outcomes WHERE event_id = $1", event_id
                )
                return found == 3

            await wait_until(counted, limit=30, what="three deliveries counted")
            await wait_until(lambda: event_id in heard, limit=10, what="the dashboard notified")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()
    shown = await dashboard_queries.load(reporting_db.pool, event_id)
    assert shown is not None
    counts = shown["notifications"]
    assert (counts["sent"], counts["failed"]) == (2, 1)
    assert counts["by_channel"] == [
        {"key": "email", "sent": 1, "failed": 1},
        {"key": "webhook", "sent": 1, "failed": 0},
    ]
    assert counts["by_kind"][0] == {"key": "meeting.placed", "sent": 2, "failed": 0}
    # The grid came with BrokerageEventCreated: three 20-minute slots, four tables.
    agenda = shown["agenda"]
    assert agenda["tables"] == [1, 2, 3, 4]
    assert [s["start"] for s in agenda["days"][0]["slots"]] == ["09:00", "09:20", "09:40"]
