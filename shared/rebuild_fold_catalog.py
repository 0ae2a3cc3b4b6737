"""What the fresh schema's catalog says about its tables, for the fold (`shared.rebuild_fold`):
their columns and defaults, unique indexes, foreign keys and exclusion constraints."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

SERIAL = object()  # a column the server fills at the COPY (sequence, identity)

COLUMNS = (
    "SELECT c.relname AS table_name, a.attname AS column_name,"
    " format_type(a.atttypid, a.atttypmod) AS type, pg_get_expr(d.adbin, d.adrelid) AS fallback,"
    " a.attidentity <> '' AS identity, a.attgenerated <> '' AS generated"
    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE c.relkind = 'r' AND pg_table_is_visible(c.oid) AND a.attnum > 0"
    " AND NOT a.attisdropped ORDER BY c.relname, a.attnum"
)
UNIQUES = (
    "SELECT c.relname AS table_name, i.indimmediate AS immediate,"
    " (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL) AS partial,"
    " array(SELECT a.attname::text FROM unnest(i.indkey) k"
    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k) AS columns"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
    " WHERE i.indisunique AND pg_table_is_visible(c.oid)"
)
CONSTRAINED = (
    "SELECT c.relname AS table_name FROM pg_constraint x JOIN pg_class c"
    " ON c.oid IN (x.conrelid, x.confrelid) WHERE x.contype = 'f'"
    " AND pg_table_is_visible(c.oid)"
)
# Tables with an exclusion constraint (checked on the final rows: `shared.rebuild_fold`).
EXCLUDING = (
    "SELECT c.relname AS table_name FROM pg_constraint x JOIN pg_class c"
    " ON c.oid = x.conrelid WHERE x.contype = 'x' AND pg_table_is_visible(c.oid)"
)

# now() as a default or a value, as the catalog and statements spell it.
NOW_TEXT = re.compile(r"^(?:now\(\)|current_timestamp)$", re.IGNORECASE)


async def defaults_of(
    conn: asyncpg.Connection, columns: Sequence[asyncpg.Record], now: datetime
) -> list[Any] | None:
    """Each column's default as a value (now() as `now`) or `SERIAL`; None if some
    default is anything else (a function of the moment but now(), a generated column)."""
    defaults: list[Any] = []
    constants: dict[int, str] = {}
    for i, column in enumerate(columns):
        text = column["fallback"]
        if column["generated"]:
            return None
        if column["identity"] or (text or "").startswith("nextval("):
            defaults.append(SERIAL)
        elif text is None:
            defaults.append(None)
        elif NOW_TEXT.match(text.strip()):
            defaults.append(now)
        elif "(" in text:
            return None  # a function's value: not known to be constant
        else:
            defaults.append(None)
            constants[i] = text
    if constants:
        values = await conn.fetchrow(
            "SELECT " + ", ".join(f"({text}) AS c{i}" for i, text in constants.items())
        )
        assert values is not None
        for i in constants:
            defaults[i] = values[f"c{i}"]
    return defaults
