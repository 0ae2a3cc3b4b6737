"""Reporting's commands: attendance, meetings not held, feedback, outcomes, feedback invitations.

Each runs inside the request's transaction (`shared.api.run_command`): it checks who
may act against the projections, appends the event to its stream (event store +
outbox, so it reaches `reporting.events`) and updates the projection in the same
transaction, so the report reflects a command as soon as it returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.reporting import history, invitations
from services.reporting.live import notify
from shared import eventstore
from shared.access.policy import Grant, Principal
from shared.contracts.base import EventPayload
from shared.contracts.reporting import (
    AgreementKind,
    AttendanceRecorded,
    FeedbackInvitationsRequested,
    MeetingFeedbackGiven,
    MeetingMarkedNotHeld,
    Outcome,
    OutcomeReported,
    Rating,
)
from shared.errors import Conflict, Forbidden, NotFound, RuleViolation


async def _append(
    conn: asyncpg.Connection, stream: str, event: EventPayload, key: str, cid: str | None
) -> None:
    written = await eventstore.record(conn, stream, None, [event], key=key, correlation_id=cid)
    await history.remember_all(conn, written)
    # Every command appends here: its event's dashboards update when the command commits.
    await notify(conn, key)


async def record_attendance(
    conn: asyncpg.Connection,
    grant: Grant,
    event_id: str,
    registration_id: str,
    attended: bool,
    cid: str | None,
) -> dict[str, Any]:
    known = await conn.fetchrow(
        "SELECT event_id, office_id FROM access_registrations WHERE registration_id = $1",
        registration_id,
    )
    if known is None or known["event_id"] != event_id:
        raise NotFound("registration", registration_id)
    if not grant.may_see(registration_id, known["office_id"]):
        raise Forbidden("this participant belongs to another support office")
    by = grant.principal.id if grant.principal else "link"
    event = AttendanceRecorded(
        event_id=event_id, registration_id=registration_id, attended=attended, recorded_by=by
    )
    await _append(conn, f"event-report-{event_id}", event, event_id, cid)
    await conn.execute(
        "INSERT INTO attendance (event_id, registration_id, attended) VALUES ($1, $2, $3)"
        " ON CONFLICT (event_id, registration_id) DO UPDATE SET attended = $3",
        event_id,
        registration_id,
        attended,
    )
    return {"registration_id": registration_id, "attended": attended}


async def _meeting(conn: asyncpg.Connection, event_id: str, meeting_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM meetings WHERE meeting_id = $1 AND event_id = $2", meeting_id, event_id
    )
    if row is None:
        raise NotFound("meeting", meeting_id)
    return row


async def mark_not_held(
    conn: asyncpg.Connection,
    who: Principal,
    event_id: str,
    meeting_id: str,
    reason: str | None,
    cid: str | None,
) -> dict[str, Any]:
    await _meeting(conn, event_id, meeting_id)
    event = MeetingMarkedNotHeld(
        event_id=event_id, meeting_id=meeting_id, reason=reason, recorded_by=who.id
    )
    await _append(conn, f"event-report-{event_id}", event, event_id, cid)
    await conn.execute(
        "INSERT INTO not_held (meeting_id, event_id, reason) VALUES ($1, $2, $3)"
        " ON CONFLICT (meeting_id) DO UPDATE SET reason = $3",
        meeting_id,
        event_id,
        reason,
    )
    return {"meeting_id": meeting_id, "held": False}


async def _side(conn: asyncpg.Connection, who: Principal, event_id: str, meeting_id: str) -> str:
    """The registration id the caller speaks for in this meeting."""
    meeting = await _meeting(conn, event_id, meeting_id)
    if who.role != "organisation" or who.id not in meeting["participants"]:
        raise Forbidden("only the meeting's participants rate it or report its outcome")
    side: str = who.id
    return side


async def give_feedback(
    conn: asyncpg.Connection,
    who: Principal,
    event_id: str,
    meeting_id: str,
    rating: Rating,
    comment: str | None,
    cid: str | None,
) -> dict[str, Any]:
    side = await _side(conn, who, event_id, meeting_id)
    event = MeetingFeedbackGiven(
        event_id=event_id,
        meeting_id=meeting_id,
        registration_id=side,
        rating=rating,
        comment=comment,
    )
    await _append(conn, f"meeting-feedback-{meeting_id}", event, event_id, cid)
    await conn.execute(
        "INSERT INTO feedback (meeting_id, registration_id, event_id, rating, comment)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (meeting_id, registration_id)"
        " DO UPDATE SET rating = $4, comment = $5",
        meeting_id,
        side,
        event_id,
        rating.value,
        comment,
    )
    return {"meeting_id": meeting_id, "registration_id": side, "rating": rating.value}


async def report_outcome(
    conn: asyncpg.Connection,
    who: Principal,
    event_id: str,
    meeting_id: str,
    outcome: Outcome,
    kind: AgreementKind | None,
    note: str | None,
    cid: str | None,
) -> dict[str, Any]:
    if outcome is Outcome.AGREEMENT_REACHED and kind is None:
        raise RuleViolation("kind", "an agreement needs its kind")
    if outcome is not Outcome.AGREEMENT_REACHED and kind is not None:
        raise RuleViolation("kind", "only an agreement has a kind")
    side = await _side(conn, who, event_id, meeting_id)
    event = OutcomeReported(
        event_id=event_id,
        meeting_id=meeting_id,
        registration_id=side,
        outcome=outcome,
        kind=kind,
        note=note,
    )
    await _append(conn, f"meeting-feedback-{meeting_id}", event, event_id, cid)
    await conn.execute(
        "INSERT INTO outcomes (meeting_id, registration_id, event_id, outcome, kind, note)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id, registration_id)"
        " DO UPDATE SET outcome = $4, kind = $5, note = $6",
        meeting_id,
        side,
        event_id,
        outcome.value,
        kind.value if kind else None,
        note,
    )
    return {"meeting_id": meeting_id, "registration_id": side, "outcome": outcome.value}


async def request_feedback_invitations(
    conn: asyncpg.Connection,
    who: Principal,
    event_id: str,
    feedback_url: Callable[[str], str],
    cid: str | None,
) -> dict[str, Any]:
    """A new round of invitations to rate the meetings held (notification sends them)."""
    event = await conn.fetchrow(
        "SELECT name, time_zone FROM brokerage_events WHERE event_id = $1", event_id
    )
    rows = await conn.fetch(
        "SELECT m.meeting_id, m.participants, p.slot_start, p.slot_end"
        " FROM meetings m JOIN placements p USING (meeting_id)"
        " WHERE m.event_id = $1 AND NOT m.cancelled AND p.placed"
        " AND NOT EXISTS (SELECT 1 FROM not_held n WHERE n.meeting_id = m.meeting_id)",
        event_id,
    )
    held = invitations.held_and_ended(rows, datetime.now(UTC))
    if not held:
        raise Conflict("meetings", "the event has no held meetings to rate (none has ended yet)")
    names = {
        r["registration_id"]: r["name"]
        for r in await conn.fetch(
            "SELECT registration_id, name FROM registrations WHERE event_id = $1", event_id
        )
    }
    rated = {
        (r["meeting_id"], r["registration_id"])
        for r in await conn.fetch(
            "SELECT meeting_id, registration_id FROM feedback WHERE event_id = $1", event_id
        )
    }
    invited = invitations.invitations(held, names, rated, feedback_url)
    if not invited:
        raise Conflict("meetings", "every held meeting has been rated by both of its sides")
    last = await conn.fetchval(
        "SELECT coalesce(max(round), 0) FROM feedback_rounds WHERE event_id = $1", event_id
    )
    requested = FeedbackInvitationsRequested(
        event_id=event_id,
        round_id=str(uuid.uuid4()),
        round=last + 1,
        requested_by=who.id,
        event_title=event["name"],
        time_zone=event["time_zone"],
        participants=invited,
    )
    # The event's report stream serialises rounds: a concurrent request gets a 409.
    await _append(conn, f"event-report-{event_id}", requested, event_id, cid)
    meetings = len({m.meeting_id for p in invited for m in p.meetings})
    await conn.execute(
        "INSERT INTO feedback_rounds (round_id, event_id, round, requested_by, participants,"
        " meetings) VALUES ($1, $2, $3, $4, $5, $6)",
        requested.round_id,
        event_id,
        requested.round,
        who.id,
        len(invited),
        meetings,
    )
    return {
        "round_id": requested.round_id,
        "round": requested.round,
        "participants": len(invited),
        "meetings": meetings,
        "invited": {p.registration_id: [m.meeting_id for m in p.meetings] for p in invited},
    }
