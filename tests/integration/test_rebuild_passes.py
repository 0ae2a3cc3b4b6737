"""The consumed events in passes (`shared.rebuild.Plan.passes`, reporting's history in a
pass of its own, written and indexed while the next pass runs) leave the rows of one
pass; a later pass that names a table an earlier one wrote is refused, not applied in
another order.

Two tables, each fed by its own handler: `log` (inserts that may meet a repeated id, so
which one comes first matters) and `tally` (an upsert per key, so the last one matters).
The same events, with repeats, through both handlers in one pass on one schema, and in
two passes on another, as the rebuild applies them (folded, in windows, the first pass's
table written on another connection during the second); the rows and their order must
be the same.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared import rebuild
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.envelope import Envelope
from shared.inbox import combine
from shared.rebuild import Plan, apply_consumed
from shared.rebuild_copy import write
from shared.rebuild_fold import Fold
from shared.rebuild_topics import Placed
from shared.rebuild_write import PendingWrite, passed
from tests.integration.support import Infra, fresh_databases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TABLES = """
CREATE TABLE log (seq bigserial PRIMARY KEY, k text NOT NULL UNIQUE, v integer NOT NULL);
CREATE INDEX log_by_v ON log (v, seq);
CREATE TABLE tally (k text PRIMARY KEY, n integer NOT NULL);
"""
TYPE = "test.Happened.v1"


async def _log(conn: asyncpg.Connection, envelope: Envelope, _: EventPayload) -> None:
    await conn.execute(
        "INSERT INTO log (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING",
        envelope.id,
        envelope.data["v"],
    )


async def _tally(conn: asyncpg.Connection, envelope: Envelope, _: EventPayload) -> None:
    await conn.execute(
        "INSERT INTO tally (k, n) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n",
        envelope.key,
        envelope.data["v"],
    )


def _events(count: int) -> list[Placed]:
    """Events with repeated ids (`log` keeps the first) and keys (`tally` the last), in
    an order their times put right (the rebuild sorts them)."""
    out: list[Placed] = []
    for n in reversed(range(count)):
        envelope = Envelope(
            id=f"id-{n % (count // 3)}", source="/test", type=TYPE, key=f"k{n % 7}", data={"v": n}
        )
        out.append(((n, "t", 0, n), (envelope, None)))  # type: ignore[arg-type]
    return out


def _plan(*passes: dict[str, Any]) -> Plan:
    return Plan("test", Path("."), ("log", "tally"), None, consumed=combine(*passes), passes=passes)


async def _apply(pool: asyncpg.Pool, plan: Plan, events: list[Placed]) -> None:
    async with pool.acquire() as conn:
        fold = await Fold.read(conn)
    pending: list[PendingWrite] = []
    writes: list[PendingWrite] = []

    def between() -> None:
        if started := passed(fold, pool, pending, None):
            writes.append(started)

    try:
        await apply_consumed(
            pool, plan, PayloadRegistry(), events, fold=fold, after=pending, between=between
        )
        async with pool.acquire() as conn, conn.transaction():
            for copy, rows in fold.release_all():
                await write(conn, copy, rows)
    finally:
        for started in writes:
            await started.write


async def _rows(conn: asyncpg.Connection, schema: str) -> tuple[list[Any], list[Any]]:
    log = await conn.fetch(f"SELECT k, v FROM {schema}.log ORDER BY seq")
    tally = await conn.fetch(f"SELECT k, n FROM {schema}.tally ORDER BY k")
    return [tuple(r) for r in log], [tuple(r) for r in tally]


async def test_passes_leave_the_rows_of_one_pass(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuild, "BATCH", 50)  # several windows per pass
    name = f"test_passes_{uuid.uuid4().hex[:12]}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        conn = await asyncpg.connect(dsns[name])
        pools = []
        try:
            for schema in ("one", "two"):
                await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
                await conn.execute(TABLES)
                pools.append(
                    await asyncpg.create_pool(
                        dsns[name], min_size=1, max_size=3, server_settings={"search_path": schema}
                    )
                )
            one, two = pools
            await _apply(one, _plan(combine({TYPE: _log}, {TYPE: _tally})), _events(300))
            await _apply(two, _plan({TYPE: _log}, {TYPE: _tally}), _events(300))
            log, tally = await _rows(conn, "one")
            assert len(log) == 100 and len(tally) == 7
            assert (log, tally) == await _rows(conn, "two")
        finally:
            for pool in pools:
                await pool.close()
            await conn.close()


async def test_a_later_pass_that_names_an_earlier_passs_table_is_refused(infra: Infra) -> None:
    name = f"test_passes_{uuid.uuid4().hex[:12]}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        conn = await asyncpg.connect(dsns[name])
        await conn.execute(TABLES)
        pool = await asyncpg.create_pool(dsns[name], min_size=1, max_size=3)
        try:
            plan = _plan({TYPE: _log}, combine({TYPE: _tally}, {TYPE: _log}))
            with pytest.raises(RuntimeError, match="log"):
                await _apply(pool, plan, _events(30))
        finally:
            await pool.close()
            await conn.close()


def test_passes_must_hold_the_consumed_handlers_types() -> None:
    with pytest.raises(ValueError, match="passes"):
        Plan("test", Path("."), ("log",), None, consumed={TYPE: _log}, passes=({"other": _log},))
