"""The set form's text (`shared.set_statements.rewrite`) and its array literals, without a
server; `tests/integration/test_set_statements.py` runs them on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from shared.set_statements import Unsupported, array_literal, rewrite


def test_upsert_takes_excluded_for_its_parameters_and_cuts_on_the_conflict_key() -> None:
    rewritten = rewrite(
        "INSERT INTO placements (meeting_id, event_id, placed, slot_start) VALUES"
        " ($1, $2, true, $3) ON CONFLICT (meeting_id) DO UPDATE SET slot_start = $3"
    )
    assert rewritten is not None
    assert rewritten.head.endswith("SELECT _batch._p1, _batch._p2, true, _batch._p3")
    assert (
        rewritten.tail
        == 'ON CONFLICT (meeting_id) DO UPDATE SET slot_start = EXCLUDED."slot_start"'
    )
    assert rewritten.key == (0,)
    assert rewritten.shape.inserts and rewritten.shape.assigned == {"slot_start"}


def test_update_joins_on_its_where_equalities() -> None:
    rewritten = rewrite(
        "UPDATE side_programme SET participants = array_append(participants, $2)"
        " WHERE item_id = $1 AND NOT $2 = ANY(participants)"
    )
    assert rewritten is not None
    assert rewritten.tail == "WHERE item_id = _batch._p1 AND NOT _batch._p2 = ANY(participants)"
    assert rewritten.key == (0,)
    assert rewritten.shape.given == {"item_id": 0}


@pytest.mark.parametrize(
    "query",
    [
        # A parameter in DO UPDATE that is no column's plain value.
        "INSERT INTO t (a, b) VALUES ($1, coalesce($2, 'x')) ON CONFLICT (a)"
        " DO UPDATE SET b = coalesce($2, t.b)",
        # An upsert whose conflict key is not a plain parameter cannot be cut on it.
        "INSERT INTO t (a, b) VALUES (lower($1), $2) ON CONFLICT (a) DO UPDATE SET b = $2",
        "INSERT INTO t (a) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM t)",
        "INSERT INTO t (a) VALUES ($1) RETURNING a",
        "WITH x AS (INSERT INTO u (a) VALUES ($1)) INSERT INTO t (a) VALUES ($1)",
        "UPDATE t SET a = $2 WHERE k = $1 OR j = $1",
        "UPDATE t SET a = $2 WHERE k > $1",  # no equality: rows of two events may overlap
        "UPDATE t SET a = (SELECT max(a) FROM t) WHERE k = $1",
        "DELETE FROM t WHERE k = $1",
    ],
)
def test_statements_without_a_set_form(query: str) -> None:
    assert rewrite(query) is None


def test_a_dollar_inside_a_literal_is_no_parameter() -> None:
    rewritten = rewrite("INSERT INTO t (a, b) VALUES ($1, 'costs $2')")
    assert rewritten is not None
    assert "'costs $2'" in rewritten.head


def test_array_literals_quote_what_the_array_syntax_would_read() -> None:
    assert array_literal(None) is None
    assert array_literal([]) == "{}"
    assert array_literal(["a", None, 'q"uo\\te', "x,y", "{}", "NULL"]) == (
        '{"a",NULL,"q\\"uo\\\\te","x,y","{}","NULL"}'
    )
    assert array_literal([True, 3]) == '{t,"3"}'
    # Strings only (the joined fast path) quote the same way.
    assert array_literal(['q"uo\\te', "x,y", "{}", "NULL", ""]) == (
        '{"q\\"uo\\\\te","x,y","{}","NULL",""}'
    )
    assert array_literal(("plain", "texts")) == '{"plain","texts"}'
    identifier = uuid.UUID(int=5)
    assert array_literal([identifier]) == f'{{"{identifier}"}}'


def test_numbers_are_quoted_as_str_gives_them() -> None:
    assert array_literal([0.5, 1e-05, -0.0, float("inf")]) == '{"0.5","1e-05","-0.0","inf"}'
    assert array_literal([3, -2]) == '{"3","-2"}'
    assert array_literal([1, 0.5]) == '{"1","0.5"}'  # mixed: item by item, the same
    assert array_literal([True, 2]) == '{t,"2"}'


def test_only_plain_strings_take_the_fast_path() -> None:
    """A str subclass is written as `str()` gives it, as before the fast path."""

    class Named(str):
        def __str__(self) -> str:
            return "shown"

    assert array_literal([Named("stored"), "x"]) == '{"shown","x"}'
    with pytest.raises(Unsupported):
        array_literal([["nested"]])
