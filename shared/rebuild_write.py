"""The rebuild's folded tables written (`shared.rebuild_fold`): while the replay goes on
where that is safe, so that the server's COPY and index builds overlap the Python side.

- `write`: released tables' rows, COPY in one transaction.
- `PendingWrite`: a write under way on another connection, and its tables; the replay's
  sender waits for it before it sends a statement that names one of them.
- `Stream`: one folded table that no statement so far changed a row of (inserts only:
  reporting's history) written in chunks as the windows are recorded, on a connection
  of its own, in one transaction: its indexes dropped before the first chunk and built
  after the last. Its unique keys stay in the fold, so a later insert meets them as
  before; a statement that would change one of its rows is not folded and releases the
  table, which ends the stream (the sender waits for it, as for any `PendingWrite`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared import batching
from shared.rebuild_copy import Dropped, drop_indexes, restore_indexes
from shared.rebuild_fold import Copy, Fold

Rows = list[tuple[Any, ...]]


async def write(target: asyncpg.Pool, released: list[tuple[Copy, Rows]]) -> None:
    """Released folded tables' rows, into their tables (COPY), in one transaction."""
    if released:
        async with target.acquire() as conn, conn.transaction():
            await batching.send_levels(conn, [{copy: rows} for copy, rows in released])


@dataclass(frozen=True)
class PendingWrite:
    """Folded tables' rows being written on another connection (`write`), and those
    tables: what names one of them must wait for it."""

    write: asyncio.Task[None]
    tables: frozenset[str]

    @classmethod
    def start(cls, target: asyncpg.Pool, released: list[tuple[Copy, Rows]]) -> PendingWrite:
        """Released tables' rows written (`write`) on another connection, meanwhile."""
        tables = frozenset(copy.table.lower() for copy, _ in released)
        return cls(asyncio.create_task(write(target, released)), tables)

    def needed_by(self, catalog: batching.Catalog, recorded: batching.Recorded) -> bool:
        if recorded.rest:
            return True  # handlers that read: anything
        for levels in recorded.levels:
            for level in levels:
                for statement in level:
                    if isinstance(statement, Copy):
                        names = frozenset({statement.table.lower()})
                    else:
                        names = catalog.statement(statement).tables
                    if not names or names & self.tables:
                        return True  # (no names: it touches who knows what)
        return False


class Stream:
    """One folded table written while the fold goes on (see the module's docstring)."""

    def __init__(self, target: asyncpg.Pool, fold: Fold, table: str) -> None:
        self._chunks: asyncio.Queue[tuple[Copy, Rows, bool]] = asyncio.Queue()
        self._take = fold.stream(table, self._last)
        self.pending = PendingWrite(asyncio.create_task(self._run(target)), frozenset({table}))

    @classmethod
    def start(cls, target: asyncpg.Pool, fold: Fold, least: int) -> Stream | None:
        """A stream of the largest table `fold` may stream, if it holds `least` rows."""
        found = max(fold.appended_only(), key=lambda t: t[1], default=None)
        return cls(target, fold, found[0]) if found and found[1] >= least else None

    def drain(self) -> None:
        """The rows folded since the last drain, to the server."""
        if not self.pending.write.done():
            copy, rows = self._take()
            if rows:
                self._chunks.put_nowait((copy, rows, False))

    def _last(self, copy: Copy, rows: Rows) -> None:
        self._chunks.put_nowait((copy, rows, True))

    async def _run(self, target: asyncpg.Pool) -> None:
        dropped: Dropped | None = None
        async with target.acquire() as conn, conn.transaction():
            while True:
                copy, rows, last = await self._chunks.get()
                if dropped is None:
                    dropped = await drop_indexes(conn, copy.table)
                if rows:
                    await conn.copy_records_to_table(
                        copy.table, records=rows, columns=list(copy.columns)
                    )
                if last:
                    await restore_indexes(conn, copy.table, dropped)
                    return
