"""The platform's databases sort text by the C collation (`shared.db.create_database`):
the same order as C.UTF-8's, by code point, through PostgreSQL's fast paths."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.integration.support import Infra, create_database, drop_database

pytestmark = pytest.mark.integration

# Names as participants write them: case, accents, digits and scripts mixed.
WORDS = ["Zeta", "alpha", "Ärzte", "ärzte", "b2b", "B2B", "öko", "Øresund", "10", "9", "Ωmega"]


async def test_a_database_of_the_platform_sorts_by_code_point(infra: Infra) -> None:
    name = f"test_{uuid.uuid4().hex}"
    dsn = await create_database(infra.admin_dsn, name)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            assert (
                await conn.fetchval(
                    "SELECT datcollate FROM pg_database WHERE datname = current_database()"
                )
                == "C"
            )
            ordered = await conn.fetchval(
                "SELECT array_agg(w ORDER BY w) FROM unnest($1::text[]) AS w", WORDS
            )
            # Character classes stay the cluster's: upper() knows umlauts.
            assert await conn.fetchval("SELECT upper('ärzte')") == "ÄRZTE"
        finally:
            await conn.close()
    finally:
        await drop_database(infra.admin_dsn, name)
    assert ordered == sorted(WORDS)  # Python's str order: code points
