"""Who may read an organisation's contact details: registration's view of accepted meetings.

Registration owns the sealed contact details; matching owns the meetings. This
module keeps, from `matching.events`, the pairs of registrations that have an
accepted meeting (a cancellation removes the pair), and decides who may read a
registration's contact details besides the organisation itself and its organisers
(`shared.access`): an organisation with an accepted meeting with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from shared.access.guard import Target, from_path
from shared.access.policy import Principal, Role
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted, MeetingCancelled
from shared.envelope import Envelope
from shared.inbox import Handler
from shared.inserts import Insert


def _pair(envelope: Envelope) -> tuple[Any, ...]:
    accepted = envelope.data
    return (
        accepted["request_id"],
        accepted["event_id"],
        accepted["requester_id"],
        accepted["recipient_id"],
    )


# An accepted meeting's pair, from the envelope alone (`shared.inserts.Insert`: a rebuild
# folds it without the payload model). Only a cancellation of the same request deletes
# the row, and a request is accepted once and cancelled after (`services.matching.domain`):
# the pairs do not depend on the order of the acceptances.
ACCEPTED_PAIRS = Insert(
    "meeting_contacts",
    "INSERT INTO meeting_contacts (request_id, event_id, first_id, second_id)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
    _pair,
)


async def on_meeting_cancelled(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingCancelled)
    await conn.execute("DELETE FROM meeting_contacts WHERE request_id = $1", e.request_id)


INSERTS = {MeetingAccepted.ce_type(): ACCEPTED_PAIRS}

HANDLERS: dict[str, Handler] = {
    MeetingAccepted.ce_type(): ACCEPTED_PAIRS.handler,
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


async def with_partners(
    conn: asyncpg.Connection, path: Mapping[str, str], principal: Principal | None
) -> Target | None:
    """The target of a contact-details request: the registration, and the caller too when
    it has an accepted meeting with it (the policy lets a participant read what concerns
    itself, and an accepted meeting makes the partner's contacts its concern)."""
    target = await from_path(conn, path, principal)
    if target is None or principal is None or principal.role is not Role.ORGANISATION:
        return target
    registration_id = path["registration_id"]
    if principal.id != registration_id and await have_met(conn, principal.id, registration_id):
        return Target(target.event_id, (*target.registrations, principal.id))
    return target
