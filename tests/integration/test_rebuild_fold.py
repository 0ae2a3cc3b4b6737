"""The rebuild's fold (`shared.rebuild_fold`) leaves the rows the statements would have.

A table with a sequence-filled primary key, a second unique key, a unique pair that may
hold NULLs, and defaults of every kind the fold reads; a random sequence (hypothesis) of
the statement shapes it folds (inserts that meet rows on either key, upserts, updates
by either key, `coalesce`, `now()`, constants) and one it does not fold (which releases
the table to the server midway, as a handler's read would). Applied one by one on one
schema, folded then written with COPY (and the rest on the server) on another; the rows,
and the order the sequence numbered them in, must be the same.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rebuild_copy import write
from shared.rebuild_fold import Fold
from tests.integration.support import Infra, fresh_databases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TABLE = """
CREATE TABLE items (
    seq   bigserial PRIMARY KEY,
    k     text NOT NULL UNIQUE,
    a     text,
    b     integer NOT NULL DEFAULT 0,
    d     integer NOT NULL DEFAULT -1,
    c     boolean NOT NULL DEFAULT false,
    tags  text[] NOT NULL DEFAULT '{}',
    doc   jsonb,
    note  text DEFAULT 'none',
    id    uuid,
    at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (a, b)
);
CREATE INDEX items_by_tag ON items USING gin (tags);
CREATE INDEX items_by_note ON items (note) WHERE c;
"""

STATEMENTS = [
    "INSERT INTO items (k, a, b) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    "INSERT INTO items (k, doc, tags, id) VALUES ($1, $2::jsonb, $3, $4::uuid)"
    " ON CONFLICT (k) DO UPDATE SET doc = EXCLUDED.doc, tags = EXCLUDED.tags, c = true,"
    " note = coalesce(items.note, 'was null')",
    "UPDATE items SET d = $2, note = coalesce($3, note), at = now() WHERE k = $1",
    "UPDATE items SET note = 'by pair', c = false WHERE a = $1 AND b = $2",
    "INSERT INTO items (k, note) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING",
    "UPDATE items SET d = d + 1 WHERE k = $1",  # not folded: releases the table
    "INSERT INTO items (k, note, c) VALUES ($1, 'given', true) ON CONFLICT (k) DO NOTHING",
]
# The same table with one unique key but the sequence's (the fold's quick path for such a
# table: reporting's history); an update by the pair is then not folded.
ONE_KEY = TABLE.replace(",\n    UNIQUE (a, b)\n", "\n")
assert ONE_KEY != TABLE
KEYS = st.sampled_from(["k0", "k1", "k2", "k3", "k4"])
PAIRS = st.tuples(st.sampled_from([None, "a0", "a1"]), st.integers(0, 1))
NOTES = st.sampled_from([None, "n0", "it's"])
IDS = st.sampled_from([None, "6a0e38e8-5677-49ba-8e7f-6baaab9823e3", uuid.UUID(int=7)])
CALLS = st.one_of(
    st.tuples(st.just(0), st.tuples(KEYS, st.sampled_from([None, "a0", "a1"]), st.integers(0, 1))),
    st.tuples(
        st.just(1),
        st.tuples(KEYS, st.sampled_from(['{"x": 1}', "[]"]), st.lists(KEYS, max_size=2), IDS),
    ),
    st.tuples(st.just(2), st.tuples(KEYS, st.integers(0, 9), NOTES)),
    st.tuples(st.just(3), PAIRS),
    st.tuples(st.just(4), st.tuples(KEYS, NOTES)),
    st.tuples(st.just(5), st.tuples(KEYS)),
    st.tuples(st.just(6), st.tuples(KEYS)),
)
COLUMNS = "k, a, b, d, c, tags, doc, note, id"


@contextlib.asynccontextmanager
async def _database(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database of its own, dropped afterwards."""
    name = f"test_fold_{uuid.uuid4().hex[:12]}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        conn = await asyncpg.connect(dsns[name])
        try:
            yield conn
        finally:
            await conn.close()


async def _rows(conn: asyncpg.Connection, schema: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM {schema}.items ORDER BY seq")
    return [tuple(r) for r in rows]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(calls=st.lists(CALLS, max_size=30))
@pytest.mark.parametrize("table", [TABLE, ONE_KEY], ids=["two keys", "one key"])
async def test_folded_rows_equal_the_statements_one_by_one(
    infra: Infra, table: str, calls: list[tuple[int, tuple[Any, ...]]]
) -> None:
    async with _database(infra) as conn:
        for schema in ("direct", "folded"):
            await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
            await conn.execute(table)
        await conn.execute("SET search_path = direct")
        for n, args in calls:
            await conn.execute(STATEMENTS[n], *args)
        await conn.execute("SET search_path = folded")
        fold = await Fold.read(conn)
        async with conn.transaction():
            for n, args in calls:
                if not fold.take(STATEMENTS[n], args):
                    for copy, rows in fold.release(["items"]):
                        await write(conn, copy, rows)
                    await conn.execute(STATEMENTS[n], *args)
            for copy, rows in fold.release_all():
                await write(conn, copy, rows)
        assert await _rows(conn, "folded") == await _rows(conn, "direct")
        indexes = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = 'folded'")
        # The primary key, the unique ones and both plain ones, made again.
        uniques = 2 if table is TABLE else 1
        assert indexes == 3 + uniques
        keys = await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'folded.items'::regclass"
            " AND contype IN ('p', 'u')"
        )
        assert keys == 1 + uniques


async def test_a_statement_it_cannot_fold_is_left_to_the_server(infra: Infra) -> None:
    async with _database(infra) as conn:
        await conn.execute(TABLE)
        fold = await Fold.read(conn)
        assert fold.take(STATEMENTS[0], ("k0", "a0", 1))
        for query in (
            STATEMENTS[5],
            "UPDATE items SET note = $2 WHERE k = $1 AND note IS NULL",  # not just a key
            "UPDATE items SET k = $2 WHERE k = $1",  # moves a row to another key
            "UPDATE items SET note = $2 WHERE d = $1",  # not a unique key
            "INSERT INTO items (seq, k) VALUES ($1, $2)",  # the sequence's column
            "WITH x AS (SELECT 1) INSERT INTO items (k) VALUES ($1)",
            "INSERT INTO items (k, d) VALUES ($1, $2::bigint)",  # a cast to another type
        ):
            assert not fold.take(query, ("k0", "x")), query
        with pytest.raises(asyncpg.UniqueViolationError):
            fold.take("INSERT INTO items (k) VALUES ($1)", ("k0",))


# Checks the fold does not make per statement: made on the final rows by the COPY's write.
CHECKED = """
CREATE TABLE pairs (
    id     text PRIMARY KEY,
    a      text NOT NULL,
    b      text NOT NULL,
    status text NOT NULL,
    slot   integer,
    EXCLUDE USING btree (slot WITH =) WHERE (status = 'placed') DEFERRABLE INITIALLY DEFERRED
);
CREATE UNIQUE INDEX pairs_one_open ON pairs (least(a, b), greatest(a, b))
    WHERE status IN ('open', 'placed');
"""
PAIR_INSERT = "INSERT INTO pairs (id, a, b, status) VALUES ($1, $2, $3, 'open')"
PAIR_UPDATE = "UPDATE pairs SET status = $2, slot = $3 WHERE id = $1"


async def test_checks_it_does_not_make_are_made_on_the_final_rows(infra: Infra) -> None:
    """A table with a partial expression unique index and a deferred exclusion
    constraint is folded (keyed by its primary key only) and both are made again after
    the COPY: final rows that keep them are written; rows that break one are refused
    there, as the server would have refused a statement. What such a check arbitrates
    (DO NOTHING without a target) is left to the server."""
    async with _database(infra) as conn:
        await conn.execute(CHECKED)
        fold = await Fold.read(conn)
        assert not fold.take(PAIR_INSERT + " ON CONFLICT DO NOTHING", ("p0", "x", "y"))
        # Two open requests of one pair at once, in between: made, as the live order
        # would not have, but the final rows keep every check.
        for args in (("p1", "x", "y"), ("p2", "y", "x")):
            assert fold.take(PAIR_INSERT, args)
        assert fold.take(PAIR_UPDATE, ("p1", "declined", None))
        assert fold.take(PAIR_UPDATE, ("p2", "placed", 3))
        async with conn.transaction():
            for copy, rows in fold.release_all():
                await write(conn, copy, rows)
        found = await conn.fetch("SELECT id, status, slot FROM pairs ORDER BY id")
        assert [tuple(r) for r in found] == [("p1", "declined", None), ("p2", "placed", 3)]
        made = await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'pairs'::regclass"
            " AND contype = 'x' AND condeferred"
        )
        assert made == 1
        assert await conn.fetchval("SELECT to_regclass('pairs_one_open') IS NOT NULL")

        await conn.execute("TRUNCATE pairs")
        fold = await Fold.read(conn)
        for args in (("p1", "x", "y"), ("p2", "y", "x")):
            assert fold.take(PAIR_INSERT, args)  # both open at the end
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                for copy, rows in fold.release_all():
                    await write(conn, copy, rows)
        fold = await Fold.read(conn)
        for args in (("p1", "x", "y"), ("p2", "v", "w")):
            assert fold.take(PAIR_INSERT, args)
            assert fold.take(PAIR_UPDATE, (args[0], "placed", 5))  # one slot, twice
        with pytest.raises(asyncpg.ExclusionViolationError):
            async with conn.transaction():
                for copy, rows in fold.release_all():
                    await write(conn, copy, rows)
        assert await conn.fetchval("SELECT count(*) FROM pairs") == 0
