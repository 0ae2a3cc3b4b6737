"""The delivery queue: decisions and outcomes recorded as events, due rows claimed.

A decision to send (`enqueue`) is a `NotificationQueued` event in the delivery's own
stream, recorded in the consumer's inbox transaction and projected into its
`deliveries` row (`ledger`): a domain event's deliveries exist exactly when its inbox
row does, and a dedupe key decided before is not decided again; the event stays in this
service's store (no other service acts on it: `NotificationQueued.published`). A run's
decisions go in a statement per chunk (rows and events), the next chunk made while the
server writes one (`Writer`). The sender claims a
few due rows at a time (`claim`) with `FOR UPDATE SKIP LOCKED` and keeps those row
locks while it sends: a second sender skips the rows, and if the process dies mid-send
the locks go with its connection and the rows are due again at once. Each attempt's
result (sent, attempt failed, failed, skipped) is an event in the delivery's stream,
recorded and projected in that same transaction, the batch's together (`Outcomes`);
the row lock is the work-table part.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import asyncpg
import orjson
from prometheus_client import Counter
from pydantic import TypeAdapter

from services.notification import ledger
from services.notification.domain import IMMEDIATE_KINDS
from services.notification.ledger import OWN, delivery_stream
from shared import eventstore, json_codec, outbox, telemetry
from shared.batching import apply_run
from shared.contracts.base import EventPayload
from shared.contracts.notification import (
    Channel,
    NotificationAttemptFailed,
    NotificationCancelled,
    NotificationFailed,
    NotificationQueued,
    NotificationSent,
    NotificationSkipped,
)
from shared.db import advisory_lock_id
from shared.envelope import ACTOR, Envelope

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

    def webhook_body(self) -> bytes:
        """The JSON posted for a webhook delivery: the same bytes on every attempt."""
        ctx = self.context
        data = {
            "event_id": ctx["event_id"],
            "meeting_id": ctx.get("meeting_id"),
            "recipients": ctx.get("recipients", []),
            **ctx.get("facts", {}),
        }
        if ctx.get("calendar"):
            data["calendar"] = ctx["calendar"]
        payload = {"type": self.template, "timestamp": ctx.get("occurred_at"), "data": data}
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


_COLUMNS = (
    "delivery_id, cause_id, recipient, channel, template, event_id, meeting_id, context,"
    " message_id, digest, attempts, next_attempt_at, created_at"
)


# Keys in a delivery's context (webhook bodies leave them out): the trace that
# caused it (W3C headers), so the sender's span joins that trace, and whether it
# is a timer (due later: a reminder, a digest), whose send starts a linked trace.
TRACE_KEY = "trace"
TIMER_KEY = "trace_timer"


def _with_trace(
    context: dict[str, Any], cause: dict[str, str], due: datetime | None
) -> dict[str, Any]:
    if not cause:
        return context
    return {**context, TRACE_KEY: cause, TIMER_KEY: due is not None}


def _trace_of(cause: Envelope | None, current: dict[str, str]) -> dict[str, str]:
    """The trace a delivery's send rejoins: the current span's when it belongs to the
    cause's trace (an event handled on its own, inside its span), else the cause's own
    (a run of events is handled outside their spans)."""
    if cause is None or cause.traceparent is None:
        return current
    if current.get("traceparent", "").split("-")[1:2] == cause.traceparent.split("-")[1:2]:
        return current
    found = {"traceparent": cause.traceparent}
    if cause.tracestate:
        found["tracestate"] = cause.tracestate
    return found


async def enqueue(
    conn: asyncpg.Connection, rows: Sequence[NewDelivery], cause: Envelope | None = None
) -> None:
    """Record the decision to send each row's message (`NotificationQueued`, projected
    into its delivery row); a row whose dedupe key was decided before is dropped.
    `cause`: the consumed event that led to them (their causation and correlation)."""
    await enqueue_caused(conn, [(r, cause) for r in rows])


async def enqueue_caused(
    conn: asyncpg.Connection, rows: Sequence[tuple[NewDelivery, Envelope | None]]
) -> None:
    """`enqueue` for rows of several causes (a run of consumed events), each row with
    its own: a statement per chunk for their rows and events (`Writer`)."""
    if not rows:
        return
    if conn.is_in_transaction():  # the consumer's
        await _enqueue(conn, rows)
    else:
        async with conn.transaction():
            await _enqueue(conn, rows)


# Every new delivery's rows in one statement, from two arrays of JSON (each
# `NotificationQueued` payload and its envelope's metadata) and the events' ids: the
# delivery row first (`ledger.QUEUED_ROWS`: a dedupe key decided before, or by a
# transaction that commits first, stores nothing), then, for the rows stored, the event
# (version 1 of the delivery's stream). No outbox row: the event is not published
# (`NotificationQueued.published`).
_QUEUE = (
    "WITH queued AS (SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::jsonb[])"
    " WITH ORDINALITY AS q (id, data, metadata, n)),"
    " new AS ("
    + ledger.QUEUED_ROWS.format(source="queued", urgent="$5")
    + " ORDER BY n ON CONFLICT DO NOTHING RETURNING delivery_id),"
    " stored AS (SELECT * FROM queued WHERE (data->>'delivery_id')::uuid IN"
    " (SELECT delivery_id FROM new))"
    " INSERT INTO events (stream_id, version, event_id, event_type, data, metadata)"
    " SELECT 'delivery-' || (data->>'delivery_id'), 1, id, $4, data, metadata FROM stored"
)
_URGENT = sorted(k.value for k in IMMEDIATE_KINDS)


def _arguments(rows: Sequence[tuple[NewDelivery, Envelope | None]]) -> tuple[object, ...]:
    """`_QUEUE`'s arguments for `rows` (without repeats of a delivery id)."""
    current = telemetry.current_context()
    actor = ACTOR.get()
    time = datetime.now(UTC).isoformat()
    fresh = _random_ids(len(rows))
    ids: list[str] = []
    payloads: list[str] = []
    metadata: list[str] = []
    for r, cause in rows:
        trace = _trace_of(cause, current)
        event_id = next(fresh)
        ids.append(event_id)
        payloads.append(queued_payload(r, _with_trace(r.context, trace, r.due)))
        # What `Envelope.wrap(...).with_trace(...)` would store beside the payload
        # (`Envelope.to_record` without `data`).
        metadata.append(
            json_codec.dumps(
                {
                    "id": event_id,
                    "source": _SOURCE,
                    "type": _QUEUED_TYPE,
                    "key": r.event_id,
                    "time": time,
                    "subject": delivery_stream(r.delivery_id),
                    "correlation_id": (cause.correlation_id or cause.id) if cause else None,
                    "causation_id": cause.id if cause else None,
                    "traceparent": trace.get("traceparent"),
                    "tracestate": trace.get("tracestate"),
                    "actor": actor,
                }
            )
        )
    return (ids, payloads, metadata, _QUEUED_TYPE, _URGENT)


def queued_payload(r: NewDelivery, context: dict[str, Any]) -> str:
    """`r`'s `NotificationQueued` payload (with `context`) as JSON: the value
    `model_dump_json` writes, without making and validating the model for every delivery
    (a third of the queue's Python). What orjson would write otherwise than pydantic (a
    datetime or a dataclass in a context, a number beyond 64 bits) goes through the model."""
    fields: dict[str, Any] = {
        "delivery_id": r.delivery_id,
        "event_id": r.event_id,
        "recipient_id": r.recipient,
        "channel": r.channel,
        "kind": r.template,
        "cause_id": r.cause_id,
        "meeting_id": r.meeting_id,
        "context": context,
        "message_id": r.message_id,
        "digest": r.digest,
        "due": r.due,
    }
    try:
        return orjson.dumps(
            {**fields, "due": None if r.due is None else _DUE.dump_python(r.due, mode="json")},
            option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS,
            default=_refuse,
        ).decode()
    except orjson.JSONEncodeError:
        return NotificationQueued.model_validate(fields).model_dump_json()


# A datetime as pydantic writes it (`Z` for UTC, where `isoformat` and orjson write +00:00).
_DUE: TypeAdapter[datetime] = TypeAdapter(datetime)


def _refuse(value: object) -> NoReturn:
    raise TypeError(type(value).__name__)


async def _enqueue(
    conn: asyncpg.Connection, rows: Sequence[tuple[NewDelivery, Envelope | None]]
) -> None:
    async with Writer(conn) as writer:
        await writer.enqueue(rows)


async def _queue(conn: asyncpg.Connection, arguments: tuple[object, ...]) -> None:
    try:
        await conn.execute(_QUEUE, *arguments)
    except asyncpg.UniqueViolationError as exc:
        # A delivery's stream without its row (never written so): as `append_new_streams`.
        raise eventstore.ConcurrencyConflict("(one of many new streams)", 0) from exc


# Deliveries per `_QUEUE` statement of a `Writer`: the next chunk is made while the server
# writes this one.
CHUNK = 500


class Writer:
    """Queues a run's deliveries a chunk at a time, each chunk's statement in flight while
    the caller makes the next one (its notices, rows, payloads: Python's work overlaps the
    server's). Statements still go one after the other, in order, on the caller's
    connection: before any other statement the caller awaits `settled`. Use as an async
    context manager, which settles (and on an error, waits for the statement in flight
    before the connection is used or released)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.chunk = CHUNK
        self._in_flight: asyncio.Task[None] | None = None
        self._seen: set[str] = set()

    @property
    def connection(self) -> asyncpg.Connection:
        """The caller's connection: await `settled` before using it."""
        return self._conn

    async def __aenter__(self) -> Writer:
        return self

    async def __aexit__(self, kind: object, error: object, trace: object) -> None:
        if error is None:
            await self.settled()
        elif self._in_flight is not None:
            await asyncio.gather(self._in_flight, return_exceptions=True)
            self._in_flight = None

    async def settled(self) -> None:
        """The statement in flight done (its error raised here)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def enqueue(self, rows: Sequence[tuple[NewDelivery, Envelope | None]]) -> None:
        """Queue `rows` (the first of a repeated delivery id in this writer counts: its key
        is decided by it), a statement per `CHUNK`, the last one left in flight."""
        fresh: dict[str, tuple[NewDelivery, Envelope | None]] = {}
        for r, cause in rows:
            if r.delivery_id not in self._seen:
                self._seen.add(r.delivery_id)
                fresh[r.delivery_id] = (r, cause)
        unique = list(fresh.values())
        for start in range(0, len(unique), self.chunk):
            arguments = _arguments(unique[start : start + self.chunk])
            await self.settled()
            self._in_flight = asyncio.ensure_future(_queue(self._conn, arguments))
            # Let it send its statement now: the caller's next work overlaps the server's.
            await asyncio.sleep(0)


def _random_ids(count: int) -> Iterator[str]:
    """`count` random (version 4) UUIDs as text, from one read of the system's random
    source: `uuid.uuid4()` reads it once per id, a system call each."""
    random = bytearray(os.urandom(16 * count))
    for start in range(0, 16 * count, 16):
        # RFC 9562: version 4 in the high nibble of byte 6, the variant (10) in byte 8.
        random[start + 6] = (random[start + 6] & 0x0F) | 0x40
        random[start + 8] = (random[start + 8] & 0x3F) | 0x80
        text = random[start : start + 16].hex()
        yield f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_SOURCE = f"/services/{NotificationQueued.producer}"
_QUEUED_TYPE = NotificationQueued.ce_type()


async def _project(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await OWN.apply(conn, event)


async def cancel_pending(
    conn: asyncpg.Connection, meeting_id: str, template: str, reason: str
) -> None:
    """Call off a meeting's timers still waiting (a moved or cancelled meeting's reminders)."""
    await cancel_pending_many(conn, {meeting_id: reason}, template)


async def cancel_pending_many(
    conn: asyncpg.Connection, reasons: Mapping[str, str], template: str
) -> None:
    """`cancel_pending` for several meetings (meeting id -> reason) in one read."""
    if not reasons:
        return
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM deliveries"
        " WHERE meeting_id = ANY($1::text[]) AND template = $2 AND status = 'pending'"
        " ORDER BY delivery_id FOR UPDATE",
        list(reasons),
        template,
    )
    cancelled = Outcomes()
    for d in map(Delivery.of, rows):
        assert d.meeting_id is not None
        cancelled.cancelled(d, reasons[d.meeting_id])
    await cancelled.record(conn)


async def claim(conn: asyncpg.Connection, limit: int = 1) -> list[Delivery]:
    """Lock due rows (inside the caller's transaction) that no other sender holds, urgent
    ones first (`domain.urgent`), then oldest first: up to `limit` of them, or a digest
    row alone.

    A digest row comes alone because putting its digest together waits for the
    recipient's other digest rows (`claim_digest`): two senders each holding one
    recipient's rows and waiting for the other's would deadlock.
    """
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY urgent DESC, next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    )
    if row is None:
        return []
    first = Delivery.of(row)
    if first.digest or limit <= 1:
        return [first]
    more = await conn.fetch(
        f"SELECT {_COLUMNS} FROM deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= now() AND NOT digest"
        " AND delivery_id <> $1"
        " ORDER BY urgent DESC, next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        row["delivery_id"],
        limit - 1,
    )
    return [first, *map(Delivery.of, more)]


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


def _about(d: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": d.delivery_id,
        "event_id": d.event_id,
        "recipient_id": d.recipient,
        "channel": d.channel,
        "kind": d.template,
        "cause_id": d.cause_id,
    }


class Outcomes:
    """A batch's attempt results, recorded together when the batch is done (`record`):
    one statement for their streams' versions, one for the events and their outbox
    rows, one prepared statement per kind of delivery-row update. Each event is wrapped
    (and takes its trace context) when decided, inside the attempt's span."""

    def __init__(self) -> None:
        self._decided: list[tuple[Delivery, Envelope, EventPayload]] = []

    def __len__(self) -> int:
        return len(self._decided)

    def forget_from(self, position: int) -> None:
        """Drop what was decided from `position` on (an attempt that then failed)."""
        del self._decided[position:]

    def sent(self, d: Delivery, message_id: str) -> None:
        OUTCOMES.labels(d.channel.value, d.template, "sent").inc()
        self._add(d, NotificationSent(**_about(d), attempts=d.attempts + 1, message_id=message_id))

    def retry(self, d: Delivery, delay_seconds: float, error: str) -> None:
        OUTCOMES.labels(d.channel.value, d.template, "retry").inc()
        event = NotificationAttemptFailed(
            **_about(d),
            attempts=d.attempts + 1,
            reason=error[:2000],
            retry_at=datetime.now(UTC) + timedelta(seconds=delay_seconds),
        )
        self._add(d, event)

    def failed(self, d: Delivery, reason: str) -> None:
        OUTCOMES.labels(d.channel.value, d.template, "failed").inc()
        self._add(d, NotificationFailed(**_about(d), attempts=d.attempts + 1, reason=reason[:2000]))

    def skipped(self, d: Delivery, reason: str) -> None:
        """Nothing was sent, on purpose (erased, unsubscribed, muted, stale reminder)."""
        OUTCOMES.labels(d.channel.value, d.template, "skipped").inc()
        self._add(d, NotificationSkipped(**_about(d), reason=reason))

    def cancelled(self, d: Delivery, reason: str) -> None:
        """Called off before it was due (a moved or cancelled meeting's reminder)."""
        self._add(d, NotificationCancelled(**_about(d), reason=reason))

    def _add(self, d: Delivery, event: EventPayload) -> None:
        self._decided.append((d, _envelope(d, event), event))

    async def record(self, conn: asyncpg.Connection) -> None:
        """Append each to its delivery's stream and project it: the caller holds every
        row's lock, so no other transaction appends to these streams meanwhile."""
        if not self._decided:
            return
        await eventstore.append_to_streams(
            conn, [(delivery_stream(d.delivery_id), [env]) for d, env, _ in self._decided]
        )
        await apply_run(conn, _project, [(env, event) for _, env, event in self._decided])
        self._decided.clear()


def _envelope(d: Delivery, event: EventPayload) -> Envelope:
    return outbox.stamp_trace(
        Envelope.wrap(
            event,
            key=d.event_id,
            subject=delivery_stream(d.delivery_id),
            causation_id=d.cause_id.rsplit("#", 1)[-1],
        )
    )
