"""Registration's read model, updated in the transaction that appends each event."""

from __future__ import annotations

import json

import asyncpg

from services.registration.domain import STATUS_AFTER
from shared.access import projection as access
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    CoOrganiserAdded,
    CoOrganiserRemoved,
    OrganiserRegistered,
    PersonalDataErased,
    ProfileUpdated,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
    SideProgrammeItemAdded,
    SideProgrammeJoined,
)

_REGISTERED = tuple(REGISTERED_BY_TYPE.values())
_DECISIONS = (
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
)


async def apply(conn: asyncpg.Connection, event: EventPayload) -> None:
    await access.apply(conn, event)
    if isinstance(event, OrganiserRegistered):
        await conn.execute(
            "INSERT INTO organisers (organiser_id, name) VALUES ($1, $2)",
            event.organiser_id,
            event.name,
        )
    elif isinstance(event, BrokerageEventCreated):
        await conn.execute(
            "INSERT INTO brokerage_events (event_id, organiser_id, definition)"
            " VALUES ($1, $2, $3::jsonb)",
            event.event_id,
            event.organiser_id,
            event.model_dump_json(),
        )
    elif isinstance(event, _REGISTERED):
        p = event.profile
        await conn.execute(
            "INSERT INTO registrations (registration_id, event_id, organisation_type, name,"
            " country, sectors, attendance, status, profile)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8::jsonb)",
            event.registration_id,
            event.event_id,
            p.organisation_type.value,
            p.name,
            p.country,
            p.sectors,
            p.attendance.value,
            p.model_dump_json(),
        )
    elif isinstance(event, ProfileUpdated):
        p = event.profile
        await conn.execute(
            "UPDATE registrations SET name = $2, country = $3, sectors = $4, attendance = $5,"
            " profile = $6::jsonb, updated_at = now() WHERE registration_id = $1",
            event.registration_id,
            p.name,
            p.country,
            p.sectors,
            p.attendance.value,
            p.model_dump_json(),
        )
    elif isinstance(event, _DECISIONS):
        await conn.execute(
            "UPDATE registrations SET status = $2, status_reason = $3, updated_at = now()"
            " WHERE registration_id = $1",
            event.registration_id,
            STATUS_AFTER[type(event)],
            event.reason,
        )
    elif isinstance(event, PersonalDataErased):
        await conn.execute(
            "UPDATE registrations SET erased = true, updated_at = now() WHERE registration_id = $1",
            event.registration_id,
        )
    elif isinstance(event, SideProgrammeItemAdded):
        await conn.execute(
            "INSERT INTO side_programme (item_id, event_id, title, kind, starts_at, ends_at,"
            " capacity) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            event.item_id,
            event.event_id,
            event.title,
            event.kind,
            event.start,
            event.end,
            event.capacity,
        )
    elif isinstance(event, SideProgrammeJoined):
        await conn.execute(
            "UPDATE side_programme SET participants = array_append(participants, $2)"
            " WHERE item_id = $1",
            event.item_id,
            event.registration_id,
        )

    elif isinstance(event, CoOrganiserAdded):
        await conn.execute(
            "INSERT INTO co_organisers (co_organiser_id, event_id, office_id, name, email)"
            " VALUES ($1, $2, $3, $4, $5)",
            event.co_organiser_id,
            event.event_id,
            event.office_id,
            event.name,
            event.email,
        )
    elif isinstance(event, CoOrganiserRemoved):
        await conn.execute(
            "UPDATE co_organisers SET removed_at = now() WHERE co_organiser_id = $1",
            event.co_organiser_id,
        )


def profile_of(row: asyncpg.Record) -> dict[str, object]:
    profile: dict[str, object] = json.loads(row["profile"])
    return profile
