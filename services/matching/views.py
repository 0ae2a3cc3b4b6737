"""Matching's reads: the participant directory and meeting requests, within the grant the
access policy gave the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from services.matching.handlers import as_view, view
from shared.access.policy import Grant, RegistrationStatus, Scope
from shared.contracts.registration import DirectoryField


@dataclass(frozen=True)
class DirectoryFilter:
    status: str | None = None  # the lead organiser's; others see approved participants
    q: str | None = None
    country: str | None = None
    sector: str | None = None


async def directory(
    conn: asyncpg.Connection, event_id: str, grant: Grant, wanted: DirectoryFilter
) -> list[dict[str, Any]]:
    """Approved participants with the fields each publishes; the event's lead organiser and
    the admin see every registration, every field and the status."""
    full = grant.sees_everything
    rows = await conn.fetch(
        "SELECT registration_id, organisation_type, name, country, sectors, technologies,"
        " value_chain_position, markets, offers, requests, attendance, status, published"
        " FROM participants WHERE event_id = $1 AND ($2::text IS NULL OR status = $2)"
        " AND ($3::text IS NULL OR concat_ws(' ', name, array_to_string(offers, ' '),"
        "   array_to_string(requests, ' '), array_to_string(technologies, ' ')) ILIKE"
        "   '%' || $3 || '%')"
        " AND ($4::text IS NULL OR country = upper($4)) AND ($5::text IS NULL OR $5 = ANY(sectors))"
        " ORDER BY name",
        event_id,
        wanted.status if full else RegistrationStatus.APPROVED.value,
        wanted.q,
        wanted.country,
        wanted.sector,
    )
    return [_entry(r, full) for r in rows]


def _entry(row: asyncpg.Record, full: bool) -> dict[str, Any]:
    published = set(row["published"]) if row["published"] is not None else set(DirectoryField)
    entry = {
        "registration_id": row["registration_id"],
        "organisation_type": row["organisation_type"],
        "name": row["name"],
    }
    for field in DirectoryField:
        if full or field.value in published:
            entry[field.value] = row[field.value]
    if full:
        entry["status"] = row["status"]
    return entry


async def request(conn: asyncpg.Connection, request_id: str) -> dict[str, Any]:
    return await view(conn, request_id)


async def own_requests(
    conn: asyncpg.Connection,
    registration_id: str,
    direction: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM meeting_requests WHERE"
        " (($2::text IS NULL AND (requester_id = $1 OR recipient_id = $1))"
        "  OR ($2 = 'outgoing' AND requester_id = $1) OR ($2 = 'incoming' AND recipient_id = $1))"
        " AND ($3::text IS NULL OR status = $3)"
        " ORDER BY created_at DESC, request_id LIMIT $4 OFFSET $5",
        registration_id,
        direction,
        status,
        limit,
        offset,
    )
    return [as_view(r) for r in rows]


@dataclass(frozen=True)
class RequestFilter:
    status: str | None = None
    participant_id: str | None = None
    meeting_type: str | None = None
    arranged_by_organiser: bool | None = None


async def event_requests(
    conn: asyncpg.Connection,
    event_id: str,
    grant: Grant,
    wanted: RequestFilter,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """The event's requests, within the grant: a co-organiser's office's participants',
    a participant's own."""
    rows = await conn.fetch(
        "SELECT m.* FROM meeting_requests m WHERE event_id = $1"
        " AND ($2::text IS NULL OR status = $2)"
        " AND ($3::text IS NULL OR requester_id = $3 OR recipient_id = $3)"
        " AND ($4::text IS NULL OR meeting_type = $4)"
        " AND ($5::boolean IS NULL OR arranged_by_organiser = $5)"
        " AND ($8::text IS NULL OR EXISTS (SELECT 1 FROM access_registrations a"
        "   WHERE a.registration_id IN (requester_id, recipient_id) AND a.office_id = $8))"
        " AND ($9::text IS NULL OR $9 IN (requester_id, recipient_id))"
        " ORDER BY created_at, request_id LIMIT $6 OFFSET $7",
        event_id,
        wanted.status,
        wanted.participant_id,
        wanted.meeting_type,
        wanted.arranged_by_organiser,
        limit,
        offset,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    return [as_view(r) for r in rows]
