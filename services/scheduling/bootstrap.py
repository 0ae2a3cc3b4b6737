"""Wires the scheduling service: one subscription to registration.events and matching.events
(the projection, then placement and release), and the agenda's routes.

Both topics go through one consumer so that a process applies one batch at a time: the
handlers lock brokerage events one after another within a batch's transaction.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.scheduling import bursts, handlers, sheets_api
from services.scheduling.api import router as agenda_router
from shared.contracts import registry
from shared.inbox import Subscription
from shared.runtime import ServiceRuntime, create_app, serve
from shared.settings import SchedulingSettings

NAME = "scheduling"


def build_app(settings: SchedulingSettings | None = None) -> FastAPI:
    settings = settings or SchedulingSettings()
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=Path(__file__).parent / "migrations",
        subscriptions=[
            Subscription(
                ("registration.events", "matching.events"),
                handlers.HANDLERS,
                registry(),
                batch_handlers=bursts.BATCH_HANDLERS,
            )
        ],
    )
    return create_app(
        runtime,
        title="Scheduling service",
        description="Conflict-free agendas for each brokerage event.",
        routers=[sheets_api.router, agenda_router],
    )


def main() -> None:
    settings = SchedulingSettings()
    serve(build_app(settings), settings.service_host, settings.scheduling_port)
