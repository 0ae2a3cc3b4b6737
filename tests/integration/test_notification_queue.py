"""The delivery queue's write (`queue.enqueue`): a run's deliveries in one statement, each
still a `NotificationQueued` event in its own stream, kept in the event store and not
published (no outbox row: `NotificationQueued.published`), and the rows
the live queue writes equal to those the rebuild folds from the same events (real
PostgreSQL, two schemas of one fresh database).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.notification import domain
from services.notification.domain import Kind, Notice
from services.notification.ledger import OWN
from services.notification.queue import NewDelivery, Writer, enqueue_caused
from shared import json_codec
from shared.contracts import registry
from shared.contracts.notification import Channel, NotificationQueued
from shared.contracts.registration import RegistrationApproved
from shared.envelope import Envelope
from shared.eventstore import ConcurrencyConflict
from shared.outbox import MARK_AND_READ
from tests.integration.support import Infra, fresh_databases, schema_pool

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "notification" / "migrations"
MAIL = "example.test"
# Every column of a delivery row that its `NotificationQueued` decides (`next_attempt_at`
# only where the event names a time: otherwise the clock's).
DECIDED = (
    "delivery_id, cause_id, recipient, channel, template, event_id, meeting_id, context,"
    " message_id, digest, status, attempts, last_error, urgent,"
    " CASE WHEN digest OR template = 'meeting.reminder' THEN next_attempt_at END AS due"
)


@pytest.fixture
async def database(infra: Infra) -> AsyncIterator[str]:
    name = f"test_queue_{datetime.now():%H%M%S%f}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        yield dsns[name]


def _cause(traced: bool) -> Envelope:
    envelope = Envelope.wrap(
        RegistrationApproved(event_id="ev", registration_id=str(uuid.uuid4())),
        key="ev",
        correlation_id=str(uuid.uuid4()),
    )
    if traced:
        return envelope.with_trace(f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01", "k=v")
    return envelope


def _delivery(
    cause: Envelope,
    recipient: str,
    kind: Kind,
    channel: Channel = Channel.EMAIL,
    *,
    meeting_id: str | None = None,
    due: datetime | None = None,
    digest: bool = False,
) -> NewDelivery:
    cause_id = f"{cause.source}#{cause.id}"
    key = domain.dedupe_key(cause_id, recipient, channel, kind)
    notice = Notice(kind, "ev", (recipient,), {"registration_id": recipient, "n": 1}, meeting_id)
    context = notice.webhook_context() if channel is Channel.WEBHOOK else notice.context()
    return NewDelivery(
        delivery_id=domain.delivery_id(key),
        cause_id=cause_id,
        recipient=recipient,
        channel=channel,
        template=kind.value,
        event_id="ev",
        meeting_id=meeting_id,
        context=context,
        message_id=domain.message_id(key, MAIL),
        digest=digest,
        due=due,
    )


def _run() -> list[tuple[NewDelivery, Envelope | None]]:
    """A run of several causes: immediate, urgent, digest, reminder and webhook rows."""
    traced, plain = _cause(True), _cause(False)
    later = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    meeting = str(uuid.uuid4())
    return [
        (_delivery(plain, "r1", Kind.APPLICATION_APPROVED), plain),
        (_delivery(plain, "r2", Kind.MEETING_PLACED, meeting_id=meeting), plain),
        (_delivery(traced, "r3", Kind.REQUEST_RECEIVED, due=later, digest=True), traced),
        (_delivery(traced, "r3", Kind.MEETING_REMINDER, meeting_id=meeting, due=later), traced),
        (_delivery(traced, str(uuid.uuid4()), Kind.MEETING_PLACED, Channel.WEBHOOK), traced),
        (_delivery(plain, "r4", Kind.APPLICATION_APPROVED), None),
    ]


async def test_a_run_is_queued_in_one_statement_and_replays_to_the_same_rows(
    database: str,
) -> None:
    live = await schema_pool(database, "live", MIGRATIONS)
    replayed = await schema_pool(database, "replayed", MIGRATIONS)
    statements: list[str] = []
    run = _run()
    try:
        async with live.acquire() as conn:
            conn.add_query_logger(lambda q: statements.append(q.query))
            async with conn.transaction():
                await enqueue_caused(conn, run)
        # One round trip for the deliveries and their events (it was three: the known ids,
        # the events with their outbox rows, the deliveries).
        written = [s for s in statements if re.search(r"\b(deliveries|events|outbox)\b", s)]
        assert len(written) == 1, written

        async with live.acquire() as conn:
            events = await conn.fetch(
                "SELECT stream_id, version, event_id, event_type, data, metadata FROM events"
            )
            outbox = await conn.fetch("SELECT event_id FROM outbox")
            # What the relay would read: nothing, the decisions are not published.
            relayed = await conn.fetch(MARK_AND_READ, [], 100)
        assert outbox == [] and relayed == []
        assert len(events) == len(run)
        payloads = registry()
        by_stream = {e["stream_id"]: e for e in events}
        for delivery, cause in run:
            stored = by_stream[f"delivery-{delivery.delivery_id}"]
            assert stored["version"] == 1
            # The envelope as the event store gives it back (`Envelope.to_record`).
            envelope = Envelope.from_record(
                {**json_codec.loads(stored["metadata"]), "data": json_codec.loads(stored["data"])}
            )
            assert envelope.id == str(stored["event_id"])
            assert envelope.type == stored["event_type"] == NotificationQueued.ce_type()
            assert envelope.subject == stored["stream_id"]
            assert envelope.causation_id == (cause.id if cause else None)
            assert envelope.correlation_id == (cause.correlation_id if cause else None)
            assert envelope.traceparent == (cause.traceparent if cause else None)
            event = payloads.parse(envelope.type, envelope.data)
            assert isinstance(event, NotificationQueued)
            assert (event.delivery_id, event.recipient_id, event.kind, event.due) == (
                delivery.delivery_id,
                delivery.recipient,
                delivery.template,
                delivery.due,
            )

        # The rebuild's fold of those events (`ledger._queued`, one at a time) writes the
        # same rows.
        async with replayed.acquire() as conn, conn.transaction():
            for row in events:
                await OWN.apply(
                    conn, payloads.parse(row["event_type"], json_codec.loads(row["data"]))
                )
        async with live.acquire() as conn:
            mine = await conn.fetch(f"SELECT {DECIDED} FROM live.deliveries ORDER BY 1")
            folded = await conn.fetch(f"SELECT {DECIDED} FROM replayed.deliveries ORDER BY 1")
        assert [dict(r) for r in mine] == [dict(r) for r in folded]
        assert sum(r["urgent"] for r in mine) == 3  # placed (e-mail, webhook), reminder
        assert {r["due"] for r in mine} == {None, datetime(2031, 5, 6, 7, 8, 9, 123456, UTC)}
    finally:
        await live.close()
        await replayed.close()


async def test_a_decided_dedupe_key_is_not_queued_again(database: str) -> None:
    pool = await schema_pool(database, "live", MIGRATIONS)
    run = _run()
    cause = _cause(False)
    fresh = (
        _delivery(cause, "r9", Kind.REQUEST_DECLINED, due=datetime.now(UTC) + timedelta(1)),
        cause,
    )
    try:
        async with pool.acquire() as conn:
            await enqueue_caused(conn, run[:3])
            # Again with more, and a row twice within the run: only the new ones count.
            await enqueue_caused(conn, [*run, run[4], fresh])
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM deliveries) AS deliveries,"
                " (SELECT count(*) FROM events) AS events,"
                " (SELECT count(*) FROM outbox) AS outbox,"
                " (SELECT count(DISTINCT stream_id) FROM events) AS streams"
            )
        # (No outbox rows: the decisions are not published.)
        assert dict(counts) == {"deliveries": 7, "events": 7, "outbox": 0, "streams": 7}
    finally:
        await pool.close()


async def test_a_stream_without_its_row_fails_the_chunk_as_a_conflict(database: str) -> None:
    """A chunk's statement fails while the next chunk is being made: the error comes out of
    the writer (as `append_new_streams`' conflict), nothing of the chunk is stored, and the
    connection is free again."""
    pool = await schema_pool(database, "live", MIGRATIONS)
    run = _run()
    taken = run[2][0]
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO events (stream_id, version, event_id, event_type, data, metadata)"
                " VALUES ($1, 1, $2, 'x', '{}', '{}')",
                f"delivery-{taken.delivery_id}",
                str(uuid.uuid4()),
            )
            with pytest.raises(ConcurrencyConflict):
                async with conn.transaction(), Writer(conn) as writer:
                    writer.chunk = 2
                    await writer.enqueue(run)
            assert await conn.fetchval("SELECT count(*) FROM deliveries") == 0
            await enqueue_caused(conn, [run[0]])  # the connection works on
            assert await conn.fetchval("SELECT count(*) FROM deliveries") == 1
    finally:
        await pool.close()
