"""HTTP plumbing shared by the services' APIs: running a command once, in one transaction.

Who is calling, and whether it may, is `shared.access`'s business (its guard runs
before a route's body is read); `Caller`, `MaybeCaller` and `Granted` are
re-exported here for the routes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import Header, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace

from shared import logs
from shared.access.guard import Caller, Granted, MaybeCaller
from shared.access.policy import Principal
from shared.envelope import ACTOR
from shared.idempotency import request_fingerprint, run_once
from shared.runtime import ServiceRuntime, runtime_of

__all__ = [
    "Caller",
    "Granted",
    "IdempotencyKey",
    "MaybeCaller",
    "correlation_id_for",
    "execute_command",
    "run_command",
]

CORRELATION_HEADER = "X-Correlation-Id"

Command = Callable[[asyncpg.Connection, str | None], Awaitable[Any]]


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


async def run_command(
    request: Request,
    who: Principal | None,
    idempotency_key: str | None,
    body: Any,
    command: Command,
    status: int = 200,
    *,
    atomic: bool = False,
) -> JSONResponse:
    """Run `command` in one transaction, at most once per Idempotency-Key.

    `body` identifies the request with its method and path (a key sent again with another
    request is refused); it may be a function returning it, called only when the
    request carries a key. `atomic`: the command's writes commit together without a
    transaction around it (`shared.idempotency.run_once`)."""
    correlation_id = correlation_of(request)
    code, payload = await execute_command(
        runtime_of(request),
        who,
        idempotency_key,
        # not compared without a key
        lambda: request_fingerprint(
            request.method, request.url.path, body() if callable(body) else body
        ),
        command,
        status,
        correlation_id,
        atomic=atomic,
    )
    return JSONResponse(payload, status_code=code, headers={CORRELATION_HEADER: correlation_id})


async def execute_command(
    runtime: ServiceRuntime,
    who: Principal | None,
    idempotency_key: str | None,
    fingerprint: Callable[[], str],
    command: Command,
    status: int,
    correlation_id: str,
    *,
    atomic: bool = False,
) -> tuple[int, Any]:
    """`run_command` without the request and the response (for `shared.direct_routes`):
    status code and payload. `fingerprint` is called only with a key."""

    async def run(conn: asyncpg.Connection) -> tuple[int, Any]:
        # A domain refusal rolls the transaction back; the app's handler answers it.
        acting = ACTOR.set(who.label if who else "anonymous")
        try:
            return status, await command(conn, correlation_id)
        finally:
            ACTOR.reset(acting)

    return await run_once(
        runtime.pool,
        principal=who.label if who else "anonymous",
        key=idempotency_key,
        fingerprint="" if idempotency_key is None else fingerprint(),
        command=run,
        atomic=atomic,
    )


def correlation_of(request: Request) -> str:
    """The command's correlation id: the caller's `X-Correlation-Id`, else the trace id.

    Every event the command causes, in every service, carries it, and the
    request's span records it, so `python -m shared.traces` finds the trace by it.
    """
    return correlation_id_for(request.headers.get(CORRELATION_HEADER))


def correlation_id_for(given: str | None) -> str:
    """`correlation_of` for a request whose `X-Correlation-Id` is `given` (None: not sent)."""
    span = trace.get_current_span()
    context = span.get_span_context()
    correlation_id = given or (format(context.trace_id, "032x") if context.is_valid else None)
    correlation_id = correlation_id or str(uuid.uuid4())
    span.set_attribute("correlation.id", correlation_id)
    logs.set_correlation(correlation_id)  # the request's later log lines carry it
    return correlation_id
