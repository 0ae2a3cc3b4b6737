"""Matching's HTTP API: the participant directory and meeting requests (thin routes over
the handlers and the projection).

Who may call each route is declared with it (`shared.access`): participants act with
their organisation's key (the requester is the caller); organisers with theirs, on
their own events only; co-organisers read what concerns their support office.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from services.matching import handlers
from services.matching.domain import Status
from shared.access.guard import AccessRouter, Target, own_registration, requires
from shared.access.policy import Action, Principal, RegistrationStatus, Scope
from shared.api import Caller, Granted, IdempotencyKey, run_command
from shared.bodies import RequestBody
from shared.contracts.registration import DirectoryField, MeetingType
from shared.runtime import runtime_of

router = AccessRouter(prefix="/api")
_Body = RequestBody


async def request_parties(
    conn: asyncpg.Connection, path: Mapping[str, str], principal: Principal | None
) -> Target | None:
    """A meeting request concerns its event and its two participants."""
    row = await conn.fetchrow(
        "SELECT event_id, requester_id, recipient_id FROM meeting_requests WHERE request_id = $1",
        path["request_id"],
    )
    if row is None:
        return None
    return Target(row["event_id"], (row["requester_id"], row["recipient_id"]))


class NewMeetingRequest(_Body):
    recipient_id: str = Field(min_length=1, max_length=100)
    message: str | None = Field(default=None, max_length=2000)
    language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}$",
        description="the language proposed for the meeting (ISO 639-1), sent with a message",
    )


class ReasonBody(_Body):
    reason: str | None = Field(default=None, max_length=2000)


class NewMeeting(_Body):
    participants: list[str] = Field(
        min_length=2, max_length=2, description="The two participants' registration ids"
    )


@router.get(
    "/events/{event_id}/participants",
    summary="The participant directory: approved participants with what they publish",
    description="Shown to the event's approved participants and its organisers. Each entry"
    " has the name and organisation type, and the profile fields the participant chose to"
    " publish. The event's lead organiser (or the admin) sees every registration, every field"
    " and the status (filter with `status`).",
    openapi_extra=requires(Action.VIEW_DIRECTORY),
)
async def participants(
    request: Request,
    event_id: str,
    grant: Granted,
    status: RegistrationStatus | None = None,
    q: Annotated[str | None, Query(max_length=200, description="words in name or profile")] = None,
    country: Annotated[str | None, Query(max_length=2)] = None,
    sector: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    full = grant.sees_everything
    rows = await runtime_of(request).pool.fetch(
        "SELECT registration_id, organisation_type, name, country, sectors, technologies,"
        " value_chain_position, markets, offers, requests, attendance, status, published"
        " FROM participants WHERE event_id = $1 AND ($2::text IS NULL OR status = $2)"
        " AND ($3::text IS NULL OR concat_ws(' ', name, array_to_string(offers, ' '),"
        "   array_to_string(requests, ' '), array_to_string(technologies, ' ')) ILIKE"
        "   '%' || $3 || '%')"
        " AND ($4::text IS NULL OR country = upper($4)) AND ($5::text IS NULL OR $5 = ANY(sectors))"
        " ORDER BY name",
        event_id,
        (status.value if status else None) if full else RegistrationStatus.APPROVED.value,
        q,
        country,
        sector,
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


# -- commands -----------------------------------------------------------------------


@router.post(
    "/events/{event_id}/meeting-requests",
    status_code=201,
    summary="Ask another participant for a meeting (the calling organisation requests)",
    description="If the recipient's own request to the caller is pending, that request is "
    "accepted instead: two requests in opposite directions make one meeting.",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT),
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
            conn, who, event_id, body.recipient_id, body.message, cid, language=body.language
        ),
        201,
    )


@router.post(
    "/meeting-requests/{request_id}/accept",
    summary="Accept a request (the recipient)",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT, target=request_parties),
)
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


@router.post(
    "/meeting-requests/{request_id}/decline",
    summary="Decline a request (the recipient)",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT, target=request_parties),
)
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
    openapi_extra=requires(Action.CANCEL_MEETING, target=request_parties),
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
    openapi_extra=requires(Action.MANAGE_EVENT),
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


@router.get(
    "/meeting-requests/{request_id}",
    summary="One meeting request (its two participants, their organisers)",
    openapi_extra=requires(Action.VIEW_ACTIVITY, target=request_parties),
)
async def get_request(request: Request, request_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return await handlers.view(conn, request_id)


@router.get(
    "/me/meeting-requests",
    summary="The calling organisation's meeting requests, incoming and/or outgoing, by status",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT, target=own_registration),
)
async def my_requests(
    request: Request,
    who: Caller,
    direction: Literal["incoming", "outgoing"] | None = None,
    status: Status | None = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
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
    summary="Meeting requests of an event, filtered (its organisers; a co-organiser sees those"
    " of its support office's participants, a participant its own)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def event_requests(
    request: Request,
    event_id: str,
    grant: Granted,
    status: Status | None = None,
    participant_id: str | None = None,
    meeting_type: MeetingType | None = None,
    arranged_by_organiser: bool | None = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    rows = await runtime_of(request).pool.fetch(
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
        status,
        participant_id,
        meeting_type,
        arranged_by_organiser,
        limit,
        offset,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    return [handlers.as_view(r) for r in rows]
