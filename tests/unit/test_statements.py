"""`shared.statements.Together` builds one statement from several: CTEs flattened,
parameters renumbered (without a database; tests/integration/test_statements.py runs them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from shared.access import projection as access_projection
from shared.batching import _Recorder
from shared.statements import Together, parts_of, split_with


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[object, ...]]] = []
        self.in_transaction = False
        self.transactions = 0

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.transactions += 1
        self.in_transaction = True
        try:
            yield
        finally:
            self.in_transaction = False

    async def execute(self, sql: str, *args: object) -> str:
        self.sent.append((sql, args))
        return ""


def test_split_with_finds_top_level_ctes_and_the_main_statement() -> None:
    ctes, main = split_with(
        "WITH a AS (INSERT INTO t (x) SELECT f(y) FROM u WHERE z = ')'), b AS (DELETE FROM v)"
        " INSERT INTO w VALUES ($1)"
    )
    assert ctes == (
        ("a", "INSERT INTO t (x) SELECT f(y) FROM u WHERE z = ')'"),
        ("b", "DELETE FROM v"),
    )
    assert main == "INSERT INTO w VALUES ($1)"
    assert split_with(" INSERT INTO w VALUES ($1)") == ((), "INSERT INTO w VALUES ($1)")


async def test_independent_statements_become_one_with_renumbered_parameters() -> None:
    conn = Recorder()
    together = Together(conn)
    writer = together.connection()
    await writer.execute("INSERT INTO a (x, y) VALUES ($1, $2)", 1, 2)
    await writer.execute(
        "WITH s AS (INSERT INTO b (x) VALUES ($1)) INSERT INTO c VALUES ($2)", 3, 4
    )
    await writer.executemany("INSERT INTO d (x) VALUES ($1)", [(5,)])
    assert conn.sent == []
    await together.flush()
    assert conn.sent == [
        (
            "WITH _part1 AS (INSERT INTO a (x, y) VALUES ($1, $2)),"
            " s AS (INSERT INTO b (x) VALUES ($3)), _part2 AS (INSERT INTO c VALUES ($4))"
            " INSERT INTO d (x) VALUES ($5)",
            (1, 2, 3, 4, 5),
        )
    ]
    await together.flush()  # nothing left
    assert len(conn.sent) == 1


async def test_a_statement_naming_a_table_written_before_goes_in_a_statement_of_its_own() -> None:
    conn = Recorder()
    together = Together(conn)
    writer = together.connection()
    await writer.execute("INSERT INTO access_registrations (r) VALUES ($1)", "r1")
    await writer.execute("INSERT INTO registrations (r) VALUES ($1)", "r1")  # another table
    await writer.execute("UPDATE access_registrations SET o = $2 WHERE r = $1", "r1", "o")
    assert conn.sent == []  # nothing before the flush
    await together.flush()
    assert [args for _, args in conn.sent] == [("r1", "r1"), ("r1", "o")]
    assert conn.sent[1][0] == "UPDATE access_registrations SET o = $2 WHERE r = $1"
    assert conn.transactions == 1  # two statements: in a transaction of their own


async def test_one_statement_needs_no_transaction_and_one_in_a_transaction_opens_none() -> None:
    conn = Recorder()
    together = Together(conn)
    await together.execute("INSERT INTO a VALUES ($1)", 1)
    await together.flush()
    conn.in_transaction = True
    await together.execute("INSERT INTO a VALUES ($1)", 2)
    await together.execute("UPDATE a SET x = $1", 3)
    await together.flush()
    assert (len(conn.sent), conn.transactions) == (3, 0)


async def test_a_cte_name_used_twice_is_not_joined() -> None:
    conn = Recorder()
    together = Together(conn)
    statement = "WITH s AS (INSERT INTO a VALUES ($1)) INSERT INTO b VALUES ($1)"
    await together.execute(statement, 1)
    await together.execute(statement.replace(" a ", " c ").replace(" b ", " d "), 2)
    await together.flush()
    assert len(conn.sent) == 2


async def test_arguments_must_match_the_parameters() -> None:
    together = Together(Recorder())
    with pytest.raises(ValueError, match="1 arguments for 2 parameters"):
        await together.execute("INSERT INTO a VALUES ($1, $2)", 1)


async def test_parts_of_gives_back_the_writes_together_merged() -> None:
    conn = Recorder()
    together = Together(conn)
    writes: list[tuple[str, tuple[object, ...]]] = [
        ("INSERT INTO a (x, y) VALUES ($1, $2) ON CONFLICT (x) DO NOTHING", ("a1", 2)),
        ("UPDATE b SET y = $2 WHERE x = $1", ("b1", 3)),
        ("INSERT INTO c (x) VALUES ($1)", ("c1",)),
    ]
    for sql, args in writes:
        await together.execute(sql, *args)
    ((merged, arguments),) = together.statements()
    parts = parts_of(merged)
    assert parts is not None
    assert [(sql, tuple(arguments[i] for i in taken)) for sql, taken in parts] == writes


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO a (x) VALUES ($1)",  # no CTE: nothing to split
        "WITH s AS (INSERT INTO a (x) VALUES ($1) RETURNING x) INSERT INTO b SELECT x FROM s",
        "WITH s AS (INSERT INTO a (x) VALUES ($1)) INSERT INTO a (x) VALUES ($2)",  # same table
        "WITH s AS (UPDATE a SET x = 1 WHERE y = $1) INSERT INTO b (x) SELECT x FROM a",
        "WITH s AS (SELECT x FROM a WHERE y = $1) DELETE FROM b WHERE x = $2",
    ],
)
def test_parts_of_refuses_what_one_after_the_other_would_change(sql: str) -> None:
    assert parts_of(sql) is None


async def test_a_batched_run_records_the_access_projections_merged_write_as_its_parts() -> None:
    """The access projection writes a registration and its key in one statement (one round
    trip live); a batched run records the two writes, each of which has a set form."""
    recorder = _Recorder()
    registered = SimpleNamespace(
        api_key_digest="digest",
        registration_id="r1",
        event_id="e1",
        profile=SimpleNamespace(name="Org"),
    )
    await access_projection._registered(recorder, registered)  # type: ignore[arg-type]
    assert [sql.split(" (")[0] for sql, _ in recorder.calls] == [
        "INSERT INTO access_registrations",
        "INSERT INTO api_keys",
    ]
    assert [args for _, args in recorder.calls] == [
        ("r1", "e1", "Org"),
        ("digest", "organisation", "r1"),
    ]
