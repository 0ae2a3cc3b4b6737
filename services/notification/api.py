"""Notification's HTTP API: delivery logs, preferences, webhooks, calendar feeds, unsubscribe.

- organisers (and the admin) register webhook endpoints for their events and
  read each endpoint's deliveries; the secret is shown once, at creation;
- an organisation (its own key), the event's organiser or the admin reads the
  delivery log of a registration; the organisation sets its preferences;
- `/calendar/{token}.ics` and `/unsubscribe/{token}` work without a key: the
  signed token in the link is the credential.
"""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from services.notification import reads
from services.notification.channels import calendar, webhooks
from services.notification.domain import WEBHOOK_KINDS, Kind
from services.notification.sender import Links
from shared.api import Caller, IdempotencyKey, run_command
from shared.auth import Principal
from shared.links import open_link
from shared.problems import ProblemError, invalid
from shared.runtime import runtime_of
from shared.settings import NotificationSettings

router = APIRouter()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


def _links(request: Request) -> Links:
    s = _settings(request)
    return Links(s.public_base_url.rstrip("/"), s.notification_link_secret)


# -- authorisation ----------------------------------------------------------------


async def _organiser_of(conn: asyncpg.Connection, event_id: str) -> str:
    owner: str | None = await conn.fetchval(
        "SELECT organiser_id FROM brokerage_events WHERE event_id = $1", event_id
    )
    if owner is None:
        raise ProblemError(404, "Not found", f"brokerage event {event_id} not found")
    return owner


async def _may_organise(conn: asyncpg.Connection, who: Principal, event_id: str) -> None:
    owner = await _organiser_of(conn, event_id)
    if who.role != "admin" and not (who.role == "organiser" and who.id == owner):
        raise ProblemError(403, "Forbidden", "only the event's organiser may do this")


async def _may_read(
    conn: asyncpg.Connection, who: Principal, registration_id: str, *, organiser_may: bool = True
) -> None:
    if who.role == "admin" or (who.role == "organisation" and who.id == registration_id):
        return
    event_id = await conn.fetchval(
        "SELECT event_id FROM recipients WHERE registration_id = $1", registration_id
    )
    if event_id is None:
        raise ProblemError(404, "Not found", f"registration {registration_id} not found")
    if organiser_may and who.role == "organiser":
        if await _organiser_of(conn, event_id) == who.id:
            return
    raise ProblemError(403, "Forbidden", "this key may not see this registration's messages")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- webhooks ---------------------------------------------------------------------


@router.post(
    "/api/events/{event_id}/webhooks",
    status_code=201,
    summary="Register a webhook endpoint (the event's organiser); the secret is shown once",
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
        await _may_organise(conn, who, event_id)
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


@router.get("/api/events/{event_id}/webhooks", summary="The event's webhook endpoints")
async def list_webhooks(request: Request, event_id: str, who: Caller) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        await _may_organise(conn, who, event_id)
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
)
async def delete_webhook(
    request: Request, event_id: str, endpoint_id: str, who: Caller
) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        await _may_organise(conn, who, event_id)
        await _endpoint(conn, event_id, endpoint_id)
        await conn.execute(
            "UPDATE webhook_endpoints SET active = false WHERE endpoint_id = $1::uuid", endpoint_id
        )
    return {"id": endpoint_id, "active": False}


@router.get(
    "/api/events/{event_id}/webhooks/{endpoint_id}/deliveries",
    summary="Deliveries to a webhook endpoint: status, attempts, next attempt, last error",
)
async def webhook_deliveries(
    request: Request,
    event_id: str,
    endpoint_id: str,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        await _may_organise(conn, who, event_id)
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
    "/api/events/{event_id}/recipients", summary="Recipients of an event (no contact details)"
)
async def recipients(request: Request, event_id: str, who: Caller) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        await _may_organise(conn, who, event_id)
        rows = await conn.fetch(
            "SELECT registration_id, name, status, erased FROM recipients WHERE event_id = $1"
            " ORDER BY name",
            event_id,
        )
    return [dict(r) for r in rows]


@router.get(
    "/api/registrations/{registration_id}/notifications",
    summary="Delivery log of a registration (the organisation, the event's organiser, admin)",
)
async def delivery_log(
    request: Request,
    registration_id: str,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        await _may_read(conn, who, registration_id)
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
)
async def get_preferences(request: Request, registration_id: str, who: Caller) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        await _may_read(conn, who, registration_id, organiser_may=False)
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


@router.put("/api/registrations/{registration_id}/preferences", summary="Set the preferences")
async def put_preferences(
    request: Request, registration_id: str, body: PreferencesBody, who: Caller
) -> dict[str, Any]:
    if body.time_zone is not None:
        try:
            ZoneInfo(body.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise invalid("time_zone", f"unknown IANA time zone {body.time_zone!r}") from None
    async with runtime_of(request).pool.acquire() as conn, conn.transaction():
        await _may_read(conn, who, registration_id, organiser_may=False)
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
    return await get_preferences(request, registration_id, who)


# -- links that work without a key ------------------------------------------------------


def _token(request: Request, purpose: str, token: str) -> str:
    parts = open_link(_settings(request).notification_link_secret, purpose, token)
    if not parts or not parts[0]:
        raise ProblemError(404, "Not found", "this link is not valid")
    return parts[0]


@router.get(
    "/calendar/{token}.ics",
    summary="A participant's current agenda as an iCalendar feed (secret link)",
    response_class=Response,
)
async def calendar_feed(request: Request, token: str) -> Response:
    registration_id = _token(request, "feed", token)
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
    "/unsubscribe/{token}", summary="Unsubscribe page (secret link)", response_class=HTMLResponse
)
async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    _token(request, "unsubscribe", token)
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
)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    registration_id = _token(request, "unsubscribe", token)
    await runtime_of(request).pool.execute(
        "INSERT INTO preferences (registration_id, unsubscribed) VALUES ($1, true)"
        " ON CONFLICT (registration_id) DO UPDATE SET unsubscribed = true, updated_at = now()",
        registration_id,
    )
    return HTMLResponse(
        "<!doctype html><html><body><p>You are unsubscribed: we will send no more emails."
        "</p></body></html>"
    )
