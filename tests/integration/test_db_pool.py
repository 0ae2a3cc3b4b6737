"""The services' connection pool (`shared.db.create_pool`) against the real server: a
release costs no round trip, and still hands the next user a clean connection."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import advisory_lock_id, create_pool, migrate
from tests.integration.support import FreshDatabase

pytestmark = pytest.mark.integration


async def last_statement(dsn: str, pid: int) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        query: str = await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        return query
    finally:
        await conn.close()


async def test_a_release_sends_nothing_after_the_last_statement(database: FreshDatabase) -> None:
    pool = await create_pool(database.dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.fetchval("SELECT 41 + 1")
        # asyncpg's default reset would have sent "SELECT pg_advisory_unlock_all(); ...".
        assert await last_statement(database.dsn, pid) == "SELECT 41 + 1"
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == pid  # the same connection, reused
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(database: FreshDatabase) -> None:
    pool = await create_pool(database.dsn, min_size=1, max_size=1)
    try:
        await pool.execute("CREATE TABLE left_open (n int)")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")  # not through conn.transaction(): nobody ends it
            await conn.execute("INSERT INTO left_open VALUES (1)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM left_open") == 0
            await conn.execute("INSERT INTO left_open VALUES (2)")  # not aborted either
    finally:
        await pool.close()


async def test_migrations_leave_no_lock_on_the_pooled_connection(
    database: FreshDatabase,
) -> None:
    pool = await create_pool(database.dsn, min_size=1, max_size=1)
    try:
        await migrate(pool)
        other = await asyncpg.connect(database.dsn)
        try:
            lock = advisory_lock_id("schema-migrations")
            assert await other.fetchval("SELECT pg_try_advisory_lock($1)", lock)
        finally:
            await other.close()
    finally:
        await pool.close()
