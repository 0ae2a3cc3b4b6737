"""Matching's HTTP API (participants as matching knows them; recommendations come next)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shared.runtime import runtime_of

router = APIRouter(prefix="/api")


@router.get(
    "/events/{event_id}/participants", summary="Participants of an event, as matching knows them"
)
async def participants(
    request: Request, event_id: str, status: str | None = None
) -> list[dict[str, Any]]:
    rows = await runtime_of(request).pool.fetch(
        "SELECT registration_id, organisation_type, name, country, sectors, attendance, status"
        " FROM participants WHERE event_id = $1 AND ($2::text IS NULL OR status = $2)"
        " ORDER BY name",
        event_id,
        status,
    )
    return [dict(r) for r in rows]
