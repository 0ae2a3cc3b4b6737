"""Wires the matching service: runtime with its subscription to registration.events,
the expiry sweeper, and the routes (meeting requests, recommendations)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from asyncpg import Connection
from fastapi import FastAPI

from services.matching import expiry, handlers, projection, recommendations, sheets
from services.matching.api import router
from services.matching.recommendations_api import router as recommendations_router
from shared.batching import batched, in_turn
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.registration import DecisionBase, RegisteredBase
from shared.envelope import Envelope
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
    """Bursts of registrations and of decisions in runs, all of registration's batched
    types in one: the projection's statements batched over the whole run, then the
    reactions (`react_in_runs`). Every registration and decision shares one run, so that
    a rejection among approvals, or registrations between rounds of approvals (as a
    deadline's bursts interleave them), do not cut it: a batch of 1,400 such events was
    eight runs, each with its projection statements, queue inserts and flush."""
    types = recommendations.BATCH_HANDLERS.keys()
    assert types <= projection.HANDLERS.keys()
    # A type with a reaction is batched only in the run that reacts to it.
    assert handlers.ON_REGISTRATION_EVENTS.keys() <= types
    project = {ce_type: projection.HANDLERS[ce_type] for ce_type in types}

    async def project_one(conn: Connection, envelope: Envelope, event: EventPayload) -> None:
        await project[type(event).ce_type()](conn, envelope, event)

    run = in_turn(batched(project_one), react_in_runs)
    return dict.fromkeys(types, run)


async def react_in_runs(conn: Connection, run: Sequence[tuple[Envelope, EventPayload]]) -> None:
    """What follows the projection for a run of registrations and decisions: new texts
    queued for the embedding worker, departures' requests and meetings cancelled (in
    event order), decisions queued for the lists. The same as event by event: each of
    the three writes tables the others neither read nor write, and none reads what the
    projection writes of the run's participants."""
    registered = [(e, p) for e, p in run if isinstance(p, RegisteredBase)]
    decided = [(e, p) for e, p in run if isinstance(p, DecisionBase)]
    assert len(registered) + len(decided) == len(run), "registrations and decisions only"
    if registered:
        await recommendations.on_registered_batch(conn, registered)
    if decided:
        await handlers.on_departures(conn, decided)
        await recommendations.on_decisions(conn, decided)


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
