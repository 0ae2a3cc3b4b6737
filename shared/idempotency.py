"""`Idempotency-Key` for POST commands: a retry returns the first result, creates nothing.

The key is claimed in the same transaction as the command's events, so either
both commit or neither does. A concurrent retry waits on the claim's row lock
and then reads the stored answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from shared.problems import ProblemError

Command = Callable[[asyncpg.Connection], Awaitable[tuple[int, Any]]]


def request_fingerprint(method: str, path: str, body: Any) -> str:
    raw = json.dumps([method, path, body], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


async def run_once(
    pool: asyncpg.Pool,
    *,
    principal: str,
    key: str | None,
    fingerprint: str,
    command: Command,
    atomic: bool = False,
) -> tuple[int, Any]:
    """Run `command` in a transaction, at most once per (principal, key).

    `atomic`: the command makes its writes commit together itself (they are one
    statement, or it opens a transaction: `shared.statements.Together`), so without a
    key to claim with them it runs outside a transaction, without BEGIN and COMMIT."""
    if key is None and atomic:
        async with pool.acquire() as conn:
            return await command(conn)
    async with pool.acquire() as conn, conn.transaction():
        if key is None:
            return await command(conn)
        if len(key) > 255:
            raise ProblemError(
                400,
                "Invalid Idempotency-Key",
                "longer than 255 characters",
                errors=[{"field": "Idempotency-Key", "reason": "too long"}],
            )
        claimed = await conn.fetchval(
            "INSERT INTO idempotency_keys (principal, key, request_hash) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            principal,
            key,
            fingerprint,
        )
        if not claimed:
            row = await conn.fetchrow(
                "SELECT request_hash, status_code, response_body FROM idempotency_keys"
                " WHERE principal = $1 AND key = $2",
                principal,
                key,
            )
            assert row is not None
            if row["request_hash"] != fingerprint:
                raise ProblemError(
                    422,
                    "Idempotency-Key reused",
                    "this Idempotency-Key was used for a different request",
                    errors=[{"field": "Idempotency-Key", "reason": "used for another request"}],
                )
            return row["status_code"], json.loads(row["response_body"])
        status, body = await command(conn)
        await conn.execute(
            "UPDATE idempotency_keys SET status_code = $3, response_body = $4::jsonb"
            " WHERE principal = $1 AND key = $2",
            principal,
            key,
            status,
            json.dumps(body, default=str),
        )
        return status, body
