"""Registration's spreadsheet reads: the participants, with what the caller may see."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import asyncpg

from services.registration import handlers
from shared.access.policy import Grant, Scope
from shared.sheets import Cell, Sheet, cell, local_time

PARTICIPANT_HEADERS = [
    "registration_id",
    "name",
    "organisation_type",
    "country",
    "sectors",
    "technologies",
    "value_chain_position",
    "markets",
    "offers",
    "requests",
    "attendance",
    "status",
    "support_office",
    "representatives",
    "emails",
]


async def participants(conn: asyncpg.Connection, grant: Grant, event_id: str) -> Sheet:
    """Every registration the grant covers (a co-organiser: its office's; a participant:
    itself), with its profile and its representatives' contact details, which each of
    them may read; registration times in the event's zone, named in the header."""
    event = await handlers.load_event(conn, event_id)
    zone = ZoneInfo(event.time_zone)
    rows = await conn.fetch(
        "SELECT r.*, a.office_id FROM registrations r"
        " JOIN access_registrations a USING (registration_id) WHERE r.event_id = $1"
        " AND ($2::text IS NULL OR a.office_id = $2)"
        " AND ($3::text IS NULL OR r.registration_id = $3)"
        " ORDER BY r.registered_at, r.registration_id",
        event_id,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    lines: list[list[Cell]] = []
    for r in rows:
        profile = json.loads(r["profile"])
        people = await handlers.representatives_of(
            conn, r["registration_id"], profile["representatives_encrypted"]
        )
        erased = people is None
        lines.append(
            [
                r["registration_id"],
                r["name"],
                r["organisation_type"],
                r["country"],
                cell(profile.get("sectors")),
                cell(profile.get("technologies")),
                profile.get("value_chain_position"),
                cell(profile.get("markets")),
                cell(profile.get("offers")),
                cell(profile.get("requests")),
                r["attendance"],
                r["status"],
                r["office_id"],
                "(erased)" if erased else cell([p["name"] for p in people or []]),
                "(erased)" if erased else cell([p["email"] for p in people or []]),
                local_time(r["registered_at"], zone),
            ]
        )
    return Sheet(
        "Participants",
        [*PARTICIPANT_HEADERS, f"registered ({event.time_zone})"],
        lines,
    )
