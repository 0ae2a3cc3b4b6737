"""Bootstrap shared by every service: pool, migrations, relay, consumers, HTTP app.

A service's bootstrap module builds a `ServiceRuntime` with its own migrations
and subscriptions, hands it to `create_app` with its routers, and calls `serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import logs, problems, telemetry
from shared.access import projection as access_projection
from shared.access.guard import SECURITY_SCHEMES
from shared.batching import projected_first
from shared.db import create_pool, migrate
from shared.direct_routes import DirectRoute, DirectRoutes
from shared.faststream_inbox import FastStreamInboxConsumer
from shared.http_telemetry import RequestTelemetry
from shared.inbox import InboxConsumer, Subscription, combine
from shared.kafka import client_options
from shared.outbox import OutboxRelay, create_producer
from shared.settings import PlatformSettings, database_url
from shared.topics import prefixed_all

log = logging.getLogger(__name__)

# A service's own long-running task (e.g. a periodic sweep), started after the
# consumers and cancelled on stop, like the relay.
BackgroundTask = Callable[["ServiceRuntime"], Coroutine[Any, Any, None]]
# Work done once at start, before the consumers (e.g. loading caches), so the first
# events consumed are handled as fast as later ones. A failure is logged, not fatal:
# warming up only saves time.
WarmUp = Callable[["ServiceRuntime"], Coroutine[Any, Any, None]]

# Allocations (net of deallocations) between two young collections of the cyclic garbage
# collector; Python's default is 700. A consumer's batch of 2,000 records makes hundreds
# of thousands of short-lived objects (records, envelopes, payloads, recorded statements),
# and with the default each batch ran hundreds of collections: in `bench.catchup`,
# reporting used 4.0-4.3 s of CPU for 59,003 events with the defaults, 3.0 s with this
# threshold alone, 3.1 s with the startup heap frozen alone, 2.5-2.7 s with both.
GC_YOUNG_THRESHOLD = 50_000
_collector_tuned = False


def tune_collector() -> None:
    """Once per process, when it has started: what is alive then (modules, schemas,
    caches: most of the heap) is moved out of the collector's sight (`gc.freeze`), so a
    full collection no longer walks it, and young collections come every
    `GC_YOUNG_THRESHOLD` allocations. Garbage is collected first, so none is pinned."""
    global _collector_tuned
    if _collector_tuned:
        return
    _collector_tuned = True
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        settings: PlatformSettings,
        *,
        migrations: Path,
        subscriptions: Sequence[Subscription] = (),
        background: Sequence[BackgroundTask] = (),
        warm_up: Sequence[WarmUp] = (),
        instance_id: str | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.dsn = database_url(settings, name)
        self._migrations = migrations
        self._subscriptions = subscriptions
        self._background = background
        self._warm_up = warm_up
        # Static consumer member ids must be unique per process: two replicas on one
        # host (or a restarted pod beside its old self) would otherwise fence each other.
        replica = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self._instance_id = instance_id or f"{name}-{replica}"
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[InboxConsumer | FastStreamInboxConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background_tasks: list[asyncio.Task[None]] = []
        # Awaited before /metrics renders: a background task whose metrics are counted
        # elsewhere (`shared.worker_process`) brings them up to date here.
        self.metric_sources: list[Callable[[], Awaitable[None]]] = []
        # Named checks of work started elsewhere (a worker process that says when it has
        # started), each a part of /ready.
        self.readiness_checks: dict[str, Callable[[], bool]] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "runtime not started"
        return self._pool

    @property
    def subscriptions(self) -> list[Subscription]:
        """What the consumers apply (with the access projection), under canonical topics."""
        return [with_access_projection(s) for s in self._subscriptions]

    async def start(self) -> None:
        telemetry.configure(self.name, self.settings)
        self._pool = await create_pool(self.dsn, max_size=20)
        applied = await migrate(self._pool, self._migrations)
        if applied:
            log.info("%s: applied migrations %s", self.name, applied)
        for step in self._warm_up:
            try:
                await step(self)
            except Exception:
                log.exception("%s: warm-up %s failed", self.name, getattr(step, "__name__", step))
        tune_collector()  # started: what is alive now mostly lives as long as the process
        self.kafka_options = client_options(self.settings)
        self._producer = create_producer(
            self.settings.kafka_bootstrap_servers, self.name, self.kafka_options
        )
        await self._producer.start()
        prefix = self.settings.topic_prefix
        self.relay = OutboxRelay(
            self.dsn,
            self._producer,
            self.name,
            topic_prefix=prefix,
            retention_seconds=self.settings.outbox_retention_hours * 3600,
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        for index, subscription in enumerate(self.subscriptions):
            # Subscriptions name canonical topics; the consumers read them under the prefix.
            subscription = replace(subscription, topics=prefixed_all(prefix, subscription.topics))
            engine = consumer_class(self.settings)
            consumer = engine(
                name=(self.name if index == 0 else f"{self.name}-{index}")
                + self.settings.consumer_group_suffix,
                dsn_pool=self._pool,
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                subscription=subscription,
                dlq_producer=self._producer,
                max_attempts=self.settings.consumer_max_attempts,
                instance_id=f"{self._instance_id}-{index}",
                topic_prefix=prefix,
                kafka_options=self.kafka_options,
            )
            await consumer.start()
            log.info("%s: consumer %s started (%s)", self.name, consumer.name, engine.__name__)
            self.consumers.append(consumer)
            self._tasks.append(asyncio.create_task(consumer.run(), name=consumer.name))
        for task in self._background:
            label = getattr(task, "__name__", "background")
            started = asyncio.create_task(task(self), name=f"{self.name}-{label}")
            self._background_tasks.append(started)
            self._tasks.append(started)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for consumer in self.consumers:
            await consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()
        telemetry.shutdown()

    async def readiness(self) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        try:
            async with self.pool.acquire(timeout=2) as conn:
                checks["database"] = await conn.fetchval("SELECT true")
        except Exception:
            checks["database"] = False
        checks["kafka"] = self._producer is not None and not self._producer._closed
        # A task that ended (it raised, or returned) no longer does its work: unready,
        # so an orchestrator restarts the process instead of routing to a silent one.
        checks["relay"] = bool(self._tasks) and not self._tasks[0].done()
        consumer_tasks = self._tasks[1 : 1 + len(self.consumers)]
        checks["consumers"] = all(c.started for c in self.consumers) and not any(
            t.done() for t in consumer_tasks
        )
        if self._background_tasks:
            checks["background"] = not any(t.done() for t in self._background_tasks)
        checks.update({name: check() for name, check in self.readiness_checks.items()})
        return checks


def consumer_class(
    settings: PlatformSettings,
) -> type[FastStreamInboxConsumer] | type[InboxConsumer]:
    """The consumer engine CONSUMER_ENGINE names (both take the same arguments)."""
    if settings.consumer_engine == "aiokafka":
        return InboxConsumer
    return FastStreamInboxConsumer


def with_access_projection(subscription: Subscription) -> Subscription:
    """Every service that reads registration's events keeps the access projection
    (`shared.access`) from them, in the same transaction as its own projections."""
    if "registration.events" not in subscription.topics:
        return subscription
    access = access_projection.HANDLERS
    # A batch handler covers its events entirely: the access projection's part first.
    batch_handlers = projected_first(access, subscription.batch_handlers)
    return replace(
        subscription,
        handlers=combine(access, subscription.handlers),
        batch_handlers=batch_handlers,
    )


def ops_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @router.get("/ready", summary="Readiness: database, Kafka, relay and consumers are up")
    async def ready() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_text() -> Response:
        for refresh in runtime.metric_sources:
            with contextlib.suppress(Exception):  # its own metrics left out, the rest shown
                await refresh()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


NO_FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def create_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    direct: Sequence[DirectRoute] = (),
) -> FastAPI:
    """The service's app. `direct`: routes whose plain requests are served past FastAPI's
    request handling (`shared.direct_routes`), inside the request's telemetry."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry spans and metrics (on whenever a provider is set)
        # would trace every request a second time: `RequestTelemetry` does it once.
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    app.state.service_name = runtime.name
    app.state.subscriptions = runtime.subscriptions  # what its consumers apply (for tests)
    problems.install(app)
    app.include_router(ops_router(runtime))
    for router in routers:
        app.include_router(router)
    if direct:
        app.add_middleware(DirectRoutes, routes=direct)  # added first: inside the telemetry
    app.add_middleware(RequestTelemetry, excluded=("/health", "/ready", "/metrics"))
    with_security_schemes(app)
    return app


def with_security_schemes(app: FastAPI) -> None:
    """The OpenAPI document of `app` defines the schemes its guarded routes name
    (`shared.access.guard.SECURITY_SCHEMES`; no route runs them as dependencies)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes.update(SECURITY_SCHEMES)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the app with uvicorn, every log line as JSON with its ids (`shared.logs`)."""
    logs.configure(service_of(app))
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, log_config=None)


def service_of(app: FastAPI) -> str:
    """The service's name, for its log lines (`create_app` records it)."""
    return str(getattr(app.state, "service_name", app.title))
