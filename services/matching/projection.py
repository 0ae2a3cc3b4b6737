"""Matching's read model: registration's events (brokerage events, participants, API
keys) and matching's own meeting-request events.

Registration publishes everything about one brokerage event in order on one
partition, so a decision never arrives before its registration here. Matching's
own events are projected in the transaction that appends them (`apply`).
"""

from __future__ import annotations

import asyncpg

from services.matching.domain import STATUS_AFTER
from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    MeetingAccepted,
    MeetingCancelled,
    MeetingDeclined,
    MeetingRequested,
    MeetingRequestExpired,
    TimePreference,
)
from shared.contracts.registration import (
    DECISIONS,
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    DecisionBase,
    EventSettingsChanged,
    OrganisationProfile,
    PersonalDataErased,
    ProfileUpdated,
    RegisteredBase,
)
from shared.dispatch import Projection
from shared.envelope import Envelope
from shared.inbox import Handler


async def on_event_created(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, BrokerageEventCreated)
    await conn.execute(
        "INSERT INTO brokerage_events (event_id, organiser_id, name, meeting_types,"
        " max_meetings_per_participant, request_expiry_hours, time_zone)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.organiser_id,
        e.name,
        [t.value for t in e.meeting_types],
        e.max_meetings_per_participant,
        e.request_expiry_hours,
        e.time_zone,
    )


async def on_settings_changed(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    """The organiser's new caps and meeting types apply to requests made from now on."""
    assert isinstance(e, EventSettingsChanged)
    await conn.execute(
        "UPDATE brokerage_events SET name = $2, meeting_types = $3,"
        " max_meetings_per_participant = $4, request_expiry_hours = $5 WHERE event_id = $1",
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
        [f.value for f in p.published],
    ]


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    profile: OrganisationProfile = e.profile
    await conn.execute(
        "INSERT INTO participants (registration_id, event_id, organisation_type, name, country,"
        " sectors, technologies, value_chain_position, markets, offers, requests, attendance,"
        " published, status)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending')"
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
        " requests = $10, attendance = $11, published = $12 WHERE registration_id = $1",
        e.registration_id,
        *_profile_values(e.profile),
    )


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    await conn.execute(
        "UPDATE participants SET status = $2 WHERE registration_id = $1",
        e.registration_id,
        e.status_after,
    )


HANDLERS: dict[str, Handler] = {
    BrokerageEventCreated.ce_type(): on_event_created,
    EventSettingsChanged.ce_type(): on_settings_changed,
    ProfileUpdated.ce_type(): on_profile_updated,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{t.ce_type(): on_decision for t in DECISIONS},
}
# PersonalDataErased needs nothing here: matching keeps no contact details.
IGNORED = (PersonalDataErased,)


# -- matching's own events ------------------------------------------------------


PROJECTION = Projection()
apply = PROJECTION.apply  # one of matching's events, in the transaction that records it


@PROJECTION.on(MeetingRequested)
async def _requested(conn: asyncpg.Connection, event: MeetingRequested) -> None:
    await conn.execute(
        "INSERT INTO meeting_requests (request_id, event_id, requester_id, recipient_id,"
        " status, meeting_type, message, expires_at, time_preference)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        event.request_id,
        event.event_id,
        event.requester_id,
        event.recipient_id,
        STATUS_AFTER[MeetingRequested].value,
        event.meeting_type.value,
        event.message.text if event.message else None,
        event.expires_at,
        _preference(event.time_preference),
    )


def _preference(preference: TimePreference | None) -> str | None:
    return None if preference is None else preference.model_dump_json(exclude_none=True)


@PROJECTION.on(MeetingAccepted)
async def _accepted(conn: asyncpg.Connection, event: MeetingAccepted) -> None:
    # A request accepted, or a meeting an organiser arranged (its first event).
    await conn.execute(
        "INSERT INTO meeting_requests (request_id, event_id, requester_id, recipient_id,"
        " status, meeting_type, mode, arranged_by_organiser, mutual, decided_by, time_preference)"
        " VALUES ($1, $2, $3, $4, $10, $5, $6, $7, $8, $9, $11)"
        " ON CONFLICT (request_id) DO UPDATE SET status = EXCLUDED.status, mode = EXCLUDED.mode,"
        " arranged_by_organiser = EXCLUDED.arranged_by_organiser,"
        " time_preference = EXCLUDED.time_preference,"
        " mutual = EXCLUDED.mutual, decided_by = EXCLUDED.decided_by, updated_at = now()",
        event.request_id,
        event.event_id,
        event.requester_id,
        event.recipient_id,
        event.meeting_type.value,
        event.mode.value,
        event.arranged_by_organiser,
        event.mutual,
        event.accepted_by,
        STATUS_AFTER[MeetingAccepted].value,
        _preference(event.time_preference),
    )


@PROJECTION.on(MeetingDeclined)
async def _declined(conn: asyncpg.Connection, event: MeetingDeclined) -> None:
    await _set_status(conn, event, event.recipient_id, event.reason)


@PROJECTION.on(MeetingCancelled)
async def _cancelled(conn: asyncpg.Connection, event: MeetingCancelled) -> None:
    await _set_status(conn, event, event.cancelled_by, event.reason)


@PROJECTION.on(MeetingRequestExpired)
async def _expired(conn: asyncpg.Connection, event: MeetingRequestExpired) -> None:
    await _set_status(conn, event, None, None)


async def _set_status(
    conn: asyncpg.Connection,
    event: MeetingDeclined | MeetingCancelled | MeetingRequestExpired,
    decided_by: str | None,
    reason: str | None,
) -> None:
    await conn.execute(
        "UPDATE meeting_requests SET status = $2, decided_by = $3, reason = $4,"
        " updated_at = now() WHERE request_id = $1",
        event.request_id,
        STATUS_AFTER[type(event)].value,
        decided_by,
        reason,
    )
