"""Notification's HTTP API: delivery logs, preferences, webhooks, calendar feeds, unsubscribe.

Each route declares who may call it (`shared.access`):
- organisers (and the admin) register webhook endpoints for their events and
  read each endpoint's deliveries; the secret is shown once, at creation;
- an organisation (its own key), the event's organisers (a co-organiser for its
  office) or the admin reads the delivery log of a registration; the organisation
  sets its preferences;
- `/calendar/{token}.ics` and `/unsubscribe/{token}` work without a key: the
  signed token in the link is the credential, until it expires or the organisation
  revokes its links (`POST /api/registrations/{id}/links/revoke`, fresh ones back).
"""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from fastapi import Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AnyHttpUrl, Field

from services.notification import commands, views
from services.notification.channels import calendar, webhooks
from services.notification.domain import WEBHOOK_KINDS, Kind
from services.notification.links import Links
from shared.access.guard import AccessRouter, requires
from shared.access.policy import Action, Scope
from shared.api import Caller, Granted, IdempotencyKey, run_command
from shared.bodies import RequestBody
from shared.errors import NotFound
from shared.links import LinkState, check_link, revoke_links
from shared.problems import ProblemError, invalid
from shared.runtime import runtime_of
from shared.settings import NotificationSettings

router = AccessRouter()
_Body = RequestBody


class NewWebhook(_Body):
    url: AnyHttpUrl
    event_types: list[str] = Field(min_length=1, max_length=len(WEBHOOK_KINDS))


class PreferencesBody(_Body):
    muted: list[Kind] = Field(default_factory=list, description="message kinds not wanted")
    digest: bool = Field(default=False, description="hold messages for one email a day")
    time_zone: str | None = Field(default=None, description="IANA zone; null: the event's")
    unsubscribed: bool = False


def _settings(request: Request) -> NotificationSettings:
    settings = runtime_of(request).settings
    assert isinstance(settings, NotificationSettings)
    return settings


def _links(request: Request, issued_at: datetime | None = None) -> Links:
    s = _settings(request)
    return Links(s.public_base_url.rstrip("/"), s.notification_link_secret, issued_at)


# -- webhooks ---------------------------------------------------------------------


@router.post(
    "/api/events/{event_id}/webhooks",
    status_code=201,
    summary="Register a webhook endpoint (the event's organiser); the secret is shown once",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def create_webhook(
    request: Request,
    event_id: str,
    body: NewWebhook,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    unknown = sorted(set(body.event_types) - {k.value for k in WEBHOOK_KINDS})
    if unknown:
        raise invalid("event_types", f"unknown event types {unknown}")

    async def command(conn: asyncpg.Connection, _: str | None) -> dict[str, Any]:
        endpoint_id, secret = str(uuid.uuid4()), webhooks.new_secret()
        created = await commands.register_webhook(
            conn,
            endpoint_id,
            event_id,
            str(body.url),
            sorted(set(body.event_types)),
            secret,
            who.label,
        )
        return {
            "id": endpoint_id,
            "event_id": event_id,
            "url": str(body.url),
            "event_types": sorted(set(body.event_types)),
            "secret": secret,
            "created_at": created.isoformat(),
        }

    return await run_command(
        request, who, idempotency_key, body.model_dump(mode="json"), command, 201
    )


@router.get(
    "/api/events/{event_id}/webhooks",
    summary="The event's webhook endpoints",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def list_webhooks(request: Request, event_id: str) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.webhooks(conn, event_id)


def _endpoint_id(endpoint_id: str) -> str:
    try:
        return str(uuid.UUID(endpoint_id))
    except ValueError:
        raise ProblemError(404, "Not found", f"webhook {endpoint_id} not found") from None


async def _endpoint(conn: asyncpg.Connection, event_id: str, endpoint_id: str) -> None:
    if not await views.webhook_exists(conn, event_id, _endpoint_id(endpoint_id)):
        raise ProblemError(404, "Not found", f"webhook {endpoint_id} not found")


@router.delete(
    "/api/events/{event_id}/webhooks/{endpoint_id}",
    summary="Remove a webhook endpoint (pending deliveries are skipped; its URL and secret"
    " are destroyed)",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def delete_webhook(
    request: Request, event_id: str, endpoint_id: str, who: Caller
) -> dict[str, Any]:
    ident = _endpoint_id(endpoint_id)
    async with runtime_of(request).pool.acquire() as conn:
        try:
            await commands.remove_webhook(conn, event_id, ident, who.label)
        except NotFound:
            raise ProblemError(404, "Not found", f"webhook {endpoint_id} not found") from None
    return {"id": ident, "active": False}


@router.get(
    "/api/events/{event_id}/webhooks/{endpoint_id}/deliveries",
    summary="Deliveries to a webhook endpoint: status, attempts, next attempt, last error",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def webhook_deliveries(
    request: Request,
    event_id: str,
    endpoint_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        await _endpoint(conn, event_id, endpoint_id)
        return await views.deliveries(conn, endpoint_id, "webhook", limit)


# -- recipients ---------------------------------------------------------------------


@router.get(
    "/api/events/{event_id}/recipients",
    summary="Recipients of an event, no contact details (its organisers; a co-organiser its"
    " office's, a participant itself)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def recipients(request: Request, event_id: str, grant: Granted) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.recipients(
            conn,
            event_id,
            grant.office if grant.scope is Scope.OFFICE else None,
            grant.registration_id if grant.scope is Scope.SELF else None,
        )


@router.get(
    "/api/registrations/{registration_id}/notifications",
    summary="Delivery log of a registration (the organisation, its organisers, admin)",
    openapi_extra=requires(Action.VIEW_REGISTRATION),
)
async def delivery_log(
    request: Request,
    registration_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.deliveries(conn, registration_id, "email", limit)


@router.get(
    "/api/registrations/{registration_id}/preferences",
    summary="Which messages, how often, in which time zone (the organisation)",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT),
)
async def get_preferences(request: Request, registration_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        prefs = await views.preferences(conn, registration_id)
    links = _links(request)
    return {
        "muted": sorted(prefs.muted),
        "digest": prefs.digest,
        "time_zone": prefs.time_zone,
        "unsubscribed": prefs.unsubscribed,
        "calendar_feed_url": links.feed(registration_id),
        "unsubscribe_url": links.unsubscribe(registration_id),
    }


@router.put(
    "/api/registrations/{registration_id}/preferences",
    summary="Set the preferences (the organisation)",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT),
)
async def put_preferences(
    request: Request, registration_id: str, body: PreferencesBody
) -> dict[str, Any]:
    if body.time_zone is not None:
        try:
            ZoneInfo(body.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise invalid("time_zone", f"unknown IANA time zone {body.time_zone!r}") from None
    async with runtime_of(request).pool.acquire() as conn:
        await commands.set_preferences(
            conn,
            registration_id,
            muted=[k.value for k in body.muted],
            digest=body.digest,
            time_zone=body.time_zone,
            unsubscribed=body.unsubscribed,
        )
    return await get_preferences(request, registration_id)


# -- links that work without a key ------------------------------------------------------


@router.post(
    "/api/registrations/{registration_id}/links/revoke",
    summary="Void the registration's calendar-feed and unsubscribe links issued so far;"
    " answers fresh ones (the organisation)",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT),
)
async def revoke_registration_links(request: Request, registration_id: str) -> dict[str, str]:
    pool = runtime_of(request).pool
    cutoff = await revoke_links(pool, list(Links.PURPOSES), registration_id)
    links = _links(request, issued_at=cutoff)
    return {
        "calendar_feed_url": links.feed(registration_id),
        "unsubscribe_url": links.unsubscribe(registration_id),
    }


async def _token(request: Request, purpose: str, token: str) -> str:
    secret = _settings(request).notification_link_secret
    state, link = await check_link(runtime_of(request).pool, secret, purpose, token)
    if link is None or not link.subject:
        raise ProblemError(404, "Not found", "this link is not valid")
    if state is not LinkState.VALID:
        raise ProblemError(403, "Forbidden", f"this link is {state.value}")
    return link.subject


@router.get(
    "/calendar/{token}.ics",
    summary="A participant's current agenda as an iCalendar feed (secret link)",
    response_class=Response,
    openapi_extra=requires(Action.FOLLOW_LINK),
)
async def calendar_feed(request: Request, token: str) -> Response:
    registration_id = await _token(request, "feed", token)
    async with runtime_of(request).pool.acquire() as conn:
        who = await views.recipient(conn, registration_id)
        event = await views.event_info(conn, who.event_id or "")
        entries = await views.agenda(conn, registration_id)
    items = [
        calendar.FeedItem(
            meeting_id=e.item.meeting_id,
            sequence=max(e.sequence, 0),
            summary=f"Meeting with {e.item.with_name} ({event.name})",
            start=e.item.start,
            end=e.item.end,
            location="Online"
            if e.item.mode == "online"
            else f"Table {e.item.table}, {event.venue}"
            if e.item.table is not None
            else event.venue,
            stamp=e.updated_at,
        )
        for e in entries
    ]
    body = calendar.feed_ics(f"{event.name}: {who.name}", items)
    return Response(body, media_type="text/calendar; charset=utf-8")


@router.get(
    "/unsubscribe/{token}",
    summary="Unsubscribe page (secret link)",
    response_class=HTMLResponse,
    openapi_extra=requires(Action.FOLLOW_LINK),
)
async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    await _token(request, "unsubscribe", token)
    action = html.escape(str(request.url))
    return HTMLResponse(
        "<!doctype html><html><body><p>Stop all emails about this matchmaking event?</p>"
        f'<form method="post" action="{action}"><button>Unsubscribe</button></form>'
        "</body></html>"
    )


@router.post(
    "/unsubscribe/{token}",
    summary="Unsubscribe (secret link; RFC 8058 one-click)",
    response_class=HTMLResponse,
    openapi_extra=requires(Action.FOLLOW_LINK),
)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    registration_id = await _token(request, "unsubscribe", token)
    async with runtime_of(request).pool.acquire() as conn:
        await commands.unsubscribe(conn, registration_id)
    return HTMLResponse(
        "<!doctype html><html><body><p>You are unsubscribed: we will send no more emails."
        "</p></body></html>"
    )
