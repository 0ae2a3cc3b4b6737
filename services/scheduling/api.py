"""Scheduling's HTTP API: the agenda (read), and the organiser's commands on it.

Who may call each route is declared with it (`shared.access`): organisers act on their
own events, the platform admin on all; co-organisers read their support office's part; a
participant reads its own agenda with its organisation's key. Errors are problem details.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from services.scheduling import handlers, views
from shared.access.guard import AccessRouter, requires
from shared.access.policy import Action
from shared.api import Caller, Granted, IdempotencyKey, run_command
from shared.bodies import RequestBody
from shared.runtime import runtime_of

router = AccessRouter(prefix="/api", tags=["agenda"])

T = TypeVar("T")


class ReoptimiseBody(RequestBody):
    time_limit_seconds: float = Field(
        default=3.0, gt=0, le=60, description="Wall time the optimiser may use"
    )
    max_idle_spread: int | None = Field(
        default=None,
        ge=0,
        description="Fairness: the idle slots of any two participants differ by at most this",
    )


class WindowBody(RequestBody):
    allowed_slots: list[str] | None = Field(
        description="Slot ids (as in the agenda) the meetings of this type may take; null: any"
    )


async def _read(request: Request, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async with runtime_of(request).pool.acquire() as conn:
        return await query(conn)


# -- queries ---------------------------------------------------------------------------


@router.get(
    "/events/{event_id}/agenda",
    summary="The event's agenda: slots x tables, online meetings beside (its organisers; a"
    " co-organiser sees its support office's meetings, a participant its own)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def agenda(request: Request, event_id: str, grant: Granted) -> dict[str, Any]:
    return await _read(request, lambda conn: views.agenda(conn, grant, event_id))


@router.get(
    "/events/{event_id}/participants/{registration_id}/agenda",
    summary="A participant's meetings, in the event's time zone and in `tz`",
    openapi_extra=requires(Action.VIEW_REGISTRATION),
)
async def participant_agenda(
    request: Request,
    event_id: str,
    registration_id: str,
    tz: Annotated[str | None, Query(description="IANA zone, e.g. Europe/Paris")] = None,
) -> dict[str, Any]:
    return await _read(
        request, lambda conn: views.participant_agenda(conn, event_id, registration_id, tz)
    )


@router.get(
    "/events/{event_id}/unscheduled",
    summary="Accepted meetings without a slot, with the reason",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def unscheduled(request: Request, event_id: str, grant: Granted) -> list[dict[str, Any]]:
    return await _read(request, lambda conn: views.unscheduled(conn, grant, event_id))


@router.get(
    "/events/{event_id}/attendees",
    summary="Attendees of an event, as scheduling knows them (organisers; a co-organiser its"
    " office's, a participant itself)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def attendees(request: Request, event_id: str, grant: Granted) -> list[dict[str, Any]]:
    return await _read(request, lambda conn: views.attendees(conn, grant, event_id))


# -- commands --------------------------------------------------------------------------


@router.post(
    "/events/{event_id}/reoptimise",
    summary="Re-place every unlocked meeting (the organiser, before publication)",
    description="Places as many meetings as possible with the least idle time, keeping locked"
    " meetings where they are; announces every move, release and new placement. 409 once the"
    " agenda is published.",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def reoptimise(
    request: Request,
    event_id: str,
    who: Caller,
    body: ReoptimiseBody | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = body or ReoptimiseBody()
    limit = body.time_limit_seconds
    spread = body.max_idle_spread
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.reoptimise(conn, who, event_id, limit, cid, spread),
    )


@router.put(
    "/events/{event_id}/slot-rules/{meeting_type}",
    summary="A time window for a meeting type (e.g. Business2Cluster in the afternoon only)",
    description="The meetings of this type (Cluster2Cluster, Business2Cluster,"
    " Business2Business) may take only these slots from now on, in every placement;"
    " re-optimise to move those already placed. `null` lifts the window. Locked meetings"
    " stay where they are. Each change is recorded.",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def set_window(
    request: Request,
    event_id: str,
    meeting_type: str,
    body: WindowBody,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    slots = body.allowed_slots
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.set_window(conn, who, event_id, meeting_type, slots, cid),
    )


@router.get(
    "/events/{event_id}/slot-rules",
    summary="The time windows per meeting type in force (the organiser)",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def windows(request: Request, event_id: str) -> dict[str, Any]:
    return await _read(request, lambda conn: views.windows(conn, event_id))


def _lock_route(locked: bool) -> Callable[..., Awaitable[JSONResponse]]:
    async def route(
        request: Request,
        event_id: str,
        meeting_id: str,
        who: Caller,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return await run_command(
            request,
            who,
            idempotency_key,
            None,
            lambda conn, cid: handlers.set_locked(conn, who, event_id, meeting_id, locked, cid),
        )

    return route


router.add_api_route(
    "/events/{event_id}/meetings/{meeting_id}/lock",
    _lock_route(True),
    methods=["POST"],
    summary="Lock a placed meeting where it is (re-optimisation will not move it)",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
router.add_api_route(
    "/events/{event_id}/meetings/{meeting_id}/unlock",
    _lock_route(False),
    methods=["POST"],
    summary="Unlock a meeting",
    openapi_extra=requires(Action.MANAGE_EVENT),
)


@router.post(
    "/events/{event_id}/publish",
    summary="Publish the agenda (AgendaPublished); from then on nothing moves automatically",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def publish(
    request: Request, event_id: str, who: Caller, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        None,
        lambda conn, cid: handlers.publish(conn, who, event_id, cid),
    )
