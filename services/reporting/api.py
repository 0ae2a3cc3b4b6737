"""Reporting's HTTP API: events, the event report (JSON, Markdown, HTML), and the
attendance / feedback / outcome commands, and the organiser's feedback invitations."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from services.reporting import handlers, report
from shared.api import Caller, IdempotencyKey, run_command
from shared.contracts.reporting import AgreementKind, Outcome, Rating
from shared.problems import ProblemError
from shared.runtime import runtime_of
from shared.settings import ReportingSettings

router = APIRouter()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


@router.get("/api/events", summary="Brokerage events known to reporting (ids and names)")
async def list_events(request: Request) -> list[dict[str, Any]]:
    rows = await runtime_of(request).pool.fetch(
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


async def _report(request: Request, event_id: str) -> dict[str, Any]:
    async with (
        runtime_of(request).pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        event = await conn.fetchrow("SELECT * FROM brokerage_events WHERE event_id = $1", event_id)
        if event is None:
            raise ProblemError(404, "Not found", f"brokerage event {event_id} not found")

        async def rows(table: str) -> list[asyncpg.Record]:
            return list(await conn.fetch(f"SELECT * FROM {table} WHERE event_id = $1", event_id))

        return report.build(
            {**dict(event), "days": json.loads(event["days"])},
            await rows("registrations"),
            await rows("meetings"),
            await rows("placements"),
            await rows("requests"),
            await rows("attendance"),
            await rows("not_held"),
            await rows("feedback"),
            await rows("outcomes"),
            await rows("side_programme"),
        )


@router.get("/api/events/{event_id}/report", summary="The event report (JSON)")
async def report_json(request: Request, event_id: str) -> dict[str, Any]:
    return await _report(request, event_id)


@router.get(
    "/api/events/{event_id}/report.md",
    summary="The event report (Markdown)",
    response_class=PlainTextResponse,
)
async def report_markdown(request: Request, event_id: str) -> PlainTextResponse:
    return PlainTextResponse(
        report.markdown(await _report(request, event_id)), media_type="text/markdown"
    )


@router.get(
    "/events/{event_id}/report", summary="The event report (HTML page)", response_class=HTMLResponse
)
async def report_page(request: Request, event_id: str) -> HTMLResponse:
    return HTMLResponse(report.page(await _report(request, event_id)))


@router.get(
    "/api/events/{event_id}/meetings", summary="Meetings of an event as reporting knows them"
)
async def meetings(request: Request, event_id: str) -> list[dict[str, Any]]:
    rows = await runtime_of(request).pool.fetch(
        "SELECT m.meeting_id, m.meeting_type, m.mode, m.participants, m.cancelled,"
        " coalesce(p.placed, false) AS placed, p.slot_start, p.slot_end, p.table_no,"
        " n.meeting_id IS NOT NULL AS marked_not_held"
        " FROM meetings m LEFT JOIN placements p USING (meeting_id)"
        " LEFT JOIN not_held n USING (meeting_id) WHERE m.event_id = $1 ORDER BY p.slot_start",
        event_id,
    )
    return [
        {
            **dict(r),
            "slot_start": r["slot_start"].isoformat() if r["slot_start"] else None,
            "slot_end": r["slot_end"].isoformat() if r["slot_end"] else None,
        }
        for r in rows
    ]


# -- commands -------------------------------------------------------------------------


@router.post("/api/events/{event_id}/attendance", summary="Record who came (organiser)")
async def record_attendance(
    request: Request,
    event_id: str,
    body: AttendanceBody,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.record_attendance(
            conn, who, event_id, body.registration_id, body.attended, cid
        ),
    )


@router.post(
    "/api/events/{event_id}/meetings/{meeting_id}/not-held",
    summary="Record that a meeting did not take place (organiser)",
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
    base = (settings.reporting_public_url or str(request.base_url)).rstrip("/")
    return lambda meeting_id: f"{base}/api/events/{event_id}/meetings/{meeting_id}/feedback"


@router.post(
    "/api/events/{event_id}/feedback-invitations",
    status_code=202,
    summary="Invite the participants to rate their held meetings (organiser); each call is a "
    "new round, and notification emails each invited participant once per round",
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
