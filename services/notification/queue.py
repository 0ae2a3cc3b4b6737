"""The delivery queue's SQL: rows in, due rows claimed, outcomes recorded with their events.

Rows are written in the consumer's inbox transaction (`enqueue`), so a domain
event's deliveries exist exactly when its inbox row does; the UNIQUE dedupe key
drops a repeat. The sender claims one due row at a time with
`FOR UPDATE SKIP LOCKED` and keeps that row lock while it sends: a second sender
skips the row, and if the process dies mid-send the lock goes with its
connection and the row is due again at once. The outcome (and its
NotificationSent/NotificationFailed event, through the event store and outbox)
commits in that same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter

from shared import eventstore, telemetry
from shared.contracts.notification import Channel, NotificationFailed, NotificationSent
from shared.db import advisory_lock_id

# Outcomes of delivery attempts, for the dashboards (counted as recorded; a
# transaction that then fails to commit is counted all the same).
OUTCOMES = Counter(
    "notification_deliveries",
    "Delivery attempts by outcome (sent, retry, failed, skipped)",
    ["channel", "kind", "outcome"],
)


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: str
    cause_id: str
    recipient: str
    channel: Channel
    template: str
    event_id: str
    meeting_id: str | None
    context: dict[str, Any]
    message_id: str
    digest: bool = False
    due: datetime | None = None  # None: now


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    cause_id: str
    recipient: str
    channel: Channel
    template: str
    event_id: str
    meeting_id: str | None
    context: dict[str, Any]
    message_id: str
    digest: bool
    attempts: int  # before this one
    next_attempt_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> Delivery:
        return cls(
            delivery_id=str(row["delivery_id"]),
            cause_id=row["cause_id"],
            recipient=row["recipient"],
            channel=Channel(row["channel"]),
            template=row["template"],
            event_id=row["event_id"],
            meeting_id=row["meeting_id"],
            context=json.loads(row["context"]),
            message_id=row["message_id"],
            digest=row["digest"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            created_at=row["created_at"],
        )


_COLUMNS = (
    "delivery_id, cause_id, recipient, channel, template, event_id, meeting_id, context,"
    " message_id, digest, attempts, next_attempt_at, created_at"
)


# Keys in a delivery's context (webhook bodies leave them out): the trace that
# caused it (W3C headers), so the sender's span joins that trace, and whether it
# is a timer (due later: a reminder, a digest), whose send starts a linked trace.
TRACE_KEY = "trace"
TIMER_KEY = "trace_timer"


def _with_trace(context: dict[str, Any], cause: dict[str, str], due: datetime | None) -> str:
    if not cause:
        return json.dumps(context)
    return json.dumps({**context, TRACE_KEY: cause, TIMER_KEY: due is not None})


async def enqueue(conn: asyncpg.Connection, rows: Sequence[NewDelivery]) -> None:
    if not rows:
        return
    cause = telemetry.current_context()
    await conn.executemany(
        "INSERT INTO deliveries (delivery_id, cause_id, recipient, channel, template, event_id,"
        " meeting_id, context, message_id, digest, next_attempt_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, coalesce($11, now()))"
        " ON CONFLICT (cause_id, recipient, channel, template) DO NOTHING",
        [
            (
                r.delivery_id,
                r.cause_id,
                r.recipient,
                r.channel.value,
                r.template,
                r.event_id,
                r.meeting_id,
                _with_trace(r.context, cause, r.due),
                r.message_id,
                r.digest,
                r.due,
            )
            for r in rows
        ],
    )


async def cancel_pending(
    conn: asyncpg.Connection, meeting_id: str, template: str, reason: str
) -> None:
    """Call off a meeting's timers still waiting (a moved or cancelled meeting's reminders)."""
    await conn.execute(
        "UPDATE deliveries SET status = 'cancelled', last_error = $3, updated_at = now()"
        " WHERE meeting_id = $1 AND template = $2 AND status = 'pending'",
        meeting_id,
        template,
        reason,
    )


async def claim(conn: asyncpg.Connection) -> Delivery | None:
    """Lock one due row (inside the caller's transaction) that no other sender holds."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    )
    return Delivery.of(row) if row else None


async def lock_digest(conn: asyncpg.Connection, first: Delivery) -> bool:
    """Whether this transaction may put `first`'s digest together (no other one is)."""
    key = advisory_lock_id(f"digest|{first.recipient}|{first.event_id}")
    locked: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
    return locked


async def claim_digest(conn: asyncpg.Connection, first: Delivery) -> list[Delivery]:
    """`first` and the recipient's other due digest rows, locked, oldest first.

    Under `lock_digest`. It waits for rows another sender holds: that sender
    claimed one, found the digest lock taken and lets go at once.
    """
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM deliveries"
        " WHERE status = 'pending' AND digest AND channel = 'email' AND recipient = $1"
        " AND event_id = $2 AND next_attempt_at <= now() AND delivery_id <> $3"
        " ORDER BY created_at FOR UPDATE",
        first.recipient,
        first.event_id,
        first.delivery_id,
    )
    return [first, *(Delivery.of(r) for r in rows)]


async def next_due(conn: asyncpg.Connection) -> datetime | None:
    due: datetime | None = await conn.fetchval(
        "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'"
    )
    return due


def _stream(d: Delivery) -> str:
    return f"delivery-{d.delivery_id}"


async def sent(conn: asyncpg.Connection, d: Delivery, message_id: str) -> None:
    OUTCOMES.labels(d.channel.value, d.template, "sent").inc()
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = now(),"
        " message_id = $2, last_error = NULL, updated_at = now() WHERE delivery_id = $1",
        d.delivery_id,
        message_id,
    )
    event = NotificationSent(
        delivery_id=d.delivery_id,
        event_id=d.event_id,
        recipient_id=d.recipient,
        channel=d.channel,
        kind=d.template,
        cause_id=d.cause_id,
        attempts=d.attempts + 1,
        message_id=message_id,
    )
    await _publish(conn, d, event)


async def retry(conn: asyncpg.Connection, d: Delivery, delay_seconds: float, error: str) -> None:
    OUTCOMES.labels(d.channel.value, d.template, "retry").inc()
    await conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_error = $2,"
        " next_attempt_at = now() + make_interval(secs => $3), updated_at = now()"
        " WHERE delivery_id = $1",
        d.delivery_id,
        error[:2000],
        delay_seconds,
    )


async def failed(conn: asyncpg.Connection, d: Delivery, reason: str) -> None:
    OUTCOMES.labels(d.channel.value, d.template, "failed").inc()
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = $2,"
        " updated_at = now() WHERE delivery_id = $1",
        d.delivery_id,
        reason[:2000],
    )
    event = NotificationFailed(
        delivery_id=d.delivery_id,
        event_id=d.event_id,
        recipient_id=d.recipient,
        channel=d.channel,
        kind=d.template,
        cause_id=d.cause_id,
        attempts=d.attempts + 1,
        reason=reason[:2000],
    )
    await _publish(conn, d, event)


async def skipped(conn: asyncpg.Connection, d: Delivery, reason: str) -> None:
    """Nothing was sent, on purpose (erased, unsubscribed, muted, stale reminder)."""
    OUTCOMES.labels(d.channel.value, d.template, "skipped").inc()
    await conn.execute(
        "UPDATE deliveries SET status = 'skipped', last_error = $2, updated_at = now()"
        " WHERE delivery_id = $1",
        d.delivery_id,
        reason,
    )


async def _publish(
    conn: asyncpg.Connection, d: Delivery, event: NotificationSent | NotificationFailed
) -> None:
    causation = d.cause_id.rsplit("#", 1)[-1]
    await eventstore.record(conn, _stream(d), 0, [event], key=d.event_id, causation_id=causation)
