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

from services.notification import reads
from services.notification.channels import calendar, webhooks
from services.notification.domain import WEBHOOK_KINDS, Kind
from services.notification.sender import Links
from shared.access.guard import AccessRouter, requires
from shared.access.policy import Action, Scope
from shared.api import Caller, Granted, IdempotencyKey, run_command
from shared.bodies import RequestBody
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


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
        created = await conn.fetchval(
            "INSERT INTO webhook_endpoints (endpoint_id, event_id, url, kinds, secret, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
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
        rows = await conn.fetch(
            "SELECT endpoint_id, url, kinds, active, created_at FROM webhook_endpoints"
            " WHERE event_id = $1 ORDER BY created_at",
            event_id,
        )
    return [
        {
            "id": str(r["endpoint_id"]),
            "url": r["url"],
            "event_types": r["kinds"],
            "active": r["active"],
            "created_at": r["created_at"].isoformat(),
        }
        for r in rows
    ]


async def _endpoint(conn: asyncpg.Connection, event_id: str, endpoint_id: str) -> None:
    try:
        uuid.UUID(endpoint_id)
    except ValueError:
        raise ProblemError(404, "Not found", f"webhook {endpoint_id} not found") from None
    found = await conn.fetchval(
        "SELECT true FROM webhook_endpoints WHERE endpoint_id = $1::uuid AND event_id = $2",
        endpoint_id,
        event_id,
    )
    if not found:
        raise ProblemError(404, "Not found", f"webhook {endpoint_id} not found")


@router.delete(
    "/api/events/{event_id}/webhooks/{endpoint_id}",
    summary="Stop a webhook endpoint (pending deliveries are skipped)",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def delete_webhook(request: Request, event_id: str, endpoint_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        await _endpoint(conn, event_id, endpoint_id)
        await conn.execute(
            "UPDATE webhook_endpoints SET active = false WHERE endpoint_id = $1::uuid", endpoint_id
        )
    return {"id": endpoint_id, "active": False}


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
        rows = await conn.fetch(
            "SELECT * FROM deliveries WHERE recipient = $1 AND channel = 'webhook'"
            " ORDER BY created_at, delivery_id LIMIT $2",
            endpoint_id,
            limit,
        )
    return [_delivery(r) for r in rows]


def _delivery(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["delivery_id"]),
        "kind": r["template"],
        "channel": r["channel"],
        "status": r["status"],
        "attempts": r["attempts"],
        "message_id": r["message_id"],
        "cause_id": r["cause_id"],
        "meeting_id": r["meeting_id"],
        "digest": r["digest"],
        "next_attempt_at": _iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
        "last_error": r["last_error"],
        "created_at": _iso(r["created_at"]),
        "sent_at": _iso(r["sent_at"]),
    }


# -- recipients ---------------------------------------------------------------------


@router.get(
    "/api/events/{event_id}/recipients",
    summary="Recipients of an event, no contact details (its organisers; a co-organiser its"
    " office's, a participant itself)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def recipients(request: Request, event_id: str, grant: Granted) -> list[dict[str, Any]]:
    rows = await runtime_of(request).pool.fetch(
        "SELECT r.registration_id, name, r.status, erased FROM recipients r"
        " LEFT JOIN access_registrations a USING (registration_id) WHERE r.event_id = $1"
        " AND ($2::text IS NULL OR a.office_id = $2)"
        " AND ($3::text IS NULL OR r.registration_id = $3) ORDER BY name",
        event_id,
        grant.office if grant.scope is Scope.OFFICE else None,
        grant.registration_id if grant.scope is Scope.SELF else None,
    )
    return [dict(r) for r in rows]


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
        rows = await conn.fetch(
            "SELECT * FROM deliveries WHERE recipient = $1 AND channel = 'email'"
            " ORDER BY created_at, delivery_id LIMIT $2",
            registration_id,
            limit,
        )
    return [_delivery(r) for r in rows]


@router.get(
    "/api/registrations/{registration_id}/preferences",
    summary="Which messages, how often, in which time zone (the organisation)",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT),
)
async def get_preferences(request: Request, registration_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        prefs = await reads.preferences(conn, registration_id)
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
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        if not body.digest:
            # Messages held for a digest that is no longer wanted go now, together (one
            # digest email), instead of waiting for the digest hour.
            await conn.execute(
                "UPDATE deliveries SET next_attempt_at = now(), updated_at = now()"
                " WHERE recipient = $1 AND digest AND status = 'pending'"
                " AND next_attempt_at > now()",
                registration_id,
            )
        await conn.execute(
            "INSERT INTO preferences (registration_id, muted, digest, time_zone, unsubscribed)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (registration_id) DO UPDATE"
            " SET muted = EXCLUDED.muted, digest = EXCLUDED.digest,"
            " time_zone = EXCLUDED.time_zone, unsubscribed = EXCLUDED.unsubscribed,"
            " updated_at = now()",
            registration_id,
            sorted({k.value for k in body.muted}),
            body.digest,
            body.time_zone,
            body.unsubscribed,
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
        who = await reads.recipient(conn, registration_id)
        event = await reads.event_info(conn, who.event_id or "")
        entries = await reads.agenda(conn, registration_id)
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
    await runtime_of(request).pool.execute(
        "INSERT INTO preferences (registration_id, unsubscribed) VALUES ($1, true)"
        " ON CONFLICT (registration_id) DO UPDATE SET unsubscribed = true, updated_at = now()",
        registration_id,
    )
    return HTMLResponse(
        "<!doctype html><html><body><p>You are unsubscribed: we will send no more emails."
        "</p></body></html>"
    )
