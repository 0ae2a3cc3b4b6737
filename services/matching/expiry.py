"""Expiry of unanswered meeting requests, durable across restarts.

Each pending request stores its `expires_at` (from the event's
`request_expiry_hours`, fixed when it is made). A background task in every
matching process sweeps the due ones every `MATCHING_EXPIRY_SWEEP_SECONDS`:
it locks them with `FOR UPDATE SKIP LOCKED` (two processes, or a sweep racing an
accept, never handle one request twice and never wait on each other), appends
`MeetingRequestExpired` and projects it in the same transaction. A process
that was down simply finds more requests due when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from opentelemetry import trace

from services.matching import domain, handlers
from services.matching.domain import Decision
from shared.runtime import ServiceRuntime
from shared.settings import MatchingSettings

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def sweep(pool: asyncpg.Pool, now: datetime, *, batch_size: int = 200) -> int:
    """Expire every pending request due at `now`; return how many were expired."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            expired = await sweep_batch(conn, now, batch_size=batch_size)
        total += expired
        if expired < batch_size:
            return total


async def sweep_batch(conn: asyncpg.Connection, now: datetime, *, batch_size: int = 200) -> int:
    """One batch, in the caller's transaction."""
    rows = await conn.fetch(
        "SELECT request_id FROM meeting_requests WHERE status = $3 AND expires_at <= $1"
        " ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        batch_size,
        domain.Status.PENDING.value,
    )
    count = 0
    for row in rows:
        # Its own trace, which the expiry event carries to its consumers (idle sweeps make none).
        with tracer.start_as_current_span(
            "expire meeting request", attributes={"matching.request_id": row["request_id"]}
        ):
            request = await handlers.load_request(conn, row["request_id"])
            expired = domain.expire(request, now)
            if expired is None:  # answered meanwhile (the projection row is fresh under the lock)
                continue
            await handlers.record(
                conn,
                Decision(request.request_id, request.version, [expired]),
                event_id=request.event_id,
                correlation_id=None,
            )
            count += 1
    return count


async def run_sweeper(pool: asyncpg.Pool, interval: float, clock: Clock = utc_now) -> None:
    """Sweep forever; a failed sweep is logged and retried at the next tick."""
    while True:
        try:
            expired = await sweep(pool, clock())
            if expired:
                log.info("expired %d meeting requests", expired)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("expiry sweep failed; retrying in %.1fs", interval)
        await asyncio.sleep(interval)


async def sweeper(runtime: ServiceRuntime) -> None:
    """The background task the matching runtime starts."""
    settings = runtime.settings
    assert isinstance(settings, MatchingSettings)
    await run_sweeper(runtime.pool, settings.matching_expiry_sweep_seconds)
