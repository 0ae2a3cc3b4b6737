"""Wires the matching service: runtime with its subscription to registration.events,
the expiry sweeper, and the routes (meeting requests, recommendations)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI

from services.matching import expiry, handlers, projection, recommendations, sheets
from services.matching.api import router
from services.matching.recommendations_api import router as recommendations_router
from shared.batching import in_turn, projected_first
from shared.contracts import registry
from shared.inbox import BatchHandler, Subscription, combine
from shared.runtime import ServiceRuntime, create_app, serve
from shared.settings import MatchingSettings

NAME = "matching"
log = logging.getLogger(__name__)


async def warm_recommendations(runtime: ServiceRuntime) -> None:
    events = await recommendations.warm_up(runtime.pool)
    log.info("matching: model warm, participants preloaded for %d events", len(events))


async def recommendations_worker(runtime: ServiceRuntime) -> None:
    """Sentence vectors in batches, and the lists meeting requests changed, off the
    consumers' path (`recommendations.worker`)."""
    settings = runtime.settings
    assert isinstance(settings, MatchingSettings)
    worker = recommendations.Worker(
        runtime.pool,
        runtime.dsn,
        batch_size=settings.matching_embedding_batch,
        poll_interval=settings.matching_embedding_poll_seconds,
    )
    await worker.run()


def registration_runs() -> dict[str, BatchHandler]:
    """Bursts of registrations and of decisions in runs: the projection's statements
    batched, then the reactions to rejections and withdrawals one by one in event order
    (`handlers.on_departures`), then the lists once per run. Every decision shares one
    run, so a rejection among a burst of approvals does not cut it."""
    decided = in_turn(handlers.on_departures, recommendations.on_decisions)
    runs = {
        ce_type: decided if run is recommendations.on_decisions else run
        for ce_type, run in recommendations.BATCH_HANDLERS.items()
    }
    # A type with a reaction is batched only in the run that reacts to it.
    assert all(runs[t] is decided for t in handlers.ON_REGISTRATION_EVENTS)
    assert runs.keys() <= projection.HANDLERS.keys()
    return projected_first(projection.HANDLERS, runs)


def build_app(settings: MatchingSettings | None = None) -> FastAPI:
    settings = settings or MatchingSettings()
    # On each registration event, in one transaction: the projection first, then
    # matching's reactions (a participant who leaves has its requests and meetings
    # cancelled), then the recommendation lists (new texts are only queued for the
    # embedding worker, unless MATCHING_EMBEDDING=inline).
    recommending = (
        recommendations.INLINE_HANDLERS
        if settings.matching_embedding == "inline"
        else recommendations.HANDLERS
    )
    on_registration = combine(projection.HANDLERS, handlers.ON_REGISTRATION_EVENTS, recommending)
    in_runs = {} if settings.matching_embedding == "inline" else registration_runs()
    runtime = ServiceRuntime(
        NAME,
        settings,
        migrations=Path(__file__).parent / "migrations",
        subscriptions=[
            Subscription(
                ("registration.events",), on_registration, registry(), batch_handlers=in_runs
            ),
            # Matching's own events: a pair's lists are queued for the worker when
            # a request between them is made or ends (consumer group `matching-1`).
            Subscription(
                ("matching.events",),
                recommendations.PAIR_HANDLERS,
                registry(),
                batch_handlers=recommendations.PAIR_BATCH_HANDLERS,
            ),
        ],
        background=[expiry.sweeper, recommendations_worker],
        warm_up=[warm_recommendations],
    )
    return create_app(
        runtime,
        title="Matching service",
        description="Who should meet whom, and the meeting-request lifecycle.",
        routers=[sheets.router, router, recommendations_router],
    )


def main() -> None:
    settings = MatchingSettings()
    serve(build_app(settings), settings.service_host, settings.matching_port)
