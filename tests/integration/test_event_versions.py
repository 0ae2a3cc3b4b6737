"""A real schema change on a real topic: `MeetingRequested` v1 (plain-text message) and v2
(message with a proposed language) side by side; the consumer reads both as v2."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingRequested, MeetingRequestedV1, RequestMessage
from shared.contracts.registration import MeetingType
from shared.envelope import Envelope
from shared.inbox import InboxConsumer, Subscription
from shared.outbox import create_producer
from tests.integration.support import FreshDatabase, FreshTopics, Infra, send_envelope, wait_until

pytestmark = pytest.mark.integration


def _fields(request_id: str) -> dict[str, object]:
    return {
        "request_id": request_id,
        "event_id": "e1",
        "requester_id": "a",
        "recipient_id": "b",
        "meeting_type": MeetingType.CLUSTER2CLUSTER,
        "expires_at": datetime(2026, 12, 24, tzinfo=UTC),
    }


async def test_a_topic_holding_both_versions_is_read_as_the_newest(
    infra: Infra, database: FreshDatabase, topics: FreshTopics
) -> None:
    seen: dict[str, MeetingRequested] = {}

    async def handler(conn: asyncpg.Connection, env: Envelope, payload: EventPayload) -> None:
        assert isinstance(payload, MeetingRequested)
        seen[payload.request_id] = payload

    old = MeetingRequestedV1(**_fields("r-old"), message="Guten Tag")  # type: ignore[arg-type]
    new = MeetingRequested(
        **_fields("r-new"),  # type: ignore[arg-type]
        message=RequestMessage(text="Bonjour", language="fr"),
    )
    quiet = MeetingRequestedV1(**_fields("r-quiet"))  # type: ignore[arg-type]
    assert old.ce_type().endswith(".v1") and new.ce_type().endswith(".v2")
    producer = create_producer(infra.bootstrap_servers, client_id="versions-test")
    await producer.start()
    consumer = InboxConsumer(
        name=f"versions-{uuid.uuid4().hex[:8]}",
        dsn_pool=database.pool,
        bootstrap_servers=infra.bootstrap_servers,
        # The service's own registry: v1 is known only through its upcaster.
        subscription=Subscription((topics.events,), {new.ce_type(): handler}, registry()),
        dlq_producer=producer,
        max_attempts=1,
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        for payload in (old, new, quiet):
            await send_envelope(producer, topics.events, Envelope.wrap(payload, key="e1"))

        async def all_read() -> bool:
            return len(seen) == 3

        await wait_until(all_read, limit=30, what="the three requests to be consumed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    assert seen["r-old"].message == RequestMessage(text="Guten Tag", language=None)
    assert seen["r-new"].message == RequestMessage(text="Bonjour", language="fr")
    assert seen["r-quiet"].message is None
