"""Reporting's reads for the routes: the events, the report as the caller may see it, and
the meetings, within the grant the access policy gave."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from services.reporting import dashboard_queries, offices
from shared.access.policy import Grant, Relation, Scope
from shared.errors import NotFound


async def events(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT event_id, name, venue, days FROM brokerage_events ORDER BY created_at"
    )
    return [
        {
            "event_id": r["event_id"],
            "name": r["name"],
            "venue": r["venue"],
            "days": json.loads(r["days"]),
            "report": f"/events/{r['event_id']}/report",
            "dashboard": f"/events/{r['event_id']}/dashboard",
            "dashboard_link": f"/api/events/{r['event_id']}/dashboard-link",
        }
        for r in rows
    ]


async def report(conn: asyncpg.Connection, event_id: str, grant: Grant) -> dict[str, Any]:
    """The report: public, with figures only. Its organisers see more: the lead organiser
    (and the admin) the names of the remote participants and the figures by support
    office; a co-organiser the report of its office's participants."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        data = await dashboard_queries.event_rows(conn, event_id)
    if data is None:
        raise NotFound("brokerage event", event_id)
    if grant.relation in (Relation.ADMIN, Relation.LEAD_ORGANISER):
        built = data.rows.report()
        built["by_office"] = offices.by_office(data.rows, data.declared, data.office_of)
        return built
    office = grant.office if grant.relation is Relation.CO_ORGANISER else None
    if office is not None:
        built = offices.share(data.rows, data.office_of, office).report()
        listed = offices.offices_of(data.declared, data.office_of)
        built["office"] = next(
            (o for o in listed if o["office_id"] == office), {"office_id": office, "name": office}
        )
    else:
        built = data.rows.report()
    built["remote"] = {k: v for k, v in built["remote"].items() if k != "names"}
    return built


async def meetings(conn: asyncpg.Connection, event_id: str, grant: Grant) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT m.meeting_id, m.meeting_type, m.mode, m.participants, m.cancelled,"
        " coalesce(p.placed, false) AS placed, p.slot_start, p.slot_end, p.table_no,"
        " n.meeting_id IS NOT NULL AS marked_not_held"
        " FROM meetings m LEFT JOIN placements p USING (meeting_id)"
        " LEFT JOIN not_held n USING (meeting_id) WHERE m.event_id = $1"
        " AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM access_registrations a"
        "   WHERE a.registration_id = ANY(m.participants) AND a.office_id = $2))"
        " AND ($3::text IS NULL OR $3 = ANY(m.participants))"
        " ORDER BY p.slot_start",
        event_id,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    return [
        {
            **dict(r),
            "slot_start": r["slot_start"].isoformat() if r["slot_start"] else None,
            "slot_end": r["slot_end"].isoformat() if r["slot_end"] else None,
        }
        for r in rows
    ]
