"""The access projection: what every service needs to know to apply the policy.

From registration's events each service keeps the keys (`api_keys`), who leads each
event, its co-organisers with their support offices, and each registration's status
and office. Registration applies these handlers to its own events in the command's
transaction; the other services combine `HANDLERS` into their subscription to
`registration.events`. Every handler is idempotent: events may be delivered again.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.access.policy import RegistrationStatus, Role
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    DECISIONS,
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    CoOrganiserAdded,
    CoOrganiserRemoved,
    DecisionBase,
    OrganiserRegistered,
    ParticipantAssignedToSupportOffice,
    ProfileUpdated,
    RegisteredBase,
    SignedInByLink,
)
from shared.dispatch import Projection
from shared.envelope import Envelope
from shared.inbox import Handler

# Remembers a key issued by registration ($1 digest, $2 role, $3 subject); the handlers
# that also record something else do it in the same statement, a CTE before this.
_RECORD_KEY = (
    "INSERT INTO api_keys (key_digest, role, subject_id) VALUES ($1, $2, $3)"
    " ON CONFLICT (key_digest) DO NOTHING"
)


async def record_key(
    conn: asyncpg.Connection,
    key_digest: str,
    role: Role,
    subject: str,
    expires_at: datetime | None = None,
) -> None:
    """Remember a key issued by registration (one that stops working at `expires_at`)."""
    if expires_at is None:
        await conn.execute(_RECORD_KEY, key_digest, role.value, subject)
        return
    await conn.execute(
        "INSERT INTO api_keys (key_digest, role, subject_id, expires_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (key_digest) DO NOTHING",
        key_digest,
        role.value,
        subject,
        expires_at,
    )


async def _organiser_registered(conn: asyncpg.Connection, e: OrganiserRegistered) -> None:
    await record_key(conn, e.api_key_digest, Role.ORGANISER, e.organiser_id)


async def _event_created(conn: asyncpg.Connection, e: BrokerageEventCreated) -> None:
    await conn.execute(
        "INSERT INTO access_events (event_id, organiser_id) VALUES ($1, $2)"
        " ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.organiser_id,
    )


async def _registered(conn: asyncpg.Connection, e: RegisteredBase) -> None:
    await conn.execute(
        "WITH registration AS ("
        " INSERT INTO access_registrations (registration_id, event_id, organisation_name)"
        " VALUES ($3, $4, $5) ON CONFLICT (registration_id) DO NOTHING) " + _RECORD_KEY,
        e.api_key_digest,
        Role.ORGANISATION.value,
        e.registration_id,
        e.event_id,
        e.profile.name,
    )


async def _profile_updated(conn: asyncpg.Connection, e: ProfileUpdated) -> None:
    await conn.execute(
        "UPDATE access_registrations SET organisation_name = $2 WHERE registration_id = $1",
        e.registration_id,
        e.profile.name,
    )


async def _decided(conn: asyncpg.Connection, e: DecisionBase) -> None:
    await conn.execute(
        "UPDATE access_registrations SET status = $2 WHERE registration_id = $1",
        e.registration_id,
        RegistrationStatus(e.status_after).value,
    )


async def _assigned(conn: asyncpg.Connection, e: ParticipantAssignedToSupportOffice) -> None:
    await conn.execute(
        "UPDATE access_registrations SET office_id = $2 WHERE registration_id = $1",
        e.registration_id,
        e.office_id,
    )


async def _co_organiser_added(conn: asyncpg.Connection, e: CoOrganiserAdded) -> None:
    await conn.execute(
        "WITH co_organiser AS ("
        " INSERT INTO access_co_organisers (co_organiser_id, event_id, office_id)"
        " VALUES ($3, $4, $5) ON CONFLICT (co_organiser_id) DO NOTHING) " + _RECORD_KEY,
        e.api_key_digest,
        Role.CO_ORGANISER.value,
        e.co_organiser_id,
        e.event_id,
        e.office_id,
    )


async def _signed_in(conn: asyncpg.Connection, e: SignedInByLink) -> None:
    await record_key(conn, e.api_key_digest, Role.ORGANISATION, e.registration_id, e.key_expires_at)


async def _co_organiser_removed(conn: asyncpg.Connection, e: CoOrganiserRemoved) -> None:
    await conn.execute(
        "WITH co_organiser AS ("
        " UPDATE access_co_organisers SET removed = true WHERE co_organiser_id = $2)"
        " UPDATE api_keys SET revoked = true WHERE role = $1 AND subject_id = $2",
        Role.CO_ORGANISER.value,
        e.co_organiser_id,
    )


PROJECTION = Projection()
PROJECTION.on(OrganiserRegistered)(_organiser_registered)
PROJECTION.on(BrokerageEventCreated)(_event_created)
PROJECTION.on(*REGISTERED_BY_TYPE.values())(_registered)
PROJECTION.on(*DECISIONS)(_decided)
PROJECTION.on(ParticipantAssignedToSupportOffice)(_assigned)
PROJECTION.on(ProfileUpdated)(_profile_updated)
PROJECTION.on(CoOrganiserAdded)(_co_organiser_added)
PROJECTION.on(CoOrganiserRemoved)(_co_organiser_removed)
PROJECTION.on(SignedInByLink)(_signed_in)
apply = PROJECTION.apply  # one of registration's events (others are ignored)


async def _handle(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await apply(conn, event)


HANDLERS: dict[str, Handler] = {t.ce_type(): _handle for t in PROJECTION.types}
