"""The organiser dashboard over HTTP: its JSON, its live stream and its page.

The stream (Server-Sent Events) sends the whole dashboard when a client connects
and again after each change of its event (`live.DashboardHub` wakes it), at most
a few times a second however many events arrive, with a comment line every
`HEARTBEAT_SECONDS` so proxies and the browser see the connection is alive. It
ends when the client goes away (Starlette cancels it) or the server stops.

The dashboard is the organisers': it answers them by API key (the rule is
`Action.VIEW_REPORT` in `shared.access`), or anyone holding the event's signed
dashboard link (`GET /api/events/{id}/dashboard-link`), which is what a browser
uses, since a page and its EventSource cannot send an API key header. A
co-organiser (by key or by its own link) sees its support office's participants
only; the lead organiser sees the whole event, with figures by support office. A link
expires (`shared.links.LIFETIMES`) and `POST .../dashboard-link/revoke` voids every
link of the event issued before it, answering with a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from services.reporting import dashboard_queries
from services.reporting.live import DashboardHub
from shared.access.guard import AccessRouter, Granted, requires
from shared.access.policy import Action, Grant, Relation, Scope
from shared.links import LinkState, check_link, revoke_links, sign_link
from shared.problems import ProblemError
from shared.runtime import runtime_of
from shared.settings import ReportingSettings

router = AccessRouter(tags=["dashboard"])

HEARTBEAT_SECONDS = 15.0
# After a change, wait this long before re-reading: the rest of a burst folds into it.
SETTLE_SECONDS = 0.25
RETRY_MILLISECONDS = 2000
STATIC_PATH = "/static/dashboard"


LINK_PURPOSE = "dashboard"


def _secret(request: Request) -> str:
    settings = runtime_of(request).settings
    assert isinstance(settings, ReportingSettings)
    return settings.reporting_link_secret


async def link_grant(request: Request) -> Grant | None:
    """The grant of a signed dashboard link in `?token=`, if the request carries one.

    A lead organiser's link (token parts [event id]) shows the whole event; a
    co-organiser's ([event id, office]) its office's participants, and only while the
    event has an active co-organiser for that office (removing it revokes the link)."""
    token = request.query_params.get("token")
    if token is None:
        return None
    event_id = request.path_params.get("event_id")
    pool = runtime_of(request).pool
    state, link = await check_link(pool, _secret(request), LINK_PURPOSE, token)
    if link is None or not link.parts or link.parts[0] != event_id or len(link.parts) > 2:
        raise ProblemError(403, "Forbidden", "this dashboard link is not valid for the event")
    if state is not LinkState.VALID:
        raise ProblemError(403, "Forbidden", f"this dashboard link is {state.value}")
    if len(link.parts) == 1:
        return Grant(None, Relation.LEAD_ORGANISER, Scope.EVENT)
    # A co-organiser's link: its office's view, while the office has a co-organiser.
    office = link.parts[1]
    active = await pool.fetchval(
        "SELECT 1 FROM access_co_organisers"
        " WHERE event_id = $1 AND office_id = $2 AND NOT removed LIMIT 1",
        event_id,
        office,
    )
    if not active:
        raise ProblemError(403, "Forbidden", "this dashboard link's office has no co-organiser")
    return Grant(None, Relation.CO_ORGANISER, Scope.OFFICE, office=office)


def office_of(grant: Grant) -> str | None:
    """The support office a grant is limited to (None: the whole event)."""
    if grant.scope is Scope.EVENT:
        return None
    if grant.scope is Scope.OFFICE and grant.office:
        return grant.office
    raise ProblemError(403, "Forbidden", "the dashboard is its organisers'")


Token = Annotated[str | None, Query(description="the signed dashboard link's token")]


def hub_of(request: Request) -> DashboardHub:
    hub: DashboardHub = request.app.state.dashboard_hub
    return hub


async def _load(request: Request, event_id: str) -> dict[str, Any]:
    grant: Grant = request.state.grant
    found = await dashboard_queries.load(runtime_of(request).pool, event_id, office_of(grant))
    if found is None:
        raise ProblemError(404, "Not found", f"brokerage event {event_id} not found")
    return found


def _message(data: dict[str, Any]) -> str:
    # json.dumps writes no newline, so the whole document is one `data:` line.
    return f"event: dashboard\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _changes(
    request: Request, hub: DashboardHub, event_id: str, first: dict[str, Any]
) -> AsyncIterator[str]:
    watcher = hub.watch(event_id)
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n" + _message(first)
        while not hub.closed.is_set():
            try:
                await asyncio.wait_for(watcher.changed.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if hub.closed.is_set():
                break
            await asyncio.sleep(SETTLE_SECONDS)
            watcher.changed.clear()  # before reading: a change from now on is read next time
            with contextlib.suppress(ProblemError):  # the event cannot vanish; if so, skip
                yield _message(await _load(request, event_id))
    finally:
        hub.unwatch(watcher)


@router.get(
    "/api/events/{event_id}/dashboard-link",
    summary="The event's signed dashboard link, to open in a browser or share (organiser;"
    " a co-organiser's link opens its support office's view)",
    openapi_extra=requires(Action.VIEW_REPORT),
)
async def dashboard_link(request: Request, event_id: str, grant: Granted) -> dict[str, str]:
    return _link(request, event_id, office_of(grant))


def _link(
    request: Request, event_id: str, office: str | None, issued_at: datetime | None = None
) -> dict[str, str]:
    parts = (event_id,) if office is None else (event_id, office)
    token = sign_link(_secret(request), LINK_PURPOSE, *parts, issued_at=issued_at)
    query = f"?token={quote(token)}"
    return {
        "url": f"/events/{event_id}/dashboard{query}",
        "json": f"/api/events/{event_id}/dashboard{query}",
        "stream": f"/api/events/{event_id}/dashboard/stream{query}",
    }


@router.post(
    "/api/events/{event_id}/dashboard-link/revoke",
    summary="Void every dashboard link of the event issued so far, its co-organisers' too;"
    " answers a fresh one (lead organiser)",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def revoke_dashboard_link(request: Request, event_id: str) -> dict[str, str]:
    cutoff = await revoke_links(runtime_of(request).pool, [LINK_PURPOSE], event_id)
    return _link(request, event_id, None, issued_at=cutoff)


@router.get(
    "/api/events/{event_id}/dashboard",
    summary="The organiser dashboard's figures (JSON)",
    openapi_extra=requires(Action.VIEW_REPORT, link=link_grant),
)
async def dashboard_json(request: Request, event_id: str, token: Token = None) -> dict[str, Any]:
    return await _load(request, event_id)


@router.get(
    "/api/events/{event_id}/dashboard/stream",
    summary="The dashboard, again after every change (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "a stream that ends only when the client goes",
        }
    },
    openapi_extra=requires(Action.VIEW_REPORT, link=link_grant),
)
async def dashboard_stream(
    request: Request, event_id: str, token: Token = None
) -> StreamingResponse:
    first = await _load(request, event_id)  # a 404 before the stream starts
    return StreamingResponse(
        _changes(request, hub_of(request), event_id, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def page(data: dict[str, Any], token: str | None = None) -> str:
    """The page: its figures are drawn by dashboard.js from the embedded JSON, then live.

    With the link's `token`, the page's own requests (stream, JSON) carry it too.
    """
    event = data["event"]
    esc = html.escape
    event_id = esc(event["event_id"])
    query = esc(f"?token={quote(token)}") if token else ""
    # Inside <script>, "</script" or "<!--" would change how the rest is parsed.
    embedded = json.dumps(data).replace("<", "\\u003c")
    mine = data.get("office")
    office = f"Support office: {mine['name']} ({mine['office_id']})" if mine else ""
    hidden = "" if data.get("by_office") else " hidden"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dashboard: {esc(event["name"])}</title>
<link rel="stylesheet" href="{STATIC_PATH}/dashboard.css">
</head>
<body data-event-id="{event_id}"
      data-stream="/api/events/{event_id}/dashboard/stream{query}">
<header>
  <h1 id="title">{esc(event["name"])}</h1>
  <p id="subtitle">{esc(event["venue"])}</p>
  <p id="office" data-testid="office">{esc(office)}</p>
  <p class="nav"><a href="/events/{event_id}/report">Event report</a>
    · <a href="/api/events/{event_id}/dashboard{query}">JSON</a>
    · <span id="live" data-testid="live-status" role="status" aria-live="polite">connecting…</span>
    <span id="updated" data-testid="updated-at"></span></p>
</header>
<main>
  <section aria-labelledby="h-totals"><h2 id="h-totals" class="visually-hidden">Key figures</h2>
    <div id="tiles" class="tiles" data-testid="tiles"></div></section>
  <section id="offices-section" aria-labelledby="h-offices"{hidden}>
    <h2 id="h-offices">By support office</h2>
    <div id="offices" data-testid="offices"></div></section>
  <section aria-labelledby="h-applications"><h2 id="h-applications">Applications and approvals</h2>
    <div class="charts">
      <figure id="applications-country" data-testid="applications-country"></figure>
      <figure id="applications-type" data-testid="applications-type"></figure>
      <figure id="applications-sector" data-testid="applications-sector"></figure>
    </div></section>
  <section aria-labelledby="h-funnel"><h2 id="h-funnel">Meeting requests: the funnel</h2>
    <div id="funnel" class="charts" data-testid="funnel"></div></section>
  <section aria-labelledby="h-agenda"><h2 id="h-agenda">Agenda</h2>
    <div id="agenda" data-testid="agenda"></div></section>
  <section aria-labelledby="h-notifications"><h2 id="h-notifications">Notifications</h2>
    <div id="notifications" data-testid="notifications"></div></section>
  <section aria-labelledby="h-dead"><h2 id="h-dead">Dead-lettered messages</h2>
    <div id="dead-letters" data-testid="dead-letters"></div></section>
  <section aria-labelledby="h-feedback"><h2 id="h-feedback">Feedback and outcomes</h2>
    <div class="charts">
      <figure id="feedback" data-testid="feedback"></figure>
      <figure id="outcomes" data-testid="outcomes"></figure>
    </div></section>
</main>
<script type="application/json" id="dashboard-data">{embedded}</script>
<script src="{STATIC_PATH}/dashboard.js"></script>
</body>
</html>
"""


@router.get(
    "/events/{event_id}/dashboard",
    summary="The organiser dashboard (HTML page, updates live)",
    response_class=HTMLResponse,
    openapi_extra=requires(Action.VIEW_REPORT, link=link_grant),
)
async def dashboard_page(request: Request, event_id: str, token: Token = None) -> HTMLResponse:
    return HTMLResponse(page(await _load(request, event_id), token))
