"""bench-event's snapshot of `pg_stat_statements` on the real server: read wherever
the module is loaded (deploy/local/infra.sh loads it), and None, not an error, where a
server was started without it."""

from __future__ import annotations

import asyncpg
import pytest

from bench.event.statements import Snapshot, snapshot
from tests.integration.support import Infra

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_a_snapshot_counts_the_statements_run_since_the_last(infra: Infra) -> None:
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        loaded = "pg_stat_statements" in await conn.fetchval("SHOW shared_preload_libraries")
        before = await snapshot(infra.admin_dsn)
        assert (before is not None) == loaded
        if before is None:
            pytest.skip(
                "this PostgreSQL was started without pg_stat_statements (infra.sh loads it at"
                " the server's next start); the None answer was checked"
            )
        for _ in range(3):
            await conn.fetchval("SELECT $1::int AS bench_statements_probe", 1)
        after = await snapshot(infra.admin_dsn)
    finally:
        await conn.close()
    assert after is not None

    def calls(found: Snapshot) -> int:
        return sum(c.calls for c in found.values() if "bench_statements_probe" in c.query)

    assert calls(after) - calls(before) == 3
