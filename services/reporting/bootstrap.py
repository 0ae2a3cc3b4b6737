"""Wires the reporting service: one subscription to registration, matching and scheduling
events (the projections), the report and feedback routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.reporting import projection
from services.reporting.api import router
from shared.contracts import registry
from shared.inbox import Subscription
from shared.runtime import ServiceRuntime, create_app, serve
from shared.settings import ReportingSettings

NAME = "reporting"


def build_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=Path(__file__).parent / "migrations",
        subscriptions=[Subscription(projection.TOPICS, projection.HANDLERS, registry())],
    )
    return create_app(
        runtime,
        title="Reporting service",
        description="The read side: event reports, attendance, feedback and outcomes.",
        routers=[router],
    )


def main() -> None:
    settings = ReportingSettings()
    serve(build_app(settings), settings.service_host, settings.reporting_port)
