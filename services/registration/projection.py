"""Registration's read model, updated in the transaction that appends each event."""

from __future__ import annotations

import json

import asyncpg

from services.registration import addresses
from shared.access import projection as access
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    DECISIONS,
    EDITABLE_SETTINGS,
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    CoOrganiserAdded,
    CoOrganiserRemoved,
    DecisionBase,
    EventSettingsChanged,
    OrganiserRegistered,
    PersonalDataErased,
    ProfileUpdated,
    RegisteredBase,
    SideProgrammeItemAdded,
    SideProgrammeJoined,
    SignedInByLink,
    SignInLinkRequested,
)
from shared.dispatch import Projection

PROJECTION = Projection()


async def apply(
    conn: asyncpg.Connection,
    event: EventPayload,
    keys: addresses.Keys = addresses.live_key,
    opened: addresses.Opened | None = None,
) -> None:
    """Project one of registration's events, in the transaction that records it (`keys`:
    where the index of addresses finds a registration's sealing key; `opened`: the
    representatives the command sealed, which it need not open again)."""
    await access.apply(conn, event)
    await PROJECTION.apply(conn, event)
    await addresses.apply(conn, event, keys, opened)


@PROJECTION.on(OrganiserRegistered)
async def _organiser(conn: asyncpg.Connection, event: OrganiserRegistered) -> None:
    await conn.execute(
        "INSERT INTO organisers (organiser_id, name) VALUES ($1, $2)",
        event.organiser_id,
        event.name,
    )


@PROJECTION.on(BrokerageEventCreated)
async def _event_created(conn: asyncpg.Connection, event: BrokerageEventCreated) -> None:
    await conn.execute(
        "INSERT INTO brokerage_events (event_id, organiser_id, definition)"
        " VALUES ($1, $2, $3::jsonb)",
        event.event_id,
        event.organiser_id,
        event.model_dump_json(),
    )


@PROJECTION.on(EventSettingsChanged)
async def _settings_changed(conn: asyncpg.Connection, event: EventSettingsChanged) -> None:
    settings = event.model_dump_json(include=set(EDITABLE_SETTINGS))
    await conn.execute(
        "UPDATE brokerage_events SET definition = definition || $2::jsonb WHERE event_id = $1",
        event.event_id,
        settings,
    )


@PROJECTION.on(SignInLinkRequested)
async def _link_requested(conn: asyncpg.Connection, event: SignInLinkRequested) -> None:
    await conn.execute(
        "INSERT INTO sign_in_links (link_id, registration_id, event_id, address_encrypted,"
        " issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        event.link_id,
        event.registration_id,
        event.event_id,
        event.address_encrypted,
        event.issued_at,
        event.expires_at,
    )


@PROJECTION.on(SignedInByLink)
async def _link_used(conn: asyncpg.Connection, event: SignedInByLink) -> None:
    await conn.execute("UPDATE sign_in_links SET used_at = now() WHERE link_id = $1", event.link_id)


@PROJECTION.on(*REGISTERED_BY_TYPE.values())
async def _registered(conn: asyncpg.Connection, event: RegisteredBase) -> None:
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


@PROJECTION.on(ProfileUpdated)
async def _profile_updated(conn: asyncpg.Connection, event: ProfileUpdated) -> None:
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


@PROJECTION.on(*DECISIONS)
async def _decided(conn: asyncpg.Connection, event: DecisionBase) -> None:
    await conn.execute(
        "UPDATE registrations SET status = $2, status_reason = $3, updated_at = now()"
        " WHERE registration_id = $1",
        event.registration_id,
        event.status_after,
        event.reason,
    )


@PROJECTION.on(PersonalDataErased)
async def _erased(conn: asyncpg.Connection, event: PersonalDataErased) -> None:
    await conn.execute(
        "UPDATE registrations SET erased = true, updated_at = now() WHERE registration_id = $1",
        event.registration_id,
    )


@PROJECTION.on(SideProgrammeItemAdded)
async def _item_added(conn: asyncpg.Connection, event: SideProgrammeItemAdded) -> None:
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


@PROJECTION.on(SideProgrammeJoined)
async def _item_joined(conn: asyncpg.Connection, event: SideProgrammeJoined) -> None:
    await conn.execute(
        "UPDATE side_programme SET participants = array_append(participants, $2)"
        " WHERE item_id = $1",
        event.item_id,
        event.registration_id,
    )


@PROJECTION.on(CoOrganiserAdded)
async def _co_organiser_added(conn: asyncpg.Connection, event: CoOrganiserAdded) -> None:
    await conn.execute(
        "INSERT INTO co_organisers (co_organiser_id, event_id, office_id, name, email)"
        " VALUES ($1, $2, $3, $4, $5)",
        event.co_organiser_id,
        event.event_id,
        event.office_id,
        event.name,
        event.email,
    )


@PROJECTION.on(CoOrganiserRemoved)
async def _co_organiser_removed(conn: asyncpg.Connection, event: CoOrganiserRemoved) -> None:
    await conn.execute(
        "UPDATE co_organisers SET removed_at = now() WHERE co_organiser_id = $1",
        event.co_organiser_id,
    )


def profile_of(row: asyncpg.Record) -> dict[str, object]:
    profile: dict[str, object] = json.loads(row["profile"])
    return profile
