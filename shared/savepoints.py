"""A savepoint taken only if a statement runs under it.

A loop that isolates each item's work in a savepoint (so that one failed statement
undoes that item's work and the transaction goes on) pays two round trips per item,
SAVEPOINT and RELEASE, also for items that run no statement at all, such as the
sender's e-mails whose reads were all made for the whole batch. `LazySavepoint` is the
transaction's connection as one item's work sees it: the savepoint is taken just before
that work's first statement. The name is fixed (asyncpg numbers its own), so that
`pg_stat_statements` keeps one entry, not one per savepoint ever taken.
"""

from __future__ import annotations

from typing import Any

import asyncpg

NAME = "item"


class LazySavepoint:
    """`conn` (in a transaction) with a savepoint taken before the first statement."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.taken = False

    async def _take(self) -> None:
        if not self.taken:
            await self._conn.execute(f"SAVEPOINT {NAME}")
            self.taken = True

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        await self._take()
        status: str = await self._conn.execute(query, *args, **kwargs)
        return status

    async def executemany(self, query: str, args: Any, **kwargs: Any) -> None:
        await self._take()
        await self._conn.executemany(query, args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> list[asyncpg.Record]:
        await self._take()
        rows: list[asyncpg.Record] = await self._conn.fetch(query, *args, **kwargs)
        return rows

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> asyncpg.Record | None:
        await self._take()
        row: asyncpg.Record | None = await self._conn.fetchrow(query, *args, **kwargs)
        return row

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        await self._take()
        return await self._conn.fetchval(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Anything else (e.g. `transaction()`, which nests its own savepoint) as it is.
        return getattr(self._conn, name)

    async def release(self) -> None:
        """The item's work stands (kept in the transaction)."""
        if self.taken:
            await self._conn.execute(f"RELEASE SAVEPOINT {NAME}")
            self.taken = False

    async def roll_back(self) -> None:
        """Undo the item's work; the transaction goes on."""
        if self.taken:
            await self._conn.execute(f"ROLLBACK TO SAVEPOINT {NAME}")
            await self._conn.execute(f"RELEASE SAVEPOINT {NAME}")
            self.taken = False

    def connection(self) -> asyncpg.Connection:
        """This, typed as the connection the item's code expects."""
        return self
