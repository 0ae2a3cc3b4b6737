"""Matching's HTTP API: meeting requests (thin routes over the handlers and the projection).

Participants act with their organisation's key (the requester is the caller);
organisers with theirs, on their own events only; the platform admin on all.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.matching import handlers
from services.matching.domain import Status
from shared.api import Caller, IdempotencyKey, as_problem, run_command
from shared.contracts.registration import MeetingType
from shared.errors import Forbidden, NotFound
from shared.problems import ProblemError
from shared.runtime import runtime_of

router = APIRouter(prefix="/api")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewMeetingRequest(_Body):
    recipient_id: str = Field(min_length=1, max_length=100)
    message: str | None = Field(default=None, max_length=2000)


class ReasonBody(_Body):
    reason: str | None = Field(default=None, max_length=2000)


class NewMeeting(_Body):
    participants: list[str] = Field(
        min_length=2, max_length=2, description="The two participants' registration ids"
    )


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


# -- commands -----------------------------------------------------------------------


@router.post(
    "/events/{event_id}/meeting-requests",
    status_code=201,
    summary="Ask another participant for a meeting (the calling organisation requests)",
    description="If the recipient's own request to the caller is pending, that request is "
    "accepted instead: two requests in opposite directions make one meeting.",
)
async def request_meeting(
    request: Request,
    event_id: str,
    body: NewMeetingRequest,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.request_meeting(
            conn, who, event_id, body.recipient_id, body.message, cid
        ),
        201,
    )


@router.post("/meeting-requests/{request_id}/accept", summary="Accept a request (the recipient)")
async def accept(
    request: Request, request_id: str, who: Caller, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        None,
        lambda conn, cid: handlers.accept(conn, who, request_id, cid),
    )


@router.post("/meeting-requests/{request_id}/decline", summary="Decline a request (the recipient)")
async def decline(
    request: Request,
    request_id: str,
    who: Caller,
    body: ReasonBody | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    reason = body.reason if body else None
    return await run_command(
        request,
        who,
        idempotency_key,
        {"reason": reason},
        lambda conn, cid: handlers.decline(conn, who, request_id, reason, cid),
    )


@router.post(
    "/meeting-requests/{request_id}/cancel",
    summary="Cancel a pending request or an accepted meeting (either side, or the organiser)",
)
async def cancel(
    request: Request,
    request_id: str,
    who: Caller,
    body: ReasonBody | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    reason = body.reason if body else None
    return await run_command(
        request,
        who,
        idempotency_key,
        {"reason": reason},
        lambda conn, cid: handlers.cancel(conn, who, request_id, reason, cid),
    )


@router.post(
    "/events/{event_id}/meetings",
    status_code=201,
    summary="Arrange a meeting between two participants, accepted at once (the organiser)",
)
async def arrange(
    request: Request,
    event_id: str,
    body: NewMeeting,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.arrange(conn, who, event_id, body.participants, cid),
        201,
    )


# -- queries ------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/meeting-requests/{request_id}", summary="One meeting request")
async def get_request(request: Request, request_id: str, who: Caller) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        try:
            found = await handlers.view(conn, request_id)
            parties = (found["requester_id"], found["recipient_id"])
            if not (who.role == "organisation" and who.id in parties):
                event = await handlers.load_event(conn, found["event_id"])
                handlers.authorise_organiser(who, event)
        except (NotFound, Forbidden) as exc:
            raise as_problem(exc) from exc
    return found


@router.get(
    "/me/meeting-requests",
    summary="The calling organisation's meeting requests, incoming and/or outgoing, by status",
)
async def my_requests(
    request: Request,
    who: Caller,
    direction: Literal["incoming", "outgoing"] | None = None,
    status: Status | None = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    if who.role != "organisation":
        raise ProblemError(403, "Forbidden", "only an organisation's key has meeting requests")
    rows = await runtime_of(request).pool.fetch(
        "SELECT * FROM meeting_requests WHERE"
        " (($2::text IS NULL AND (requester_id = $1 OR recipient_id = $1))"
        "  OR ($2 = 'outgoing' AND requester_id = $1) OR ($2 = 'incoming' AND recipient_id = $1))"
        " AND ($3::text IS NULL OR status = $3)"
        " ORDER BY created_at DESC, request_id LIMIT $4 OFFSET $5",
        who.id,
        direction,
        status,
        limit,
        offset,
    )
    return [handlers.as_view(r) for r in rows]


@router.get(
    "/events/{event_id}/meeting-requests",
    summary="All meeting requests of an event, filtered (the event's organiser)",
)
async def event_requests(
    request: Request,
    event_id: str,
    who: Caller,
    status: Status | None = None,
    participant_id: str | None = None,
    meeting_type: MeetingType | None = None,
    arranged_by_organiser: bool | None = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    pool = runtime_of(request).pool
    async with pool.acquire() as conn:
        try:
            handlers.authorise_organiser(who, await handlers.load_event(conn, event_id))
        except (NotFound, Forbidden) as exc:
            raise as_problem(exc) from exc
        rows = await conn.fetch(
            "SELECT * FROM meeting_requests WHERE event_id = $1"
            " AND ($2::text IS NULL OR status = $2)"
            " AND ($3::text IS NULL OR requester_id = $3 OR recipient_id = $3)"
            " AND ($4::text IS NULL OR meeting_type = $4)"
            " AND ($5::boolean IS NULL OR arranged_by_organiser = $5)"
            " ORDER BY created_at, request_id LIMIT $6 OFFSET $7",
            event_id,
            status,
            participant_id,
            meeting_type,
            arranged_by_organiser,
            limit,
            offset,
        )
    return [handlers.as_view(r) for r in rows]
