"""Reporting's HTTP API: events, the event report (JSON, Markdown, HTML), and the
attendance / feedback / outcome commands, and the organiser's feedback invitations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import Field

from services.reporting import handlers, report, views
from shared.access.guard import AccessRouter, requires
from shared.access.policy import Action
from shared.api import Caller, Granted, IdempotencyKey, run_command
from shared.bodies import RequestBody
from shared.contracts.reporting import AgreementKind, Outcome, Rating
from shared.runtime import runtime_of
from shared.settings import ReportingSettings

router = AccessRouter()
_Body = RequestBody


class AttendanceBody(_Body):
    registration_id: str = Field(min_length=1, max_length=100)
    attended: bool = True


class NotHeldBody(_Body):
    reason: str | None = Field(default=None, max_length=2000)


class FeedbackBody(_Body):
    rating: Rating
    comment: str | None = Field(default=None, max_length=4000)


class OutcomeBody(_Body):
    outcome: Outcome
    kind: AgreementKind | None = None
    note: str | None = Field(default=None, max_length=4000)


# -- reads ----------------------------------------------------------------------------


@router.get(
    "/api/events",
    summary="Brokerage events known to reporting (ids and names)",
    openapi_extra=requires(Action.VIEW_PUBLIC),
)
async def list_events(request: Request) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.events(conn)


async def _report(request: Request, event_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.report(conn, event_id, request.state.grant)


@router.get(
    "/api/events/{event_id}/report",
    summary="The event report (JSON, public: figures only)",
    openapi_extra=requires(Action.VIEW_PUBLIC),
)
async def report_json(request: Request, event_id: str) -> dict[str, Any]:
    return await _report(request, event_id)


@router.get(
    "/api/events/{event_id}/report.md",
    summary="The event report (Markdown, public: figures only)",
    response_class=PlainTextResponse,
    openapi_extra=requires(Action.VIEW_PUBLIC),
)
async def report_markdown(request: Request, event_id: str) -> PlainTextResponse:
    return PlainTextResponse(
        report.markdown(await _report(request, event_id)), media_type="text/markdown"
    )


@router.get(
    "/events/{event_id}/report",
    summary="The event report (HTML page, public: figures only)",
    response_class=HTMLResponse,
    openapi_extra=requires(Action.VIEW_PUBLIC),
)
async def report_page(request: Request, event_id: str) -> HTMLResponse:
    return HTMLResponse(report.page(await _report(request, event_id)))


@router.get(
    "/api/events/{event_id}/meetings",
    summary="Meetings of an event as reporting knows them (its organisers; a co-organiser"
    " those of its office's participants, a participant its own)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def meetings(request: Request, event_id: str, grant: Granted) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.meetings(conn, event_id, grant)


# -- commands -------------------------------------------------------------------------


@router.post(
    "/api/events/{event_id}/attendance",
    summary="Record who came (organisers; a co-organiser for its office)",
    openapi_extra=requires(Action.RECORD_ATTENDANCE),
)
async def record_attendance(
    request: Request,
    event_id: str,
    body: AttendanceBody,
    who: Caller,
    grant: Granted,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.record_attendance(
            conn, grant, event_id, body.registration_id, body.attended, cid
        ),
    )


@router.post(
    "/api/events/{event_id}/meetings/{meeting_id}/not-held",
    summary="Record that a meeting did not take place (organiser)",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def mark_not_held(
    request: Request,
    event_id: str,
    meeting_id: str,
    who: Caller,
    body: NotHeldBody | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    reason = body.reason if body else None
    return await run_command(
        request,
        who,
        idempotency_key,
        {"reason": reason},
        lambda conn, cid: handlers.mark_not_held(conn, who, event_id, meeting_id, reason, cid),
    )


@router.post(
    "/api/events/{event_id}/meetings/{meeting_id}/feedback",
    summary="Rate a meeting (one of its participants)",
    openapi_extra=requires(Action.GIVE_FEEDBACK),
)
async def give_feedback(
    request: Request,
    event_id: str,
    meeting_id: str,
    body: FeedbackBody,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(mode="json"),
        lambda conn, cid: handlers.give_feedback(
            conn, who, event_id, meeting_id, body.rating, body.comment, cid
        ),
    )


@router.post(
    "/api/events/{event_id}/meetings/{meeting_id}/outcome",
    summary="Report what came of a meeting (one of its participants)",
    openapi_extra=requires(Action.GIVE_FEEDBACK),
)
async def report_outcome(
    request: Request,
    event_id: str,
    meeting_id: str,
    body: OutcomeBody,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(mode="json"),
        lambda conn, cid: handlers.report_outcome(
            conn, who, event_id, meeting_id, body.outcome, body.kind, body.note, cid
        ),
    )


def _feedback_url(request: Request, event_id: str) -> Callable[[str], str]:
    settings = runtime_of(request).settings
    assert isinstance(settings, ReportingSettings)
    if settings.portal_public_url:
        portal = settings.portal_public_url.rstrip("/")
        return lambda meeting_id: f"{portal}/events/{event_id}/meetings/{meeting_id}/rate"
    base = (settings.reporting_public_url or str(request.base_url)).rstrip("/")
    return lambda meeting_id: f"{base}/api/events/{event_id}/meetings/{meeting_id}/feedback"


@router.post(
    "/api/events/{event_id}/feedback-invitations",
    status_code=202,
    summary="Invite the participants to rate their held meetings (organiser); each call is a "
    "new round, and notification emails each invited participant once per round",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def request_feedback_invitations(
    request: Request,
    event_id: str,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    url = _feedback_url(request, event_id)
    return await run_command(
        request,
        who,
        idempotency_key,
        {},
        lambda conn, cid: handlers.request_feedback_invitations(conn, who, event_id, url, cid),
        202,
    )
