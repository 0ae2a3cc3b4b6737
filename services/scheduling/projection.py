"""Scheduling's projection of registration's events: event grids, attendees' constraints, keys.

API keys issued by registration (organisers', organisations') are learnt here so that
organisers and participants authenticate to scheduling with the keys they have.
"""

from __future__ import annotations

import json

import asyncpg

from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    DecisionBase,
    OrganisationProfile,
    ProfileUpdated,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
    SideProgrammeJoined,
)
from shared.envelope import Envelope
from shared.inbox import Handler


async def on_event_created(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, BrokerageEventCreated)
    await conn.execute(
        "INSERT INTO event_grids (event_id, time_zone, days, sessions, slot_minutes, tables,"
        " organiser_id, max_meetings) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8)"
        " ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.time_zone,
        json.dumps([d.isoformat() for d in e.days]),
        json.dumps([s.model_dump(mode="json") for s in e.sessions]),
        e.slot_minutes,
        e.tables,
        e.organiser_id,
        e.max_meetings_per_participant,
    )


def _constraints(p: OrganisationProfile) -> tuple[str, str]:
    return p.attendance.value, json.dumps([i.model_dump(mode="json") for i in p.availability])


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    attendance, availability = _constraints(e.profile)
    await conn.execute(
        "INSERT INTO attendees (registration_id, event_id, attendance, availability)"
        " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (registration_id) DO NOTHING",
        e.registration_id,
        e.event_id,
        attendance,
        availability,
    )


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    attendance, availability = _constraints(e.profile)
    await conn.execute(
        "UPDATE attendees SET attendance = $2, availability = $3::jsonb WHERE registration_id = $1",
        e.registration_id,
        attendance,
        availability,
    )


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    await conn.execute(
        "UPDATE attendees SET approved = $2 WHERE registration_id = $1",
        e.registration_id,
        isinstance(e, RegistrationApproved),
    )


async def on_side_programme_joined(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SideProgrammeJoined)
    interval = {"start": e.start.isoformat(), "end": e.end.isoformat()}
    await conn.execute(
        "UPDATE attendees SET blocked = blocked || $2::jsonb"
        " WHERE registration_id = $1 AND NOT blocked @> $2::jsonb",
        e.registration_id,
        json.dumps([interval]),
    )


HANDLERS: dict[str, Handler] = {
    SideProgrammeJoined.ce_type(): on_side_programme_joined,
    BrokerageEventCreated.ce_type(): on_event_created,
    ProfileUpdated.ce_type(): on_profile_updated,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{
        t.ce_type(): on_decision
        for t in (
            RegistrationApproved,
            RegistrationRejected,
            RegistrationWaitlisted,
            RegistrationWithdrawn,
        )
    },
}
