"""A folded table's rows into the server (`shared.rebuild_fold`): one COPY, with the
table's indexes and keys dropped before and built after the load, not row by row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from shared.rebuild_fold import Copy

# The indexes of a table that no constraint owns (not its primary key, not a UNIQUE).
_PLAIN_INDEXES = (
    "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
    " WHERE c.relname = $1 AND pg_table_is_visible(c.oid)"
    " AND NOT EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid)"
)
# Its primary key, UNIQUE and exclusion constraints (a folded table has no other kind
# but CHECK): made again after the load, each checks the final rows then.
_KEYS = (
    "SELECT x.conname AS name, pg_get_constraintdef(x.oid) AS definition"
    " FROM pg_constraint x JOIN pg_class c ON c.oid = x.conrelid"
    " WHERE c.relname = $1 AND pg_table_is_visible(c.oid) AND x.contype IN ('p', 'u', 'x')"
    " ORDER BY x.contype"
)


async def write(conn: asyncpg.Connection, copy: Copy, rows: Sequence[tuple[Any, ...]]) -> None:
    """The rows a fold released, into their table (empty: a folded table never had a row on
    the server) with one COPY, in one transaction. Its indexes are built after the load,
    not row by row: the plain ones made again from their definitions (a partial or
    expression unique one checks the final rows then), the primary key, UNIQUE and
    exclusion constraints added again under their names (which checks them: the fold
    kept the keys, but for a sequence's, which the server fills; the rest it leaves to
    this, `shared.rebuild_fold`). Nobody sees the table
    without them: it is the fresh schema's, and the transaction holds it."""
    dropped = await drop_indexes(conn, copy.table)
    await conn.copy_records_to_table(copy.table, records=rows, columns=list(copy.columns))
    await restore_indexes(conn, copy.table, dropped)


Dropped = tuple[list[asyncpg.Record], list[asyncpg.Record]]  # plain indexes, keys


async def drop_indexes(conn: asyncpg.Connection, table: str) -> Dropped:
    """`table`'s indexes and keys dropped (`write`), to make again after its load."""
    indexes = await conn.fetch(_PLAIN_INDEXES, table)
    keys = await conn.fetch(_KEYS, table)
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    for key in keys:
        await conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{key["name"]}"')
    return indexes, keys


async def restore_indexes(conn: asyncpg.Connection, table: str, dropped: Dropped) -> None:
    """`drop_indexes`'s made again, in the caller's transaction, with the sorts of a
    whole table's index in memory (64 MB by default: history's 213,003 rows spilled;
    its four indexes 0.77 -> 0.67 s, notification's deliveries' five 0.32 -> 0.28 s)."""
    indexes, keys = dropped
    await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for key in keys:
        name, definition = key["name"], key["definition"]
        await conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    for index in indexes:
        await conn.execute(index["definition"])
