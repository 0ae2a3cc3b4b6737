"""HTTP plumbing shared by the services' APIs: who is calling, and running a command.

Every service keeps an `api_keys` table (digest → role, subject), filled from
registration's events, so a key issued by registration works everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace

from shared.auth import ADMIN_ID, Principal, digest, same_secret
from shared.errors import Forbidden, NotFound, RuleViolation
from shared.idempotency import request_fingerprint, run_once
from shared.problems import ProblemError
from shared.runtime import runtime_of

CORRELATION_HEADER = "X-Correlation-Id"

Command = Callable[[asyncpg.Connection, str | None], Awaitable[Any]]


async def record_key(conn: asyncpg.Connection, key_digest: str, role: str, subject: str) -> None:
    """Remember a key issued by registration (idempotent: events may be replayed)."""
    await conn.execute(
        "INSERT INTO api_keys (key_digest, role, subject_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (key_digest) DO NOTHING",
        key_digest,
        role,
        subject,
    )


async def principal(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal | None:
    key = x_api_key or (
        authorization[7:] if authorization and authorization.lower().startswith("bearer ") else None
    )
    if not key:
        return None
    runtime = runtime_of(request)
    if same_secret(key, runtime.settings.platform_admin_key):
        return Principal("admin", ADMIN_ID)
    row = await runtime.pool.fetchrow(
        "SELECT role, subject_id FROM api_keys WHERE key_digest = $1", digest(key)
    )
    if row is None:
        raise ProblemError(401, "Unknown API key", "the API key is not valid")
    return Principal(row["role"], row["subject_id"])


async def required(who: Annotated[Principal | None, Depends(principal)]) -> Principal:
    if who is None:
        raise ProblemError(
            401,
            "API key required",
            "send your key in the X-API-Key header (or Authorization: Bearer)",
        )
    return who


Caller = Annotated[Principal, Depends(required)]
MaybeCaller = Annotated[Principal | None, Depends(principal)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def as_problem(exc: Exception) -> ProblemError:
    if isinstance(exc, RuleViolation):
        return ProblemError(
            exc.status,
            "Request breaks a rule",
            f"{exc.field}: {exc.reason}",
            errors=[{"field": exc.field, "reason": exc.reason}],
        )
    if isinstance(exc, NotFound):
        return ProblemError(404, "Not found", str(exc))
    if isinstance(exc, Forbidden):
        return ProblemError(403, "Forbidden", str(exc))
    raise exc


async def run_command(
    request: Request,
    who: Principal | None,
    idempotency_key: str | None,
    body: Any,
    command: Command,
    status: int = 200,
) -> JSONResponse:
    """Run `command` in one transaction, at most once per Idempotency-Key."""
    runtime = runtime_of(request)
    correlation_id = correlation_of(request)

    async def run(conn: asyncpg.Connection) -> tuple[int, Any]:
        try:
            return status, await command(conn, correlation_id)
        except (RuleViolation, NotFound, Forbidden) as exc:
            raise as_problem(exc) from exc

    code, payload = await run_once(
        runtime.pool,
        principal=who.label if who else "anonymous",
        key=idempotency_key,
        fingerprint=request_fingerprint(request.method, request.url.path, body),
        command=run,
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
    return correlation_id
