"""Wires the matching service: runtime with its subscription to registration.events."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.matching import projection
from services.matching.api import router
from shared.contracts import registry
from shared.inbox import Subscription
from shared.runtime import ServiceRuntime, create_app, serve
from shared.settings import MatchingSettings

NAME = "matching"


def build_app(settings: MatchingSettings | None = None) -> FastAPI:
    settings = settings or MatchingSettings()
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=Path(__file__).parent / "migrations",
        subscriptions=[Subscription(("registration.events",), projection.HANDLERS, registry())],
    )
    return create_app(
        runtime,
        title="Matching service",
        description="Who should meet whom, and the meeting-request lifecycle.",
        routers=[router],
    )


def main() -> None:
    settings = MatchingSettings()
    serve(build_app(settings), settings.service_host, settings.matching_port)
