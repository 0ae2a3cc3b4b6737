"""What PostgreSQL executed during the run, from `pg_stat_statements`, when it is loaded.

The view's counters are the server's since its last reset, and other work may share
the server: the bench resets nothing, it takes a snapshot before the event and one
after, and reports the difference (statements a run of someone else's touched in the
same period are counted too; the report says the view is server-wide). Per service
database: statements executed and their execution time per command; then the
statements that took the most time, where a plan that scans (a generic plan that
cannot use an index) shows as a high mean.

`deploy/local/infra.sh` loads the module (`shared_preload_libraries`); a server
started without it answers that it is not loaded, and the report says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

SERVICE_DATABASES = ("registration", "matching", "scheduling", "notification", "reporting")
_SNAPSHOT = (
    "SELECT d.datname AS database, s.queryid, s.calls, s.total_exec_time, s.rows, s.query"
    " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
    " WHERE s.queryid IS NOT NULL"
)
TOP = 12
QUERY_CHARS = 110


@dataclass(frozen=True)
class Counted:
    calls: int
    exec_ms: float
    rows: int
    query: str


Snapshot = dict[tuple[str, int], Counted]


async def snapshot(admin_url: str) -> Snapshot | None:
    """The server's counters now; None where `pg_stat_statements` is not loaded.

    Read in the administration database (`postgres`), where the view is created if
    missing: never in a service's database, whose schema is the service's own.
    """
    try:
        conn = await asyncpg.connect(admin_url)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rows = await conn.fetch(_SNAPSHOT)
    except (asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        await conn.close()
    return {
        (r["database"], r["queryid"]): Counted(
            r["calls"], r["total_exec_time"], r["rows"], r["query"]
        )
        for r in rows
    }


def difference(before: Snapshot, after: Snapshot, commands: int) -> dict[str, Any]:
    """What ran between the two snapshots: totals per service database, the top statements."""
    ran: list[tuple[str, Counted]] = []
    for key, now in after.items():
        then = before.get(key)
        calls = now.calls - (then.calls if then else 0)
        if calls <= 0:
            continue
        ran.append(
            (
                key[0],
                Counted(
                    calls,
                    now.exec_ms - (then.exec_ms if then else 0.0),
                    now.rows - (then.rows if then else 0),
                    now.query,
                ),
            )
        )
    per_command = max(commands, 1)
    databases = {}
    for name in SERVICE_DATABASES:
        mine = [c for database, c in ran if database == name]
        calls = sum(c.calls for c in mine)
        exec_ms = sum(c.exec_ms for c in mine)
        databases[name] = {
            "statements": calls,
            "statements_per_command": round(calls / per_command, 1),
            "exec_s": round(exec_ms / 1000, 1),
            "exec_ms_per_command": round(exec_ms / per_command, 2),
        }
    top = sorted(((d, c) for d, c in ran if d in SERVICE_DATABASES), key=lambda dc: -dc[1].exec_ms)[
        :TOP
    ]
    return {
        "databases": databases,
        "top": [
            {
                "database": database,
                "calls": c.calls,
                "mean_ms": round(c.exec_ms / c.calls, 3),
                "total_s": round(c.exec_ms / 1000, 2),
                "rows": c.rows,
                "query": one_line(c.query),
            }
            for database, c in top
        ],
    }


def one_line(query: str, limit: int = QUERY_CHARS) -> str:
    text = re.sub(r"\s+", " ", query).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(found: dict[str, Any] | None) -> list[str]:
    """The report's section (Markdown lines)."""
    if found is None:
        return [
            "PostgreSQL's statements: `pg_stat_statements` is not loaded on this server"
            " (deploy/local/infra.sh loads it at the server's next start).",
        ]
    lines = [
        "PostgreSQL's statements during the run (`pg_stat_statements`, server-wide):",
        "",
        "| database | statements | per command | execution s | execution ms per command |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, d in found["databases"].items():
        lines.append(
            f"| {name} | {d['statements']:,} | {d['statements_per_command']:,.1f}"
            f" | {d['exec_s']:,.1f} | {d['exec_ms_per_command']:,.2f} |"
        )
    lines += [
        "",
        "| database | calls | mean ms | total s | rows | statement |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for t in found["top"]:
        query = t["query"].replace("|", "\\|")
        lines.append(
            f"| {t['database']} | {t['calls']:,} | {t['mean_ms']:,.3f} | {t['total_s']:,.2f}"
            f" | {t['rows']:,} | `{query}` |"
        )
    return lines
