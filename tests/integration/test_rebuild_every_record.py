"""A plan's `every_record` (`shared.rebuild_topics.apply_insert`: reporting's
history) leaves the rows its statement leaves one envelope at a time: folded while its
table is, sent to the server once the table is released (or without a fold), a
repeated envelope id changing nothing either way."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import asyncpg
import pytest

from shared.envelope import Envelope
from shared.inserts import Insert
from shared.rebuild_copy import write
from shared.rebuild_fold import Fold
from shared.rebuild_topics import EveryRecordAsRead, apply_insert
from tests.integration.support import Infra, fresh_databases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TABLE = """
CREATE TABLE seen (
    seq  bigserial PRIMARY KEY,
    id   text NOT NULL UNIQUE,
    type text NOT NULL,
    key  text NOT NULL
);
"""
EVERY = Insert(
    "seen",
    "INSERT INTO seen (id, type, key) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    lambda envelope: (envelope.id, envelope.type, envelope.key),
)
# Six envelopes, two of them a redelivery of an earlier one under another type.
ENVELOPES = [
    Envelope(id=f"e{n % 4}", source="/s", type=f"t{n}", key=f"k{n}", data={}) for n in range(6)
]


async def _direct_and_rebuilt(pool: asyncpg.Pool, every: Insert) -> None:
    """Schemas `direct` (the statement one envelope at a time) and `rebuilt` (empty)."""
    async with pool.acquire() as conn:
        for schema in ("direct", "rebuilt"):
            await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
            await conn.execute(TABLE)
        await conn.execute("SET search_path = direct")
        for envelope in ENVELOPES:
            await conn.execute(every.query, *every.args(envelope))


async def _rows(conn: asyncpg.Connection, schema: str) -> list[tuple[Any, ...]]:
    return [
        tuple(r) for r in await conn.fetch(f"SELECT id, type, key FROM {schema}.seen ORDER BY seq")
    ]


@pytest.mark.parametrize("release_after", [None, 0, 3, 6], ids=["no fold", "0", "3", "6"])
async def test_every_record_rows_equal_the_statement_one_by_one(
    infra: Infra, release_after: int | None
) -> None:
    name = f"test_every_{uuid.uuid4().hex[:12]}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        pool = await asyncpg.create_pool(dsns[name], min_size=1, max_size=2)
        assert pool is not None
        try:
            await _direct_and_rebuilt(pool, EVERY)
            target = await asyncpg.create_pool(
                dsns[name], min_size=1, max_size=2, server_settings={"search_path": "rebuilt"}
            )
            assert target is not None
            try:
                fold = None
                if release_after is not None:
                    async with target.acquire() as conn:
                        fold = await Fold.read(conn)
                    await apply_insert(target, EVERY, ENVELOPES[:release_after], fold)
                    async with target.acquire() as conn:
                        assert await _rows(conn, "rebuilt") == []  # all in the fold so far
                        for copy, rows in fold.release(["seen"]):
                            await write(conn, copy, rows)
                await apply_insert(
                    target, EVERY, ENVELOPES[release_after or 0 :], fold
                )  # the table released: sent to the server
            finally:
                await target.close()
            async with pool.acquire() as conn:
                direct, rebuilt = await _rows(conn, "direct"), await _rows(conn, "rebuilt")
            assert rebuilt == direct
            assert [row[1] for row in direct] == ["t0", "t1", "t2", "t3"]  # 4 and 5 met e0, e1
        finally:
            await pool.close()


@pytest.mark.parametrize("folds", [True, False], ids=["streamed", "statement does not fold"])
async def test_every_record_folded_as_read_streams_its_rows(
    infra: Infra, folds: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`EveryRecordAsRead`: the envelopes read before the fold exists are folded when it
    starts, later ones batch by batch, their rows on the server before the table is
    released (a chunk per batch here); the rows equal the statement's one by one. A
    statement that does not fold as an insert is left to `apply_insert`."""
    monkeypatch.setattr(EveryRecordAsRead, "CHUNK", 1)
    every = EVERY if folds else _updating(EVERY)
    name = f"test_every_{uuid.uuid4().hex[:12]}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        pool = await asyncpg.create_pool(dsns[name], min_size=1, max_size=2)
        assert pool is not None
        target = await asyncpg.create_pool(
            dsns[name], min_size=1, max_size=3, server_settings={"search_path": "rebuilt"}
        )
        assert target is not None
        try:
            await _direct_and_rebuilt(pool, every)
            read: list[Envelope] = []
            as_read = EveryRecordAsRead(every, read)
            each_batch = as_read.each_batch(lambda batch: read.extend(cast(Any, batch)))
            each_batch(cast(Any, ENVELOPES[:2]))  # before the fold exists
            async with target.acquire() as conn:
                fold = await Fold.read(conn)
            streamed = as_read.start(target, fold)
            each_batch(cast(Any, ENVELOPES[2:5]))
            if folds:
                assert streamed is not None and as_read.rest == []
                async with pool.acquire() as conn:
                    for _ in range(100):
                        if await _copied_before_release(conn):
                            break
                        await asyncio.sleep(0.05)
                    else:
                        pytest.fail("no chunk reached the server before the release")
            else:
                assert streamed is None and as_read.rest == ENVELOPES[:5]
            each_batch(cast(Any, ENVELOPES[5:]))
            await apply_insert(target, every, as_read.rest, fold)
            released = fold.release(["seen"])
            assert (released == []) is folds  # a streamed table's last rows go to its stream
            async with target.acquire() as conn:
                for copy, rows in released:
                    await write(conn, copy, rows)
            if streamed is not None:
                await streamed.write
            async with pool.acquire() as conn:
                direct, rebuilt = await _rows(conn, "direct"), await _rows(conn, "rebuilt")
            assert rebuilt == direct
            assert len(direct) == 4
        finally:
            await target.close()
            await pool.close()


def _updating(every: Insert) -> Insert:
    """`every` as an upsert: folded, but it changes rows already there (not streamed)."""
    query = every.query.replace("DO NOTHING", "DO UPDATE SET type = excluded.type")
    return Insert(every.table, query, every.args)


async def _copied_before_release(conn: asyncpg.Connection) -> bool:
    """Whether a session sent a COPY into `seen` and holds its transaction open (the
    stream's, which commits when the table is released)."""
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
            " AND query ILIKE 'COPY %seen%'"
        )
    )
