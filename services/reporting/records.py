"""Reporting's own events (attendance, meetings not held, feedback, outcomes, invitation
rounds) and the tables they change: one handler per event, used when a command records
the event and when the tables are rebuilt from the event store."""

from __future__ import annotations

import asyncpg

from shared.contracts.reporting import (
    AttendanceRecorded,
    FeedbackInvitationsRequested,
    MeetingFeedbackGiven,
    MeetingMarkedNotHeld,
    OutcomeReported,
)
from shared.dispatch import Projection

PROJECTION = Projection()
apply = PROJECTION.apply


@PROJECTION.on(AttendanceRecorded)
async def _attendance(conn: asyncpg.Connection, e: AttendanceRecorded) -> None:
    await conn.execute(
        "INSERT INTO attendance (event_id, registration_id, attended) VALUES ($1, $2, $3)"
        " ON CONFLICT (event_id, registration_id) DO UPDATE SET attended = $3",
        e.event_id,
        e.registration_id,
        e.attended,
    )


@PROJECTION.on(MeetingMarkedNotHeld)
async def _not_held(conn: asyncpg.Connection, e: MeetingMarkedNotHeld) -> None:
    await conn.execute(
        "INSERT INTO not_held (meeting_id, event_id, reason) VALUES ($1, $2, $3)"
        " ON CONFLICT (meeting_id) DO UPDATE SET reason = $3",
        e.meeting_id,
        e.event_id,
        e.reason,
    )


@PROJECTION.on(MeetingFeedbackGiven)
async def _feedback(conn: asyncpg.Connection, e: MeetingFeedbackGiven) -> None:
    await conn.execute(
        "INSERT INTO feedback (meeting_id, registration_id, event_id, rating, comment)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (meeting_id, registration_id)"
        " DO UPDATE SET rating = $4, comment = $5",
        e.meeting_id,
        e.registration_id,
        e.event_id,
        e.rating.value,
        e.comment,
    )


@PROJECTION.on(OutcomeReported)
async def _outcome(conn: asyncpg.Connection, e: OutcomeReported) -> None:
    await conn.execute(
        "INSERT INTO outcomes (meeting_id, registration_id, event_id, outcome, kind, note)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id, registration_id)"
        " DO UPDATE SET outcome = $4, kind = $5, note = $6",
        e.meeting_id,
        e.registration_id,
        e.event_id,
        e.outcome.value,
        e.kind.value if e.kind else None,
        e.note,
    )


@PROJECTION.on(FeedbackInvitationsRequested)
async def _round(conn: asyncpg.Connection, e: FeedbackInvitationsRequested) -> None:
    await conn.execute(
        "INSERT INTO feedback_rounds (round_id, event_id, round, requested_by, participants,"
        " meetings) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        e.round_id,
        e.event_id,
        e.round,
        e.requested_by,
        len(e.participants),
        len({m.meeting_id for p in e.participants for m in p.meetings}),
    )
