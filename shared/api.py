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
from shared.runtime import runtime_of

__all__ = ["Caller", "Granted", "IdempotencyKey", "MaybeCaller", "run_command"]

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
    runtime = runtime_of(request)
    correlation_id = correlation_of(request)

    async def run(conn: asyncpg.Connection) -> tuple[int, Any]:
        # A domain refusal rolls the transaction back; the app's handler answers it.
        acting = ACTOR.set(who.label if who else "anonymous")
        try:
            return status, await command(conn, correlation_id)
        finally:
            ACTOR.reset(acting)

    code, payload = await run_once(
        runtime.pool,
        principal=who.label if who else "anonymous",
        key=idempotency_key,
        fingerprint=(
            ""  # not compared without a key
            if idempotency_key is None
            else request_fingerprint(
                request.method, request.url.path, body() if callable(body) else body
            )
        ),
        command=run,
        atomic=atomic,
    )
    return JSONResponse(payload, status_code=code, headers={CORRELATION_HEADER: correlation_id})


def correlation_of(request: Request) -> str:
    """The command's correlation id: the caller's `X-Correlation-Id`, else the trace id.

    Every event the command causes, in every service, carries it, and the
    request's span records it, so `python -m shared.traces` finds the trace by it.
    """
    span = trace.get_current_span()
    context = span.get_span_context()
    given = request.headers.get(CORRELATION_HEADER)
    correlation_id = given or (format(context.trace_id, "032x") if context.is_valid else None)
    correlation_id = correlation_id or str(uuid.uuid4())
    span.set_attribute("correlation.id", correlation_id)
    logs.set_correlation(correlation_id)  # the request's later log lines carry it
    return correlation_id
