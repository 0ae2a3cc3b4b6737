"""Matching's HTTP API: the participant directory and meeting requests (thin routes over
the handlers and the projection).

Who may call each route is declared with it (`shared.access`): participants act with
their organisation's key (the requester is the caller); organisers with theirs, on
their own events only; co-organisers read what concerns their support office.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from services.matching import handlers, views
from services.matching.domain import Status
from shared.access.guard import AccessRouter, RowTarget, own_registration, requires, target_of
from shared.access.policy import Action, RegistrationStatus
from shared.api import Caller, Granted, IdempotencyKey, run_command
from shared.bodies import RequestBody
from shared.contracts.matching import PartOfDay, TimePreference
from shared.contracts.registration import MeetingType
from shared.runtime import runtime_of

router = AccessRouter(prefix="/api")
_Body = RequestBody


# A meeting request concerns its event and its two participants; read in the guard's
# one statement with the key and the caller's standing.
request_parties = RowTarget(
    table="meeting_requests",
    key="request_id",
    event_column="event_id",
    registration_columns=("requester_id", "recipient_id"),
)


def _parties(request: Request) -> tuple[str, ...]:
    """The request's two participants as the guard read them (`request_parties`)."""
    target = target_of(request)
    return target.registrations if target is not None else ()


class TimePreferenceBody(_Body):
    """When the requester would like to meet; every criterion given must hold."""

    part_of_day: PartOfDay | None = Field(
        default=None, description="morning (slots starting before noon) or afternoon"
    )
    day: int | None = Field(default=None, ge=1, le=366, description="the event's day, 1 first")
    slots: list[Annotated[str, Field(pattern=r"^d[0-9]{1,3}-s[0-9]{1,2}-[0-9]{2,3}$")]] | None = (
        Field(
            default=None,
            min_length=1,
            max_length=500,
            description="slot ids of the event's grid (as in the agenda), e.g. d1-s1-03",
        )
    )

    @model_validator(mode="after")
    def _says_something(self) -> TimePreferenceBody:
        if self.part_of_day is None and self.day is None and self.slots is None:
            raise ValueError("give part_of_day, day or slots (or leave time_preference out)")
        return self

    def contract(self) -> TimePreference:
        return TimePreference(
            part_of_day=self.part_of_day,
            day=self.day,
            slots=None if self.slots is None else list(dict.fromkeys(self.slots)),
        )


class NewMeetingRequest(_Body):
    recipient_id: str = Field(min_length=1, max_length=100)
    message: str | None = Field(default=None, max_length=2000)
    language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}$",
        description="the language proposed for the meeting (ISO 639-1), sent with a message",
    )
    time_preference: TimePreferenceBody | None = Field(
        default=None,
        description="when the requester would like to meet; scheduling keeps to it within the"
        " organiser's rule for the meeting type (a meeting left with no slot is reported"
        " unschedulable, with the reason)",
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
    wanted = views.DirectoryFilter(status, q, country, sector)
    async with runtime_of(request).pool.acquire() as conn:
        return await views.directory(conn, event_id, grant, wanted)


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
            conn,
            who,
            event_id,
            body.recipient_id,
            body.message,
            cid,
            language=body.language,
            time_preference=None
            if body.time_preference is None
            else body.time_preference.contract(),
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
        lambda conn, cid: handlers.accept(conn, who, request_id, cid, parties=_parties(request)),
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
        lambda conn, cid: handlers.decline(
            conn, who, request_id, reason, cid, parties=_parties(request)
        ),
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
        lambda conn, cid: handlers.cancel(
            conn, who, request_id, reason, cid, parties=_parties(request)
        ),
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
        return await views.request(conn, request_id)


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
    async with runtime_of(request).pool.acquire() as conn:
        return await views.own_requests(conn, who.id, direction, status, limit, offset)


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
    wanted = views.RequestFilter(status, participant_id, meeting_type, arranged_by_organiser)
    async with runtime_of(request).pool.acquire() as conn:
        return await views.event_requests(conn, event_id, grant, wanted, limit, offset)
