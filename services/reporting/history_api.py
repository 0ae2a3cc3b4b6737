"""The readable history over HTTP: an event's and a registration's events, oldest first,
with who caused each; and the agenda as it stood at a given time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request

from services.reporting import history
from shared.access.guard import AccessRouter, requires
from shared.access.policy import Action
from shared.api import Granted
from shared.runtime import runtime_of

router = AccessRouter(prefix="/api", tags=["history"])

After = Annotated[int, Query(ge=0, description="the `cursor` of the last entry already read")]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _answer(page: history.Page) -> dict[str, Any]:
    return {"entries": page.entries, "next_cursor": page.next_cursor}


@router.get(
    "/events/{event_id}/history",
    summary="The event's events, oldest first, with who caused each (its organisers; a"
    " co-organiser what concerns its office's participants, a participant itself)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def event_history(
    request: Request, event_id: str, grant: Granted, after: After = 0, limit: Limit = 200
) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return _answer(await history.event_history(conn, event_id, grant, after, limit))


@router.get(
    "/registrations/{registration_id}/history",
    summary="The events that concern a registration, oldest first (the organisation, its"
    " organisers)",
    openapi_extra=requires(Action.VIEW_REGISTRATION),
)
async def registration_history(
    request: Request, registration_id: str, after: After = 0, limit: Limit = 200
) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return _answer(await history.registration_history(conn, registration_id, after, limit))


@router.get(
    "/events/{event_id}/agenda-at",
    summary="The agenda as it stood at `at` (e.g. before a re-optimisation), from the events",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def agenda_at(
    request: Request,
    event_id: str,
    grant: Granted,
    at: Annotated[datetime, Query(description="an ISO 8601 time with offset")],
) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        meetings = await history.agenda_at(conn, event_id, at, grant)
    return {"event_id": event_id, "at": at.isoformat(), "meetings": meetings}
