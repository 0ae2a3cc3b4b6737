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
    return _rules_of(row, row["event_id"])


def _rules_of(row: asyncpg.Record, event_id: str) -> EventRules:
    return EventRules(
        event_id=event_id,
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


async def _inputs(
    conn: asyncpg.Connection, event_id: str, first: tuple[str, str], second: tuple[str, str]
) -> tuple[EventRules, Participant, Participant, dict[str, int]]:
    """`load_event`, `_pair` and `accepted_counts` in one statement (read under the
    participants' locks), with their refusals in that order: an unknown event is a
    `NotFound`, an unknown side a `RuleViolation` of its field."""
    rows = await conn.fetch(
        "SELECT p.id, e.event_id AS rules_event_id, e.organiser_id, e.meeting_types,"
        " e.max_meetings_per_participant, e.request_expiry_hours,"
        " q.registration_id, q.event_id, q.name, q.organisation_type, q.attendance, q.status,"
        " (SELECT count(*) FROM meeting_requests m"
        f" WHERE m.status = '{domain.Status.ACCEPTED.value}'"
        " AND (m.requester_id = p.id OR m.recipient_id = p.id)) AS accepted"
        " FROM unnest($2::text[]) AS p(id)"
        " LEFT JOIN brokerage_events e ON e.event_id = $1"
        " LEFT JOIN participants q ON q.registration_id = p.id",
        event_id,
        [first[0], second[0]],
    )
    if rows[0]["rules_event_id"] is None:
        raise NotFound("brokerage event", event_id)
    events = {row["id"]: row for row in rows}
    for registration_id, field in (first, second):
        if events[registration_id]["registration_id"] is None:
            raise RuleViolation(field, f"no participant {registration_id} is known")
    return (
        _rules_of(rows[0], rows[0]["rules_event_id"]),
        _participant_of(events[first[0]]),
        _participant_of(events[second[0]]),
        {row["id"]: int(row["accepted"]) for row in rows},
    )


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


async def _lock_request(
    conn: asyncpg.Connection, request_id: str, parties: Sequence[str] = ()
) -> MeetingRequest:
    """Take the request's participants' locks, then its row lock; return it fresh.

    `parties`: its requester and recipient if the caller knows them (the API's guard read
    them): a request's parties never change once it exists, so a read before this
    transaction is as good as one in it."""
    if len(parties) != 2:
        row = await conn.fetchrow(
            "SELECT requester_id, recipient_id FROM meeting_requests WHERE request_id = $1",
            request_id,
        )
        if row is None:
            raise NotFound("meeting request", request_id)
        parties = (row["requester_id"], row["recipient_id"])
    await lock_participants(conn, parties)
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
    await lock_participants(conn, [principal.id, recipient_id])
    # Accepted meetings counted before a due request between them expires: only a
    # pending request expires, which never counted.
    event, requester, recipient, counts = await _inputs(
        conn, event_id, (principal.id, "requester_id"), (recipient_id, "recipient_id")
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
        accepted=counts,
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
    parties: Sequence[str] = (),
) -> dict[str, Any]:
    request = await _lock_request(conn, request_id, parties)
    event, requester, recipient, counts = await _inputs(
        conn,
        request.event_id,
        (request.requester_id, "requester_id"),
        (request.recipient_id, "recipient_id"),
    )
    accepted = domain.accept(
        request,
        event,
        requester,
        recipient,
        by=_as_participant(principal),
        accepted=counts,
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
    parties: Sequence[str] = (),
) -> dict[str, Any]:
    request = await _lock_request(conn, request_id, parties)
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
    parties: Sequence[str] = (),
) -> dict[str, Any]:
    request = await _lock_request(conn, request_id, parties)
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
    first_id, second_id = participant_ids
    await lock_participants(conn, [first_id, second_id])
    event, first, second, counts = await _inputs(
        conn, event_id, (first_id, "participants[0]"), (second_id, "participants[1]")
    )
    open_between = await _open_between(conn, event_id, first_id, second_id)
    open_request = await _expire_if_due(conn, open_between, _now(now), correlation_id)
    decision = domain.arrange(
        event,
        first,
        second,
        organiser_id=principal.id,
        request_id=str(uuid.uuid4()),
        open_request=open_request,
        accepted=counts,
    )
    await record(conn, decision, event_id=event_id, correlation_id=correlation_id)
    return await view(conn, decision.request_id)


# -- reactions to registration's events ------------------------------------------------


Departure = tuple[Envelope, RegistrationWithdrawn | RegistrationRejected]


async def on_participant_left(
    conn: asyncpg.Connection, envelope: Envelope, payload: EventPayload
) -> None:
    """A withdrawn or rejected participant's pending requests and meetings are cancelled."""
    assert isinstance(payload, RegistrationWithdrawn | RegistrationRejected)
    await _cancel_for(conn, [(envelope, payload)])


async def on_departures(
    conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    """`on_participant_left` for each rejection or withdrawal in a run of decisions, in
    event order (approvals and waitlistings need no reaction), so that a burst of
    approvals with a few rejections among them stays one run."""
    await _cancel_for(
        conn,
        [
            (envelope, payload)
            for envelope, payload in run
            if isinstance(payload, RegistrationWithdrawn | RegistrationRejected)
        ],
    )


async def _cancel_for(conn: asyncpg.Connection, departures: Sequence[Departure]) -> None:
    """The open requests and meetings of the departing participants cancelled, in event
    order (each request by the first departure of one of its sides), each under the actor
    of the event it reacts to: the same as one departure after the other, in two
    statements for the whole run when none has anything open (the usual case).

    First every departing participant's lock, in sorted order as the commands take
    theirs, so that any command on one of them has finished (none of its open requests
    is missed) and none starts; then, in a statement of its own (READ COMMITTED: a
    snapshot taken after the locks), their open requests, row-locked."""
    if not departures:
        return
    leaving = [payload.registration_id for _, payload in departures]
    await lock_participants(conn, leaving)
    rows = await conn.fetch(
        "SELECT request_id, requester_id, recipient_id FROM meeting_requests"
        " WHERE status = ANY($2::text[])"
        " AND (requester_id = ANY($1::text[]) OR recipient_id = ANY($1::text[]))"
        " ORDER BY request_id FOR UPDATE",
        list(set(leaving)),
        domain.OPEN_STATUSES,
    )
    open_requests = [(r["request_id"], {r["requester_id"], r["recipient_id"]}) for r in rows]
    cancelled: set[str] = set()
    for envelope, payload in departures:
        left = "withdrew" if isinstance(payload, RegistrationWithdrawn) else "was rejected"
        acting = ACTOR.set(envelope.actor)  # as the inbox sets it for one event
        try:
            for request_id, parties in open_requests:
                if request_id in cancelled or payload.registration_id not in parties:
                    continue
                cancelled.add(request_id)
                await _cancel_request(conn, envelope, request_id, left, payload.registration_id)
        finally:
            ACTOR.reset(acting)


async def _cancel_request(
    conn: asyncpg.Connection, envelope: Envelope, request_id: str, left: str, who: str
) -> None:
    request = await load_request(conn, request_id)
    cancelled = domain.cancel(
        request,
        by=Actor(CancelledBy.SYSTEM, SYSTEM_ID),
        organiser_id=None,
        reason=f"{who} {left} from the event",
    )
    await record(
        conn,
        Decision(request.request_id, request.version, [cancelled]),
        event_id=request.event_id,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.id,
    )


ON_REGISTRATION_EVENTS: dict[str, Handler] = {
    RegistrationWithdrawn.ce_type(): on_participant_left,
    RegistrationRejected.ce_type(): on_participant_left,
}
