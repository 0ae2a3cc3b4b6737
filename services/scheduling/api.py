"""Scheduling's HTTP API: the agenda (read), and the organiser's commands on it.

Organisers act with their key on their own events, the platform admin on all; a participant
reads its own agenda with its organisation's key. Errors are problem details.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.scheduling import handlers, views
from shared.api import Caller, IdempotencyKey, as_problem, run_command
from shared.errors import Forbidden, NotFound, RuleViolation
from shared.runtime import runtime_of

router = APIRouter(prefix="/api", tags=["agenda"])

T = TypeVar("T")


class ReoptimiseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time_limit_seconds: float = Field(
        default=3.0, gt=0, le=60, description="Wall time the optimiser may use"
    )
    max_idle_spread: int | None = Field(
        default=None,
        ge=0,
        description="Fairness: the idle slots of any two participants differ by at most this",
    )


class WindowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowed_slots: list[str] | None = Field(
        description="Slot ids (as in the agenda) the meetings of this type may take; null: any"
    )


async def _read(request: Request, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async with runtime_of(request).pool.acquire() as conn:
        try:
            return await query(conn)
        except (RuleViolation, NotFound, Forbidden) as exc:
            raise as_problem(exc) from exc


# -- queries ---------------------------------------------------------------------------


@router.get(
    "/events/{event_id}/agenda",
    summary="The event's agenda: slots x tables, online meetings beside (the organiser)",
)
async def agenda(request: Request, event_id: str, who: Caller) -> dict[str, Any]:
    return await _read(request, lambda conn: views.agenda(conn, who, event_id))


@router.get(
    "/events/{event_id}/participants/{registration_id}/agenda",
    summary="A participant's meetings, in the event's time zone and in `tz`",
)
async def participant_agenda(
    request: Request,
    event_id: str,
    registration_id: str,
    who: Caller,
    tz: Annotated[str | None, Query(description="IANA zone, e.g. Europe/Paris")] = None,
) -> dict[str, Any]:
    return await _read(
        request, lambda conn: views.participant_agenda(conn, who, event_id, registration_id, tz)
    )


@router.get(
    "/events/{event_id}/unscheduled", summary="Accepted meetings without a slot, with the reason"
)
async def unscheduled(request: Request, event_id: str, who: Caller) -> list[dict[str, Any]]:
    return await _read(request, lambda conn: views.unscheduled(conn, who, event_id))


# -- commands --------------------------------------------------------------------------


@router.post(
    "/events/{event_id}/reoptimise",
    summary="Re-place every unlocked meeting (the organiser, before publication)",
    description="Places as many meetings as possible with the least idle time, keeping locked"
    " meetings where they are; announces every move, release and new placement. 409 once the"
    " agenda is published.",
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
        lambda conn, _: handlers.set_window(conn, who, event_id, meeting_type, slots),
    )


@router.get(
    "/events/{event_id}/slot-rules",
    summary="The time windows per meeting type in force (the organiser)",
)
async def windows(request: Request, event_id: str, who: Caller) -> dict[str, Any]:
    return await _read(request, lambda conn: views.windows(conn, who, event_id))


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
            lambda conn, _: handlers.set_locked(conn, who, event_id, meeting_id, locked),
        )

    return route


router.add_api_route(
    "/events/{event_id}/meetings/{meeting_id}/lock",
    _lock_route(True),
    methods=["POST"],
    summary="Lock a placed meeting where it is (re-optimisation will not move it)",
)
router.add_api_route(
    "/events/{event_id}/meetings/{meeting_id}/unlock",
    _lock_route(False),
    methods=["POST"],
    summary="Unlock a meeting",
)


@router.post(
    "/events/{event_id}/publish",
    summary="Publish the agenda (AgendaPublished); from then on nothing moves automatically",
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
