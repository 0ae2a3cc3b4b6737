"""Live updates of the organiser dashboard: PostgreSQL NOTIFY, fanned out to streams.

Every transaction that changes what a dashboard shows (a projection batch, a
reporting command, stored dead letters) calls `notify` with the brokerage event's
id. PostgreSQL delivers a notification only when its transaction commits, so a
dashboard never re-reads before the change is visible, and it folds identical ones
within a transaction, so a batch of 500 events of one brokerage event wakes that
event's dashboards once. One LISTEN connection per process (`DashboardHub.run`, a
runtime background task) wakes the streams (`Watcher`s) of the event concerned;
each stream then re-reads the dashboard at its own pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
import uvicorn
from fastapi import FastAPI

from shared import logs
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import Handler
from shared.runtime import ServiceRuntime, service_of

log = logging.getLogger(__name__)

CHANNEL = "dashboard"
# The payload of a change that concerns every dashboard (a dead letter that belongs
# to no brokerage event, a reconnected listener that may have missed some).
EVERY_EVENT = "*"
# Well under PostgreSQL's 8000-byte payload limit; event ids are far shorter.
_MAX_PAYLOAD = 500
_PING_SECONDS = 30.0
_RECONNECT_SECONDS = 2.0


def payload_for(event_id: str | None) -> str:
    """What to notify for a change of `event_id` (every dashboard when it is unknown)."""
    if not event_id or len(event_id.encode()) > _MAX_PAYLOAD:
        return EVERY_EVENT
    return event_id


async def notify(conn: asyncpg.Connection, event_id: str | None) -> None:
    """Tell the dashboards of `event_id` that it changed, when `conn`'s transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload_for(event_id))


def notifying(handlers: Mapping[str, Handler]) -> dict[str, Handler]:
    """`handlers`, each followed by a `notify` for its payload's brokerage event, if any."""

    def wrap(handler: Handler) -> Handler:
        async def handle(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
            await handler(conn, envelope, e)
            event_id = getattr(e, "event_id", None)
            if isinstance(event_id, str):
                await notify(conn, event_id)

        return handle

    return {ce_type: wrap(handler) for ce_type, handler in handlers.items()}


@dataclass(eq=False)
class Watcher:
    """One open dashboard stream: `changed` is set when its event may have changed."""

    event_id: str
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class DashboardHub:
    """The process's LISTEN connection and the streams it wakes."""

    def __init__(self) -> None:
        self._watchers: set[Watcher] = set()
        self.closed = asyncio.Event()
        self.listening = asyncio.Event()

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def watch(self, event_id: str) -> Watcher:
        watcher = Watcher(event_id)
        if self.closed.is_set():
            watcher.changed.set()
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def publish(self, payload: str) -> None:
        for watcher in self._watchers:
            if payload in (EVERY_EVENT, watcher.event_id):
                watcher.changed.set()

    def close(self) -> None:
        """End every stream (the server is shutting down)."""
        self.closed.set()
        for watcher in self._watchers:
            watcher.changed.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.publish(payload)

    async def run(self, runtime: ServiceRuntime) -> None:
        """Background task: LISTEN on a connection of its own, reconnecting after a loss."""
        while True:
            try:
                await self._listen(runtime.dsn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: streams keep their last view
                log.warning("dashboard listener: %s; reconnecting", exc)
            await asyncio.sleep(_RECONNECT_SECONDS)

    async def _listen(self, dsn: str) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=10)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            self.listening.set()
            # Changes made while no one listened would otherwise go unseen until the next.
            self.publish(EVERY_EVENT)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), _PING_SECONDS)
                if not lost.is_set():
                    # A half-open connection only shows when it is used.
                    await conn.fetchval("SELECT 1", timeout=10)
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


class _Server(uvicorn.Server):
    """uvicorn waits for open responses before it shuts down: end the streams first."""

    def __init__(self, config: uvicorn.Config, hub: DashboardHub) -> None:
        super().__init__(config)
        self._hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._hub.close()
        await super().shutdown(sockets)


def serve(app: FastAPI, host: str, port: int, hub: DashboardHub) -> None:
    """`shared.runtime.serve`, but the dashboards' streams end when the server stops."""
    logs.configure(service_of(app))
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", access_log=False, log_config=None
    )
    _Server(config, hub).run()
