"""Matching's spreadsheet export: the meeting requests and their states, times in the
event's time zone (a co-organiser: those of its office's participants; a participant:
its own)."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import Request
from fastapi.responses import Response

from shared.access.guard import AccessRouter, Granted, requires
from shared.access.policy import Action, Grant, Scope
from shared.problems import ProblemError
from shared.runtime import runtime_of
from shared.sheets import Cell, Sheet, documented, local_time, sheet_response

router = AccessRouter(prefix="/api", tags=["spreadsheets"])


async def requests_sheet(conn: asyncpg.Connection, grant: Grant, event_id: str) -> Sheet:
    zone_name = await conn.fetchval(
        "SELECT coalesce(time_zone, 'UTC') FROM brokerage_events WHERE event_id = $1", event_id
    )
    if zone_name is None:
        raise ProblemError(404, "Not found", f"brokerage event {event_id} not found")
    zone = ZoneInfo(zone_name)
    rows = await conn.fetch(
        "SELECT m.*, a.name AS requester_name, b.name AS recipient_name FROM meeting_requests m"
        " LEFT JOIN participants a ON a.registration_id = m.requester_id"
        " LEFT JOIN participants b ON b.registration_id = m.recipient_id"
        " WHERE m.event_id = $1"
        " AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM access_registrations x"
        "   WHERE x.registration_id IN (requester_id, recipient_id) AND x.office_id = $2))"
        " AND ($3::text IS NULL OR $3 IN (requester_id, recipient_id))"
        " ORDER BY m.created_at, m.request_id",
        event_id,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    lines: list[list[Cell]] = [
        [
            r["request_id"],
            r["requester_id"],
            r["requester_name"],
            r["recipient_id"],
            r["recipient_name"],
            r["meeting_type"],
            r["status"],
            r["mode"],
            r["arranged_by_organiser"],
            r["mutual"],
            r["reason"],
            local_time(r["created_at"], zone),
            local_time(r["updated_at"], zone),
            local_time(r["expires_at"], zone),
        ]
        for r in rows
    ]
    headers = [
        "request_id",
        "requester_id",
        "requester",
        "recipient_id",
        "recipient",
        "meeting_type",
        "status",
        "mode",
        "arranged_by_organiser",
        "mutual",
        "reason",
        f"requested ({zone_name})",
        f"last change ({zone_name})",
        f"expires ({zone_name})",
    ]
    return Sheet("Meeting requests", headers, lines)


@router.get(
    "/events/{event_id}/meeting-requests/export.{fmt}",
    response_class=Response,
    responses=documented("csv", "xlsx"),
    summary="Meeting requests and their states as CSV or XLSX (its organisers; a co-organiser"
    " those of its office's participants, a participant its own)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def export_requests(
    request: Request, event_id: str, fmt: Literal["csv", "xlsx"], grant: Granted
) -> Response:
    async with runtime_of(request).pool.acquire() as conn:
        sheet = await requests_sheet(conn, grant, event_id)
    return sheet_response([sheet], fmt, "meeting-requests")
