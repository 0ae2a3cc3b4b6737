"""Registration's reads: what the routes answer, from the projection (no rules here; the
access rules are applied before a route runs, and the grant narrows the lists)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.registration import handlers
from shared.access.policy import Grant, Principal, Role, Scope
from shared.errors import NotFound


async def events(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT definition FROM brokerage_events ORDER BY created_at")
    return [json.loads(r["definition"]) for r in rows]


@dataclass(frozen=True)
class RegistrationFilter:
    status: str | None = None
    support_office: str | None = None
    organisation_type: str | None = None
    country: str | None = None
    sector: str | None = None
    attendance: str | None = None


async def registrations(
    conn: asyncpg.Connection,
    event_id: str,
    grant: Grant,
    wanted: RegistrationFilter,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """The event's registrations that match `wanted`, within the grant: a co-organiser's
    office only, a participant itself only."""
    office = grant.office if grant.scope is Scope.OFFICE else wanted.support_office
    rows = await conn.fetch(
        "SELECT r.*, a.office_id FROM registrations r"
        " JOIN access_registrations a USING (registration_id) WHERE r.event_id = $1"
        " AND ($2::text IS NULL OR r.status = $2) AND ($3::text IS NULL OR organisation_type = $3)"
        " AND ($4::text IS NULL OR country = upper($4)) AND ($5::text IS NULL OR $5 = ANY(sectors))"
        " AND ($6::text IS NULL OR attendance = $6) AND ($7::text IS NULL OR a.office_id = $7)"
        " AND ($8::text IS NULL OR r.registration_id = $8)"
        " ORDER BY registered_at, registration_id LIMIT $9 OFFSET $10",
        event_id,
        wanted.status,
        wanted.organisation_type,
        wanted.country,
        wanted.sector,
        wanted.attendance,
        office,
        grant.registration_id if grant.scope is Scope.SELF else None,
        limit,
        offset,
    )
    return [summary(r) for r in rows]


async def registration(conn: asyncpg.Connection, registration_id: str) -> dict[str, Any]:
    """One registration with its profile and its (decrypted) contact details."""
    row = await conn.fetchrow(
        "SELECT r.*, a.office_id FROM registrations r"
        " JOIN access_registrations a USING (registration_id) WHERE registration_id = $1",
        registration_id,
    )
    if row is None:
        raise NotFound("registration", registration_id)
    profile = json.loads(row["profile"])
    representatives = await handlers.representatives_of(
        conn, registration_id, profile.pop("representatives_encrypted")
    )
    return {**summary(row), "profile": profile, "representatives": representatives}


async def contacts(conn: asyncpg.Connection, registration_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT * FROM registrations WHERE registration_id = $1", registration_id
    )
    if row is None:
        raise NotFound("registration", registration_id)
    profile = json.loads(row["profile"])
    representatives = await handlers.representatives_of(
        conn, registration_id, profile["representatives_encrypted"]
    )
    return {
        "registration_id": registration_id,
        "event_id": row["event_id"],
        "name": row["name"],
        "organisation_type": row["organisation_type"],
        "country": row["country"],
        "representatives": representatives,  # None once the personal data is erased
    }


async def contacts_of(conn: asyncpg.Connection, registration_ids: Sequence[str]) -> dict[str, Any]:
    """Many registrations' representatives in one read (the notification service's
    batches): those not known here are listed as unknown; None once erased."""
    rows = await conn.fetch(
        "SELECT r.registration_id, r.profile, k.key FROM registrations r"
        " LEFT JOIN subject_keys k ON k.subject_id = r.registration_id"
        " WHERE r.registration_id = ANY($1::text[])",
        list(dict.fromkeys(registration_ids)),
    )
    found = {
        row["registration_id"]: handlers.opened_representatives(
            row["key"],
            row["registration_id"],
            json.loads(row["profile"])["representatives_encrypted"],
        )
        for row in rows
    }
    return {
        "contacts": [
            {"registration_id": rid, "representatives": representatives}
            for rid, representatives in found.items()
        ],
        "unknown": [rid for rid in dict.fromkeys(registration_ids) if rid not in found],
    }


def summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "registration_id": row["registration_id"],
        "event_id": row["event_id"],
        "organisation_type": row["organisation_type"],
        "name": row["name"],
        "country": row["country"],
        "sectors": row["sectors"],
        "attendance": row["attendance"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "support_office": row["office_id"],
        "erased": row["erased"],
        "registered_at": row["registered_at"].isoformat(),
    }


async def side_programme(conn: asyncpg.Connection, event_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM side_programme WHERE event_id = $1 ORDER BY starts_at, title", event_id
    )
    return [
        {
            "item_id": r["item_id"],
            "title": r["title"],
            "kind": r["kind"],
            "start": r["starts_at"].isoformat(),
            "end": r["ends_at"].isoformat(),
            "capacity": r["capacity"],
            "participants": len(r["participants"]),
        }
        for r in rows
    ]


async def co_organisers(conn: asyncpg.Connection, event_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM co_organisers WHERE event_id = $1 ORDER BY added_at", event_id
    )
    return [
        {
            "co_organiser_id": r["co_organiser_id"],
            "office_id": r["office_id"],
            "name": r["name"],
            "email": r["email"],
            "added_at": r["added_at"].isoformat(),
            "removed": r["removed_at"] is not None,
        }
        for r in rows
    ]


async def who_am_i(conn: asyncpg.Connection, who: Principal) -> dict[str, Any]:
    """Whom a key belongs to (the web portal signs in with it)."""
    me: dict[str, Any] = {"role": who.role.value, "id": who.id, "name": None, "event_id": None}
    if who.role is Role.ORGANISATION:
        row = await conn.fetchrow(
            "SELECT name, event_id, status FROM registrations WHERE registration_id = $1", who.id
        )
        if row is not None:
            me.update(name=row["name"], event_id=row["event_id"], status=row["status"])
    elif who.role is Role.CO_ORGANISER:
        row = await conn.fetchrow(
            "SELECT name, event_id, office_id FROM co_organisers WHERE co_organiser_id = $1",
            who.id,
        )
        if row is not None:
            me.update(name=row["name"], event_id=row["event_id"], office_id=row["office_id"])
    elif who.role is Role.ORGANISER:
        me["name"] = await conn.fetchval(
            "SELECT name FROM organisers WHERE organiser_id = $1", who.id
        )
        rows = await conn.fetch(
            "SELECT event_id FROM brokerage_events WHERE organiser_id = $1 ORDER BY created_at",
            who.id,
        )
        me["events"] = [r["event_id"] for r in rows]
    return me
