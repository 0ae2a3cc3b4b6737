"""`shared.savepoints.LazySavepoint` on the real server: a savepoint only where an item
runs a statement, and a failed statement undoes only its item's work."""

from __future__ import annotations

import asyncpg
import pytest

from shared.savepoints import LazySavepoint
from tests.integration.support import FreshDatabase

pytestmark = pytest.mark.integration


async def test_items_keep_their_work_and_a_failed_one_undoes_only_its_own(
    database: FreshDatabase,
) -> None:
    statements: list[str] = []
    async with database.pool.acquire() as conn:
        await conn.execute("CREATE TABLE items (n int PRIMARY KEY)")
        conn.add_query_logger(lambda query: statements.append(query.query))
        async with conn.transaction():
            for n in (1, 2, 3, 4):
                scope = LazySavepoint(conn)
                item = scope.connection()
                try:
                    if n == 2:
                        pass  # no statement: no savepoint
                    elif n == 3:
                        await item.execute("INSERT INTO items VALUES (30)")
                        await item.execute("INSERT INTO items VALUES (1)")  # a duplicate
                    else:
                        await item.execute("INSERT INTO items VALUES ($1)", n)
                    await scope.release()
                except asyncpg.UniqueViolationError:
                    await scope.roll_back()
        kept = [r["n"] for r in await conn.fetch("SELECT n FROM items ORDER BY n")]
    assert kept == [1, 4]  # item 3's first insert went with its failed second
    assert statements.count("SAVEPOINT item") == 3
    assert statements.count("ROLLBACK TO SAVEPOINT item") == 1
