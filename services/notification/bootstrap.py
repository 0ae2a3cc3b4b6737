"""Wires the notification service: runtime with its subscription to registration.events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from services.notification import projection
from shared.contracts import registry
from shared.inbox import Subscription
from shared.runtime import ServiceRuntime, create_app, runtime_of, serve
from shared.settings import NotificationSettings

NAME = "notification"
router = APIRouter(prefix="/api")


@router.get("/events/{event_id}/recipients", summary="Recipients of an event (no contact details)")
async def recipients(request: Request, event_id: str) -> list[dict[str, Any]]:
    rows = await runtime_of(request).pool.fetch(
        "SELECT registration_id, name, status, erased FROM recipients WHERE event_id = $1"
        " ORDER BY name",
        event_id,
    )
    return [dict(r) for r in rows]


def build_app(settings: NotificationSettings | None = None) -> FastAPI:
    settings = settings or NotificationSettings()
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=Path(__file__).parent / "migrations",
        subscriptions=[Subscription(("registration.events",), projection.HANDLERS, registry())],
    )
    return create_app(
        runtime,
        title="Notification service",
        description="Emails, webhooks and calendars, each sent exactly once.",
        routers=[router],
    )


def main() -> None:
    settings = NotificationSettings()
    serve(build_app(settings), settings.service_host, settings.notification_port)
