"""PostgreSQL connection pool and per-service migrations, applied on start."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

PLUMBING_MIGRATIONS = Path(__file__).parent / "sql"


def create_database(name: str) -> str:
    """The statement that creates a database of the platform's: text compared and sorted
    by the C collation, the character classes (`LC_CTYPE`: upper, lower, ILIKE) the
    cluster's. For UTF-8 text C orders as C.UTF-8 does (by code point), but PostgreSQL
    15 takes its fast paths (memcmp, abbreviated sort keys) only for C: C.UTF-8 goes
    through strcoll. Reporting's history, 141,003 rows: its unique index on
    `envelope_id` built in 82 ms instead of 142, its GIN index of registrations in 123
    instead of 160. `deploy/local/infra.sh` and `deploy/postgres/init-databases.sql`
    create the services' databases the same way."""
    return f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE 'C'"


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """A pool whose connections carry no session state from one user to the next.

    asyncpg's default reset on release is a round trip of its own (advisory unlock
    all, close cursors, unlisten, reset settings): one more per request than the
    work needs. The platform keeps none of that on pooled connections (its locks are
    transaction-scoped, LISTEN has connections of its own, nothing SETs a session
    variable), so releasing only ends an open transaction and drops listeners, as
    asyncpg does before any reset. Migrations' session lock is released by `migrate`.
    """
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init, reset=_no_session_state
    )
    assert pool is not None
    return pool


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Called on release after asyncpg has rolled back any open transaction."""


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def advisory_lock_id(name: str) -> int:
    """A stable 64-bit advisory lock id for `name`."""
    return _lock_id(name)


def migration_files(*directories: Path) -> list[tuple[str, Path]]:
    """The plumbing migrations, then each directory's `*.sql` files in name order: each
    with the name `schema_migrations` keeps it under."""
    return [
        (f"{directory.parent.name}/{directory.name}/{path.name}", path)
        for directory in (PLUMBING_MIGRATIONS, *directories)
        for path in sorted(directory.glob("*.sql"))
    ]


async def migrate(pool: asyncpg.Pool, *directories: Path) -> list[str]:
    """Apply the plumbing migrations, then each directory's `*.sql` files in name order.

    Each file runs once, in its own transaction, under an advisory lock so that
    two processes starting together do not race.
    """
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_id("schema-migrations"))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, path in migration_files(*directories):
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", _lock_id("schema-migrations"))
            except BaseException:
                conn.terminate()  # never back into the pool holding the lock
                raise
    return applied
