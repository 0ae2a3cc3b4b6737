"""Wires the reporting service: one subscription to registration, matching, scheduling and
notification events (the projections), the dead-letter reader, the dashboard's live
updates, the report, dashboard and feedback routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.reporting import (
    dashboard_projection,
    deadletters,
    history,
    live,
    projection,
    sheets,
)
from services.reporting.api import router
from services.reporting.dashboard_api import STATIC_PATH
from services.reporting.dashboard_api import router as dashboard_router
from services.reporting.history_api import router as history_router
from shared.batching import batch_handlers
from shared.contracts import registry
from shared.inbox import Subscription, combine
from shared.runtime import ServiceRuntime, create_app
from shared.settings import ReportingSettings

NAME = "reporting"
HERE = Path(__file__).parent


def build_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    hub = live.DashboardHub()
    # Every projected event wakes its brokerage event's dashboards when its batch commits.
    handlers = live.notifying(
        combine(projection.HANDLERS, dashboard_projection.HANDLERS, history.HANDLERS)
    )
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=HERE / "migrations",
        # Every handler only projects: each run of one type goes as one statement per statement.
        subscriptions=[
            Subscription(
                projection.TOPICS, handlers, registry(), batch_handlers=batch_handlers(handlers)
            )
        ],
        background=[hub.run, deadletters.consume],
    )
    app = create_app(
        runtime,
        title="Reporting service",
        description="The read side: event reports, the organiser dashboard, attendance,"
        " feedback and outcomes.",
        routers=[router, dashboard_router, history_router, sheets.router],
    )
    app.state.dashboard_hub = hub
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="dashboard-static")
    return app


def main() -> None:
    settings = ReportingSettings()
    app = build_app(settings)
    live.serve(app, settings.service_host, settings.reporting_port, app.state.dashboard_hub)
