"""Wires the notification service: one subscription to the other services' topics, the sender.

The consumer applies each event's projection handlers and then its notice
handlers, in one transaction with the inbox row; the sender runs beside it in a
process of its own, which the runtime's background task starts and supervises
(`sender_process`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from services.notification import commands, handlers, projection, sender_process
from services.notification.api import router
from services.notification.channels.email import mail_domain
from shared.batching import batch_handlers, projected_first
from shared.contracts import registry
from shared.inbox import BatchHandler, Subscription, combine
from shared.runtime import ServiceRuntime, create_app, serve
from shared.settings import NotificationSettings

NAME = "notification"


async def upgrade_webhooks(runtime: ServiceRuntime) -> None:
    """Endpoints from before they were events, recorded as events once (migration 004)."""
    async with runtime.pool.acquire() as conn:
        await commands.upgrade_legacy_webhooks(conn)


TOPICS = ("registration.events", "matching.events", "scheduling.events", "reporting.events")


def reaction_runs(config: handlers.Config) -> dict[str, BatchHandler]:
    """The reactions' batch handlers, each after its type's projection."""
    return projected_first(projection.HANDLERS, handlers.build_runs(config))


def build_app(settings: NotificationSettings | None = None) -> FastAPI:
    settings = settings or NotificationSettings()
    config = handlers.Config(
        mail_domain=mail_domain(settings.smtp_sender),
        reminder_lead_minutes=settings.reminder_lead_minutes,
        digest_hour=settings.digest_hour,
        digest_minute=settings.digest_minute,
        stale_after=timedelta(hours=settings.notification_stale_after_hours),
    )
    reactions = handlers.build(config)  # they decide deliveries: one event at a time
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=Path(__file__).parent / "migrations",
        subscriptions=[
            Subscription(
                TOPICS,
                combine(projection.HANDLERS, reactions),
                registry(),
                # What only projects (recipients, approvals...) goes one statement per run;
                # the reactions that come in bursts decide a run's deliveries together.
                batch_handlers={
                    **batch_handlers(
                        projection.HANDLERS, set(projection.HANDLERS) - set(reactions)
                    ),
                    **reaction_runs(config),
                },
            )
        ],
        background=[sender_process.run],
        warm_up=[upgrade_webhooks],
    )
    return create_app(
        runtime,
        title="Notification service",
        description="Emails, calendar entries and webhooks about registrations, meeting "
        "requests and agendas: each sent once per recipient, from a durable delivery queue.",
        routers=[router],
    )


def main() -> None:
    settings = NotificationSettings()
    serve(build_app(settings), settings.service_host, settings.notification_port)
