"""Notification's projection of registration's events: recipients and their state."""

from __future__ import annotations

import asyncpg

from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    DecisionBase,
    PersonalDataErased,
    ProfileUpdated,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
)
from shared.envelope import Envelope
from shared.inbox import Handler

STATUS = {
    RegistrationApproved: "approved",
    RegistrationRejected: "rejected",
    RegistrationWaitlisted: "waitlisted",
    RegistrationWithdrawn: "withdrawn",
}


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    await conn.execute(
        "INSERT INTO recipients (registration_id, event_id, name, status,"
        " representatives_encrypted) VALUES ($1, $2, $3, 'pending', $4)"
        " ON CONFLICT (registration_id) DO NOTHING",
        e.registration_id,
        e.event_id,
        e.profile.name,
        e.profile.representatives_encrypted,
    )


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    await conn.execute(
        "UPDATE recipients SET name = $2, representatives_encrypted = $3"
        " WHERE registration_id = $1",
        e.registration_id,
        e.profile.name,
        e.profile.representatives_encrypted,
    )


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    await conn.execute(
        "UPDATE recipients SET status = $2 WHERE registration_id = $1",
        e.registration_id,
        STATUS[type(e)],
    )


async def on_erased(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, PersonalDataErased)
    await conn.execute(
        "UPDATE recipients SET erased = true, representatives_encrypted = ''"
        " WHERE registration_id = $1",
        e.registration_id,
    )


HANDLERS: dict[str, Handler] = {
    ProfileUpdated.ce_type(): on_profile_updated,
    PersonalDataErased.ce_type(): on_erased,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{t.ce_type(): on_decision for t in STATUS},
}
