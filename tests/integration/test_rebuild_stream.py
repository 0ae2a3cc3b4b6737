"""A folded table streamed to the server while the fold goes on (`shared.rebuild_write.
Stream`, reporting's history in a rebuild) leaves the rows the statements would have.

A table with a sequence-filled key and a unique key; a random sequence (hypothesis) of
inserts that may meet rows already streamed (`ON CONFLICT DO NOTHING`), drains at random
points, and possibly a statement that changes a row (an UPDATE by the key, which the
fold refuses for a streamed table: the table is released, its stream ends, and the
statement goes to the server after it, as the rebuild's sender does). Applied one by one
on one schema, folded and streamed on another; rows, and their order, must be the same,
and the streamed table must have its keys and indexes back.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rebuild_copy import write
from shared.rebuild_fold import Fold
from shared.rebuild_write import Stream
from tests.integration.support import Infra, fresh_databases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TABLE = """
CREATE TABLE log (
    seq  bigserial PRIMARY KEY,
    k    text NOT NULL UNIQUE,
    v    integer NOT NULL DEFAULT 0,
    note text
);
CREATE INDEX log_by_v ON log (v, seq);
"""
INSERT = "INSERT INTO log (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING"
UPDATE = "UPDATE log SET note = $2 WHERE k = $1"
KEYS = st.sampled_from([f"k{i}" for i in range(12)])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.tuples(KEYS, st.integers(0, 9))),
        st.tuples(st.just("drain"), st.just(())),
        st.tuples(st.just("update"), st.tuples(KEYS, st.sampled_from(["n0", "n1"]))),
    ),
    max_size=40,
)


async def _rows(conn: asyncpg.Connection, schema: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(f"SELECT k, v, note FROM {schema}.log ORDER BY seq")
    return [tuple(r) for r in rows]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS)
async def test_a_streamed_table_holds_the_rows_of_the_statements_one_by_one(
    infra: Infra, steps: list[tuple[str, tuple[Any, ...]]]
) -> None:
    name = f"test_stream_{uuid.uuid4().hex[:12]}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        conn = await asyncpg.connect(dsns[name])
        pool = await asyncpg.create_pool(
            dsns[name], min_size=1, max_size=2, server_settings={"search_path": "streamed"}
        )
        assert pool is not None
        try:
            for schema in ("direct", "streamed"):
                await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
                await conn.execute(TABLE)
            await conn.execute("SET search_path = direct")
            for kind, args in steps:
                if kind != "drain":
                    await conn.execute(INSERT if kind == "insert" else UPDATE, *args)
            await conn.execute("SET search_path = streamed")
            fold = await Fold.read(conn)
            assert fold.take(INSERT, ("first", 0))  # something to stream from the start
            await conn.execute("SET search_path = direct")
            await conn.execute(INSERT, "first", 0)
            await conn.execute("SET search_path = streamed")
            stream = Stream.start(pool, fold, 1)
            assert stream is not None and fold.appended_only() == []
            for kind, args in steps:
                if kind == "drain":
                    stream.drain()
                elif not fold.take(INSERT if kind == "insert" else UPDATE, args):
                    assert fold.release(["log"]) == []  # the last rows go to the stream
                    await stream.pending.write  # as the sender waits for it
                    await conn.execute(UPDATE if kind == "update" else INSERT, *args)
            for copy, rows in fold.release_all():
                await write(conn, copy, rows)
            await stream.pending.write
            # The direct schema got "first" last; compare without the order of that row.
            direct = await _rows(conn, "direct")
            assert await _rows(conn, "streamed") == [direct[-1], *direct[:-1]]
            indexes = await conn.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = 'streamed'"
            )
            assert indexes == 3  # the primary key, the unique key, the plain index
        finally:
            await pool.close()
            await conn.close()
