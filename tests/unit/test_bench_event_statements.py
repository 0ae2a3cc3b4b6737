"""bench-event's PostgreSQL statement counts (`bench.event.statements`): the difference
of two snapshots of `pg_stat_statements`, per service database and per command."""

from __future__ import annotations

from bench.event.statements import Counted, difference, one_line, render


def test_the_difference_counts_only_what_ran_between_the_snapshots() -> None:
    before = {
        ("matching", 1): Counted(10, 5.0, 10, "SELECT 1"),
        ("matching", 2): Counted(4, 8.0, 4, "SELECT idle"),
    }
    after = {
        ("matching", 1): Counted(30, 25.0, 30, "SELECT 1"),
        ("matching", 2): Counted(4, 8.0, 4, "SELECT idle"),  # did not run: left out
        ("reporting", 7): Counted(5, 100.0, 50, "INSERT INTO history\n  VALUES ($1)"),
        ("postgres", 9): Counted(99, 999.0, 0, "SELECT admin"),  # not a service's
    }
    found = difference(before, after, commands=10)
    assert found["databases"]["matching"] == {
        "statements": 20,
        "statements_per_command": 2.0,
        "exec_s": 0.0,
        "exec_ms_per_command": 2.0,
    }
    assert found["databases"]["reporting"]["statements"] == 5
    assert found["databases"]["registration"]["statements"] == 0
    assert [(t["database"], t["calls"], t["mean_ms"]) for t in found["top"]] == [
        ("reporting", 5, 20.0),
        ("matching", 20, 1.0),
    ]
    assert found["top"][0]["query"] == "INSERT INTO history VALUES ($1)"


def test_long_statements_are_cut_and_the_section_says_when_the_view_is_missing() -> None:
    assert one_line("SELECT " + "x, " * 100, limit=20).endswith("…")
    assert len(one_line("SELECT " + "x, " * 100, limit=20)) == 20
    assert "not loaded" in render(None)[0]
    found = difference({}, {("notification", 3): Counted(2, 4.0, 2, "SELECT a | b")}, 1)
    table = "\n".join(render(found))
    assert "| notification | 2 | 2.0 |" in table
    assert "a \\| b" in table  # a pipe in the text does not break the table
