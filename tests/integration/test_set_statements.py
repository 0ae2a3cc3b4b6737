"""Runs sent as one statement over arrays (`shared.set_statements`) and reordered by row
(`shared.batching` lanes) leave the tables as the statements one by one do (real
PostgreSQL): NULLs, jsonb, text[] and timestamptz columns, an upsert meeting its key
twice in one run, an UPDATE of one row twice, inserts meeting on another unique index.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared import set_statements
from shared.batching import apply_run, send_many
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from tests.integration.support import FreshDatabase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TABLES = """
CREATE TABLE {s}.items (
    item_id text PRIMARY KEY,
    label text,
    tags text[],
    context jsonb,
    seen_at timestamptz,
    count int NOT NULL DEFAULT 0,
    cause text,
    UNIQUE (cause)
);
CREATE TABLE {s}.notes (note_id text PRIMARY KEY, body text);
CREATE TABLE {s}.parents (parent_id text PRIMARY KEY);
CREATE TABLE {s}.children (
    child_id text PRIMARY KEY, parent_id text NOT NULL REFERENCES {s}.parents (parent_id)
);
"""
UPSERT = (
    "INSERT INTO items (item_id, label, tags, context, seen_at) VALUES ($1, $2, $3, $4::jsonb, $5)"
    " ON CONFLICT (item_id) DO UPDATE SET label = $2, tags = $3, context = $4::jsonb,"
    " count = items.count + 1"
)
APPEND = "UPDATE items SET tags = array_append(tags, $2), count = count + 1 WHERE item_id = $1"
NOTE = "INSERT INTO notes (note_id, body) VALUES ($1, $2) ON CONFLICT (note_id) DO NOTHING"
CAUSE = "INSERT INTO items (item_id, cause, label) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
CAUSE_OTHER = (
    "INSERT INTO items (item_id, cause, label) VALUES ($1, $2, 'other') ON CONFLICT DO NOTHING"
)

AT = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
UPSERT_ROWS: list[tuple[Any, ...]] = [
    (
        "a",
        "first",
        ["x", None, 'q"uote', "back\\slash", "co,mma"],
        json.dumps({"k": [1, None]}),
        AT,
    ),
    ("b", None, None, None, None),
    ("a", "again", [], json.dumps("text"), AT + timedelta(minutes=1)),  # the key once more
    ("c", "", ["{}", "NULL"], json.dumps(None), AT),
    ("a", "third", ["only"], json.dumps({}), None),
]


@pytest.fixture
async def two(database: FreshDatabase) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Schemas `one` (one by one) and `set` (runs) with the same tables."""
    pools = []
    for schema in ("one", "set"):
        await database.pool.execute(f"CREATE SCHEMA {schema}" + ";" + TABLES.format(s=schema))
        pool = await asyncpg.create_pool(
            database.dsn, min_size=1, max_size=1, server_settings={"search_path": schema}
        )
        assert pool is not None
        pools.append(pool)
    try:
        yield pools[0], pools[1]
    finally:
        for pool in pools:
            await pool.close()


async def _rows(pool: asyncpg.Pool, table: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")]


async def _one_by_one(
    pool: asyncpg.Pool, statements: Sequence[tuple[str, tuple[Any, ...]]]
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for query, args in statements:
            await conn.execute(query, *args)


async def test_an_upsert_meeting_its_key_twice_in_one_run(
    two: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    one, batched = two
    async with batched.acquire() as conn:
        form = await set_statements.form(conn, UPSERT)
        assert form is not None and form.key == (0,)
        # As one statement, PostgreSQL refuses the run: key "a" comes three times...
        with pytest.raises(asyncpg.CardinalityViolationError, match="a second time"):
            await conn.execute(form.sql, *form.columns(UPSERT_ROWS))
        # ...so it is cut where a key repeats, and each chunk is one statement.
        assert [len(chunk) for chunk in form.chunks(UPSERT_ROWS)] == [2, 2, 1]
        async with conn.transaction():
            await send_many(conn, UPSERT, list(UPSERT_ROWS))
    await _one_by_one(one, [(UPSERT, row) for row in UPSERT_ROWS])
    assert await _rows(batched, "items") == await _rows(one, "items")
    a = (await _rows(batched, "items"))[0]
    assert (a["label"], a["tags"], a["count"]) == ("third", ["only"], 2)
    c = (await _rows(batched, "items"))[2]
    assert c["tags"] == ["{}", "NULL"] and c["label"] == ""


async def test_an_update_of_one_row_twice_keeps_both(
    two: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    one, batched = two
    statements = [(UPSERT, row) for row in UPSERT_ROWS[:2]] + [
        (APPEND, ("a", "t1")),
        (APPEND, ("b", None)),
        (APPEND, ("a", "t2")),
        (APPEND, ("missing", "t3")),
    ]
    async with batched.acquire() as conn, conn.transaction():
        for query in (UPSERT, APPEND):
            await send_many(conn, query, [args for q, args in statements if q == query])
    await _one_by_one(one, statements)
    assert await _rows(batched, "items") == await _rows(one, "items")
    assert (await _rows(batched, "items"))[0]["tags"][-2:] == ["t1", "t2"]


def _event(n: int) -> tuple[Envelope, EventPayload]:
    envelope = Envelope(
        id=str(n), source="test", type="t", key=str(n), data={}, time=AT, subject=None
    )
    return envelope, EventPayload()


async def _through_handler(
    pool: asyncpg.Pool, statements: Sequence[tuple[str, tuple[Any, ...]]], batched: bool
) -> None:
    """Each statement as one event's handler, through `apply_run` or one by one."""

    async def handler(conn: asyncpg.Connection, envelope: Envelope, _: EventPayload) -> None:
        query, args = statements[int(envelope.id)]
        await conn.execute(query, *args)

    run = [_event(n) for n in range(len(statements))]
    async with pool.acquire() as conn, conn.transaction():
        if batched:
            await apply_run(conn, handler, run)
        else:
            for envelope, payload in run:
                await handler(conn, envelope, payload)


async def test_interleaved_shapes_reordered_by_row_equal_one_by_one(
    two: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """Upserts, appends and notes interleaved as events of several types would be: the
    lanes reorder them by table and row; the tables end as one by one leaves them."""
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for n in range(40):
        key = f"k{n % 7}"
        statements.append((UPSERT, (key, f"l{n}", [str(n)], json.dumps({"n": n}), AT)))
        statements.append((APPEND, (f"k{(n * 3) % 7}", f"t{n}")))
        statements.append((NOTE, (f"n{n % 5}", f"body {n}")))
    one, batched = two
    await _through_handler(one, statements, batched=False)
    await _through_handler(batched, statements, batched=True)
    for table in ("items", "notes"):
        assert await _rows(batched, table) == await _rows(one, table)


async def test_inserts_meeting_on_another_unique_index_keep_their_order(
    two: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """Two insert shapes whose rows meet on `cause` (not the primary key): which row
    stays depends on which came first, so the lanes must not reorder them."""
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for n in range(30):
        shape = CAUSE if n % 3 else CAUSE_OTHER
        args = (
            (f"i{n}", f"cause{n % 4}", f"label{n}")
            if shape == CAUSE
            else (f"i{n}", f"cause{n % 4}")
        )
        statements.append((shape, args))
        statements.append((APPEND, (f"i{n - 1}", f"t{n}")))
    one, batched = two
    await _through_handler(one, statements, batched=False)
    await _through_handler(batched, statements, batched=True)
    assert await _rows(batched, "items") == await _rows(one, "items")


async def test_a_child_row_waits_for_its_parent(two: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    """Tables joined by a foreign key share a lane: a child's lane created first must not
    be sent before the parent it names was inserted."""
    parent = "INSERT INTO parents (parent_id) VALUES ($1)"
    child = "INSERT INTO children (child_id, parent_id) VALUES ($1, $2)"
    # The window starts with a child whose parent is older, so the children's lane would
    # come first: without the shared lane, c1 would be sent before p1.
    statements: list[tuple[str, tuple[Any, ...]]] = [(child, ("c0", "p0"))]
    for n in range(1, 6):
        statements += [(parent, (f"p{n}",)), (child, (f"c{n}", f"p{n}"))]
    one, batched = two
    for pool in two:
        await pool.execute(parent, "p0")
    await _through_handler(one, statements, batched=False)
    await _through_handler(batched, statements, batched=True)
    for table in ("parents", "children"):
        assert await _rows(batched, table) == await _rows(one, table)
