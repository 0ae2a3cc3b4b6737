"""Who may read an organisation's contact details: registration's view of accepted meetings.

Registration owns the sealed contact details; matching owns the meetings. This
module keeps, from `matching.events`, the pairs of registrations that have an
accepted meeting (a cancellation removes the pair), and decides who may read a
registration's contact details: the organisation itself, the event's organiser,
the platform admin, and an organisation with an accepted meeting with it.
"""

from __future__ import annotations

import asyncpg

from shared.auth import Principal
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted, MeetingCancelled
from shared.envelope import Envelope
from shared.errors import Forbidden
from shared.inbox import Handler


async def on_meeting_accepted(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingAccepted)
    await conn.execute(
        "INSERT INTO meeting_contacts (request_id, event_id, first_id, second_id)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
        e.request_id,
        e.event_id,
        e.requester_id,
        e.recipient_id,
    )


async def on_meeting_cancelled(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingCancelled)
    await conn.execute("DELETE FROM meeting_contacts WHERE request_id = $1", e.request_id)


HANDLERS: dict[str, Handler] = {
    MeetingAccepted.ce_type(): on_meeting_accepted,
    MeetingCancelled.ce_type(): on_meeting_cancelled,
}


async def have_met(conn: asyncpg.Connection, a: str, b: str) -> bool:
    """Whether registrations `a` and `b` have an accepted meeting."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM meeting_contacts WHERE"
        " (first_id = $1 AND second_id = $2) OR (first_id = $2 AND second_id = $1))",
        a,
        b,
    )
    return found


async def authorise(
    conn: asyncpg.Connection, principal: Principal, registration_id: str, event_id: str
) -> None:
    """Raise `Forbidden` unless `principal` may read `registration_id`'s contact details."""
    if principal.role == "admin":
        return
    if principal.role == "organisation":
        if principal.id == registration_id or await have_met(conn, principal.id, registration_id):
            return
    if principal.role == "organiser":
        owner = await conn.fetchval(
            "SELECT organiser_id FROM brokerage_events WHERE event_id = $1", event_id
        )
        if owner == principal.id:
            return
    raise Forbidden(
        "contact details are shown to the organisation itself, the event's organiser and"
        " organisations with an accepted meeting with it"
    )
