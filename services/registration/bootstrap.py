"""Wires the registration service: runtime, its subscription to matching.events, routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.registration import addresses, contacts, sheets_api, sign_in
from services.registration.api import DIRECT_ROUTES, router
from shared.batching import batch_handlers
from shared.contracts import registry
from shared.inbox import Subscription
from shared.runtime import ServiceRuntime, create_app, serve
from shared.settings import RegistrationSettings

NAME = "registration"


async def index_addresses(runtime: ServiceRuntime) -> None:
    """Registrations from before the index of addresses get their rows (`addresses`)."""
    async with runtime.pool.acquire() as conn:
        await addresses.index_missing(conn)


def build_app(settings: RegistrationSettings | None = None) -> FastAPI:
    settings = settings or RegistrationSettings()
    addresses.configure(settings.registration_link_secret)
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=Path(__file__).parent / "migrations",
        # Accepted meetings, which open an organisation's contact details to the other side.
        subscriptions=[
            Subscription(
                ("matching.events",),
                contacts.HANDLERS,
                registry(),
                # Accepted and cancelled meetings come in bursts: one statement per run.
                batch_handlers=batch_handlers(contacts.HANDLERS),
            )
        ],
        warm_up=[index_addresses],
    )
    return create_app(
        runtime,
        title="Registration service",
        description="Organisers create brokerage events; organisations register, "
        "are approved, update their profiles, withdraw, and can have their personal data erased.",
        routers=[sheets_api.router, sign_in.router, router],
        # Most registrations are anonymous and plain: served past FastAPI's request handling.
        direct=DIRECT_ROUTES,
    )


def main() -> None:
    settings = RegistrationSettings()
    serve(build_app(settings), settings.service_host, settings.registration_port)
