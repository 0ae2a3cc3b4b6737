"""The rebuilt schema beside the live one (`shared.rebuild`): made fresh with the
service's migrations, compared with the live tables row by row, and, at a switch, its
tables' triggers pointed at the live schema's functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from shared.db import migration_files

if TYPE_CHECKING:
    from shared.rebuild import Plan


@dataclass
class Difference:
    table: str
    only_live: int
    only_rebuilt: int
    samples: list[str]


async def fresh_schema(dsn: str, schema: str, plan: Plan) -> asyncpg.Pool:
    """`schema` dropped if it was there, made anew with the plan's migrations: a pool on it.

    Dropped, made and migrated in one round trip: one script, which the server runs as
    one transaction (not four round trips per file, as `shared.db.migrate` makes them,
    nor two more for the schema): the rebuild reads the topics meanwhile, and while their
    decoding holds the event loop each round trip waits for it. The fresh schema keeps no
    `schema_migrations` rows: it is never migrated again (its tables move to `public`, or
    the next rebuild drops it)."""
    # Four: the replay's sender, a streamed table's writer and two earlier writes at once.
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=4, server_settings={"search_path": schema}
    )
    assert pool is not None
    steps = [f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', f'CREATE SCHEMA "{schema}"']
    steps += [path.read_text() for _, path in migration_files(plan.migrations)]
    try:
        async with pool.acquire() as conn:
            await conn.execute("\n;\n".join(steps))
    except BaseException:
        await pool.close()
        raise
    return pool


async def compare(
    conn: asyncpg.Connection, plan: Plan, live: str, rebuilt: str
) -> list[Difference]:
    """Row-by-row differences between each live table and its rebuilt twin."""
    differences = []
    for table in plan.tables:
        columns = await conn.fetch(
            "SELECT column_name, column_default FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            live,
            table,
        )
        skip = set(plan.volatile.get(table, ()))
        compared = [
            c["column_name"]
            for c in columns
            if c["column_name"] not in skip
            and not (c["column_default"] or "").startswith(("now()", "nextval("))
        ]
        cols = ", ".join(f'"{c}"' for c in compared)
        counts = []
        samples: list[str] = []
        for a, b in ((live, rebuilt), (rebuilt, live)):
            query = (
                f'SELECT {cols} FROM "{a}"."{table}" EXCEPT ALL SELECT {cols} FROM "{b}"."{table}"'
            )
            rows = await conn.fetch(f"SELECT * FROM ({query}) d LIMIT 3")
            n = await conn.fetchval(f"SELECT count(*) FROM ({query}) d")
            counts.append(int(n))
            samples += [f"only in {a}: {dict(r)}" for r in rows]
        if any(counts):
            differences.append(Difference(table, counts[0], counts[1], samples))
    return differences


async def rehome_triggers(conn: asyncpg.Connection, schema: str, tables: Sequence[str]) -> None:
    """Point the switched-in tables' triggers at the live schema's functions.

    The fresh schema's migrations made its own copies of the trigger functions (a
    NOTIFY that wakes notification's sender or matching's embedding worker), and its
    tables' triggers call those. The next rebuild drops that schema, CASCADE, and with
    the functions the triggers on the live tables would go: the sender would fall back
    to polling, unnoticed. The live schema has the same functions (the same migrations
    made them), so each such trigger is made again calling the live one."""
    rows = await conn.fetch(
        "SELECT t.tgname, c.relname, p.proname, pg_get_triggerdef(t.oid) AS definition"
        " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace tn ON tn.oid = c.relnamespace"
        " JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace"
        " WHERE NOT t.tgisinternal AND tn.nspname = 'public' AND pn.nspname = $1"
        " AND c.relname = ANY($2::text[])",
        schema,
        list(tables),
    )
    for row in rows:
        called = f"{row['proname']}("
        definition = row["definition"]
        for qualified in (f"{schema}.{called}", f'"{schema}".{called}'):
            definition = definition.replace(qualified, f"public.{called}")
        await conn.execute(f'DROP TRIGGER "{row["tgname"]}" ON public."{row["relname"]}"')
        await conn.execute(definition)
