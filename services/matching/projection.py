"""Matching's projection of registration's events: events and their participants.

Registration publishes everything about one brokerage event in order on one
partition, so a decision never arrives before its registration here.
"""

from __future__ import annotations

import asyncpg

from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    DecisionBase,
    OrganisationProfile,
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


async def on_event_created(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, BrokerageEventCreated)
    await conn.execute(
        "INSERT INTO brokerage_events (event_id, name, meeting_types,"
        " max_meetings_per_participant, request_expiry_hours) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.name,
        [t.value for t in e.meeting_types],
        e.max_meetings_per_participant,
        e.request_expiry_hours,
    )


def _profile_values(p: OrganisationProfile) -> list[object]:
    return [
        p.organisation_type.value,
        p.name,
        p.country,
        p.sectors,
        p.technologies,
        p.value_chain_position,
        p.markets,
        p.offers,
        p.requests,
        p.attendance.value,
    ]


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    profile: OrganisationProfile = e.profile
    await conn.execute(
        "INSERT INTO participants (registration_id, event_id, organisation_type, name, country,"
        " sectors, technologies, value_chain_position, markets, offers, requests, attendance,"
        " status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending')"
        " ON CONFLICT (registration_id) DO NOTHING",
        e.registration_id,
        e.event_id,
        *_profile_values(profile),
    )


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    await conn.execute(
        "UPDATE participants SET organisation_type = $2, name = $3, country = $4, sectors = $5,"
        " technologies = $6, value_chain_position = $7, markets = $8, offers = $9,"
        " requests = $10, attendance = $11 WHERE registration_id = $1",
        e.registration_id,
        *_profile_values(e.profile),
    )


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    await conn.execute(
        "UPDATE participants SET status = $2 WHERE registration_id = $1",
        e.registration_id,
        STATUS[type(e)],
    )


HANDLERS: dict[str, Handler] = {
    BrokerageEventCreated.ce_type(): on_event_created,
    ProfileUpdated.ce_type(): on_profile_updated,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{t.ce_type(): on_decision for t in STATUS},
}
# PersonalDataErased needs nothing here: matching keeps no contact details.
IGNORED = (PersonalDataErased,)
