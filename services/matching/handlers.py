"""Matching's command handlers: lock, load, decide (domain), append + project in one transaction.

Each handler runs on a connection already inside a transaction (see
`shared.idempotency.run_once`), so events, outbox rows, projection rows and the
idempotency record commit together.

Serialisation. Every command that can create, accept or re-open a meeting
first takes a transaction-scoped advisory lock per participant concerned, in
sorted order (so two commands on overlapping pairs never deadlock), then locks
the request's projection row. Under those locks the counts of accepted meetings
and the open request between the pair are read fresh (READ COMMITTED: each
statement sees what earlier lock holders committed), so the cap and the
one-open-request-per-pair rule hold however many accepts arrive at once. The
expiry sweeper only takes row locks, with SKIP LOCKED, and never waits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.matching import domain, projection
from services.matching.domain import Actor, Decision, EventRules, MeetingRequest, Participant
from shared import eventstore
from shared.auth import Principal
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.matching import CancelledBy, TimePreference
from shared.contracts.registration import (
    Attendance,
    MeetingType,
    OrganisationType,
    RegistrationRejected,
    RegistrationWithdrawn,
)
from shared.db import advisory_lock_id
from shared.envelope import ACTOR, Envelope
from shared.errors import Conflict, Forbidden, NotFound, RuleViolation
from shared.inbox import Handler

PAYLOADS = registry()
SYSTEM_ID = "matching"


def stream_of(request_id: str) -> str:
    return f"meeting-request-{request_id}"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


async def record(
    conn: asyncpg.Connection,
    decision: Decision,
    *,
    event_id: str,
    correlation_id: str | None,
    causation_id: str | None = None,
) -> None:
    try:
        await eventstore.record(
            conn,
            stream_of(decision.request_id),
            decision.expected_version,
            decision.events,
            key=event_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            project=projection.apply,
        )
    except eventstore.ConcurrencyConflict as exc:
        # Not expected under the locks below; a clear 409 rather than a 500 if it happens.
        raise Conflict("request_id", "the request changed meanwhile; try again") from exc


# -- loading ----------------------------------------------------------------------


async def load_request(conn: asyncpg.Connection, request_id: str) -> MeetingRequest:
    request = await eventstore.load_into(conn, stream_of(request_id), PAYLOADS, MeetingRequest())
    if not request.version:
        raise NotFound("meeting request", request_id)
    return request


async def load_event(conn: asyncpg.Connection, event_id: str) -> EventRules:
    row = await conn.fetchrow("SELECT * FROM brokerage_events WHERE event_id = $1", event_id)
    if row is None:
        raise NotFound("brokerage event", event_id)
    return EventRules(
        event_id=row["event_id"],
        organiser_id=row["organiser_id"],
        meeting_types=frozenset(MeetingType(t) for t in row["meeting_types"]),
        max_meetings_per_participant=row["max_meetings_per_participant"],
        request_expiry_hours=row["request_expiry_hours"],
    )


def _participant_of(row: asyncpg.Record) -> Participant:
    return Participant(
        registration_id=row["registration_id"],
        event_id=row["event_id"],
        name=row["name"],
        organisation_type=OrganisationType(row["organisation_type"]),
        attendance=Attendance(row["attendance"]),
        status=row["status"],
    )


async def _pair(
    conn: asyncpg.Connection, first: tuple[str, str], second: tuple[str, str]
) -> tuple[Participant, Participant]:
    """Both sides of a meeting, each (registration id, the field that named it), in one
    statement; a side nobody knows is a `RuleViolation` of its field."""
    rows = await conn.fetch(
        "SELECT registration_id, event_id, name, organisation_type, attendance, status"
        " FROM participants WHERE registration_id = ANY($1::text[])",
        [first[0], second[0]],
    )
    found = {row["registration_id"]: _participant_of(row) for row in rows}
    for registration_id, field in (first, second):
        if registration_id not in found:
            raise RuleViolation(field, f"no participant {registration_id} is known")
    return found[first[0]], found[second[0]]


async def lock_participants(conn: asyncpg.Connection, ids: Sequence[str]) -> None:
    """Serialise commands per participant, in sorted order (commands never deadlock).

    The consumer also takes one participant's lock per departure it handles, in
    event order, across a batch; should that ever close a cycle with a command,
    PostgreSQL aborts one side: a command then answers 409 (try again), a batch
    is retried by the inbox.
    """
    try:
        # One statement; a function scan yields the array's elements in order, so
        # the locks are taken in the sorted order as before.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
            [advisory_lock_id(f"matching-participant:{ident}") for ident in sorted(set(ids))],
        )
    except asyncpg.DeadlockDetectedError as exc:
        raise Conflict("participants", "a concurrent change got in the way; try again") from exc


async def accepted_counts(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, int]:
    """Accepted meetings per participant (read under the participants' locks)."""
    rows = await conn.fetch(
        "SELECT p.id, count(m.request_id) AS n FROM unnest($1::text[]) AS p(id)"
        " LEFT JOIN meeting_requests m ON m.status = $2"
        " AND (m.requester_id = p.id OR m.recipient_id = p.id) GROUP BY p.id",
        list(ids),
        domain.Status.ACCEPTED.value,
    )
    return {r["id"]: int(r["n"]) for r in rows}


async def _open_between(
    conn: asyncpg.Connection, event_id: str, a: str, b: str
) -> MeetingRequest | None:
    request_id = await conn.fetchval(
        "SELECT request_id FROM meeting_requests WHERE event_id = $1"
        " AND least(requester_id, recipient_id) = least($2::text, $3::text)"
        " AND greatest(requester_id, recipient_id) = greatest($2::text, $3::text)"
        f" AND status IN {domain.OPEN_STATUSES_SQL} FOR UPDATE",
        event_id,
        a,
        b,
    )
    return None if request_id is None else await load_request(conn, request_id)


async def _expire_if_due(
    conn: asyncpg.Connection,
    request: MeetingRequest | None,
    now: datetime,
    correlation_id: str | None,
) -> MeetingRequest | None:
    """A due request expires now rather than block the pair until the next sweep."""
    if request is None:
        return None
    expired = domain.expire(request, now)
    if expired is None:
        return request
    await record(
        conn,
        Decision(request.request_id, request.version, [expired]),
        event_id=request.event_id,
        correlation_id=correlation_id,
    )
    return None


async def _lock_request(conn: asyncpg.Connection, request_id: str) -> MeetingRequest:
    """Take the request's participants' locks, then its row lock; return it fresh."""
    parties = await conn.fetchrow(
        "SELECT requester_id, recipient_id FROM meeting_requests WHERE request_id = $1",
        request_id,
    )
    if parties is None:
        raise NotFound("meeting request", request_id)
    await lock_participants(conn, [parties["requester_id"], parties["recipient_id"]])
    await conn.execute(
        "SELECT 1 FROM meeting_requests WHERE request_id = $1 FOR UPDATE", request_id
    )
    return await load_request(conn, request_id)


async def view(conn: asyncpg.Connection, request_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM meeting_requests WHERE request_id = $1", request_id)
    if row is None:
        raise NotFound("meeting request", request_id)
    return as_view(row)


def as_view(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    if out.get("time_preference") is not None:
        out["time_preference"] = json.loads(out["time_preference"])
    for name in ("expires_at", "created_at", "updated_at"):
        if out.get(name) is not None:
            out[name] = out[name].isoformat()
    return out


def _as_participant(principal: Principal) -> str:
    return principal.id if principal.role == "organisation" else ""


# -- commands -----------------------------------------------------------------------


async def request_meeting(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    recipient_id: str,
    message: str | None,
    correlation_id: str | None,
    now: datetime | None = None,
    language: str | None = None,
    time_preference: TimePreference | None = None,
) -> dict[str, Any]:
    if principal.role != "organisation":
        raise Forbidden("only a participating organisation requests meetings, with its own key")
    now = _now(now)
    event = await load_event(conn, event_id)
    await lock_participants(conn, [principal.id, recipient_id])
    requester, recipient = await _pair(
        conn, (principal.id, "requester_id"), (recipient_id, "recipient_id")
    )
    open_between = await _open_between(conn, event_id, requester.registration_id, recipient_id)
    open_request = await _expire_if_due(conn, open_between, now, correlation_id)
    decision = domain.request_meeting(
        event,
        requester,
        recipient,
        request_id=str(uuid.uuid4()),
        message=message,
        language=language,
        time_preference=time_preference,
        open_request=open_request,
        accepted=await accepted_counts(conn, [requester.registration_id, recipient_id]),
        now=now,
    )
    await record(conn, decision, event_id=event_id, correlation_id=correlation_id)
    return await view(conn, decision.request_id)


async def accept(
    conn: asyncpg.Connection,
    principal: Principal,
    request_id: str,
    correlation_id: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    request = await _lock_request(conn, request_id)
    event = await load_event(conn, request.event_id)
    requester, recipient = await _pair(
        conn, (request.requester_id, "requester_id"), (request.recipient_id, "recipient_id")
    )
    accepted = domain.accept(
        request,
        event,
        requester,
        recipient,
        by=_as_participant(principal),
        accepted=await accepted_counts(conn, request.parties),
        now=_now(now),
    )
    await record(
        conn,
        Decision(request_id, request.version, [accepted]),
        event_id=request.event_id,
        correlation_id=correlation_id,
    )
    return await view(conn, request_id)


async def decline(
    conn: asyncpg.Connection,
    principal: Principal,
    request_id: str,
    reason: str | None,
    correlation_id: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    request = await _lock_request(conn, request_id)
    declined = domain.decline(request, by=_as_participant(principal), reason=reason, now=_now(now))
    await record(
        conn,
        Decision(request_id, request.version, [declined]),
        event_id=request.event_id,
        correlation_id=correlation_id,
    )
    return await view(conn, request_id)


_ROLE = {
    "organisation": CancelledBy.PARTICIPANT,
    "organiser": CancelledBy.ORGANISER,
    "admin": CancelledBy.ADMIN,
}


async def cancel(
    conn: asyncpg.Connection,
    principal: Principal,
    request_id: str,
    reason: str | None,
    correlation_id: str | None,
) -> dict[str, Any]:
    request = await _lock_request(conn, request_id)
    event = await load_event(conn, request.event_id)
    cancelled = domain.cancel(
        request,
        by=Actor(_ROLE[principal.role], principal.id),
        organiser_id=event.organiser_id,
        reason=reason,
    )
    await record(
        conn,
        Decision(request_id, request.version, [cancelled]),
        event_id=request.event_id,
        correlation_id=correlation_id,
    )
    return await view(conn, request_id)


async def arrange(
    conn: asyncpg.Connection,
    principal: Principal,
    event_id: str,
    participant_ids: Sequence[str],
    correlation_id: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    event = await load_event(conn, event_id)
    first_id, second_id = participant_ids
    await lock_participants(conn, [first_id, second_id])
    first, second = await _pair(conn, (first_id, "participants[0]"), (second_id, "participants[1]"))
    open_between = await _open_between(conn, event_id, first_id, second_id)
    open_request = await _expire_if_due(conn, open_between, _now(now), correlation_id)
    decision = domain.arrange(
        event,
        first,
        second,
        organiser_id=principal.id,
        request_id=str(uuid.uuid4()),
        open_request=open_request,
        accepted=await accepted_counts(conn, [first_id, second_id]),
    )
    await record(conn, decision, event_id=event_id, correlation_id=correlation_id)
    return await view(conn, decision.request_id)


# -- reactions to registration's events ------------------------------------------------


async def on_participant_left(
    conn: asyncpg.Connection, envelope: Envelope, payload: EventPayload
) -> None:
    """A withdrawn or rejected participant's pending requests and meetings are cancelled."""
    assert isinstance(payload, RegistrationWithdrawn | RegistrationRejected)
    # Wait for any command on this participant (e.g. a request being made) to finish,
    # so that none of its open requests is missed.
    await lock_participants(conn, [payload.registration_id])
    request_ids = await conn.fetch(
        "SELECT request_id FROM meeting_requests WHERE status = ANY($2::text[])"
        " AND (requester_id = $1 OR recipient_id = $1) ORDER BY request_id FOR UPDATE",
        payload.registration_id,
        domain.OPEN_STATUSES,
    )
    left = "withdrew" if isinstance(payload, RegistrationWithdrawn) else "was rejected"
    for row in request_ids:
        request = await load_request(conn, row["request_id"])
        cancelled = domain.cancel(
            request,
            by=Actor(CancelledBy.SYSTEM, SYSTEM_ID),
            organiser_id=None,
            reason=f"{payload.registration_id} {left} from the event",
        )
        await record(
            conn,
            Decision(request.request_id, request.version, [cancelled]),
            event_id=request.event_id,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.id,
        )


async def on_departures(
    conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    """`on_participant_left` for each rejection or withdrawal in a run of decisions, in
    event order (approvals and waitlistings need no reaction), so that a burst of
    approvals with a few rejections among them stays one run."""
    for envelope, payload in run:
        if isinstance(payload, RegistrationWithdrawn | RegistrationRejected):
            acting = ACTOR.set(envelope.actor)  # as the inbox sets it for one event
            try:
                await on_participant_left(conn, envelope, payload)
            finally:
                ACTOR.reset(acting)


ON_REGISTRATION_EVENTS: dict[str, Handler] = {
    RegistrationWithdrawn.ce_type(): on_participant_left,
    RegistrationRejected.ce_type(): on_participant_left,
}
