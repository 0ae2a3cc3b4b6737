"""A run of one recorded statement sent as *one* statement over arrays.

`executemany` saves round trips but the server still executes the statement once per
row (parse-free, but a full executor start, index lookups and WAL record each). A run
of N rows of

    INSERT INTO t (a, b) VALUES ($1, $2::jsonb) ON CONFLICT (a) DO UPDATE SET b = $2

becomes one statement whose rows come from arrays, one array per parameter:

    INSERT INTO t (a, b) SELECT _batch._p1, _batch._p2::jsonb
    FROM unnest($1::text[], $2::jsonb[]) AS _batch(_p1, _p2)
    ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b

and `UPDATE t SET s = $2 WHERE k = $1` becomes `UPDATE t SET s = _batch._p2 FROM
unnest(...) AS _batch(_p1, _p2) WHERE k = _batch._p1`. The array types are the
parameters' own, as PostgreSQL inferred them when it prepared the original statement.

Same effect as the rows one after the other, because:
- every row of one statement sees the table as it was before the statement, so no two
  rows of one statement may touch the same table row. The rows are cut into
  consecutive chunks in which the *key* never repeats: the conflict target's values
  for an upsert (an `ON CONFLICT ... DO UPDATE` that met the same key twice would fail:
  "command cannot affect row a second time"), the values compared by equality in an
  UPDATE's WHERE (a conjunction: distinct keys match disjoint rows; a repeated key
  would leave only one of its updates). Chunks run in order, so a repeated key sees
  its earlier row applied, as one by one;
- `ON CONFLICT DO NOTHING` without a key the rows can be cut on keeps the first of
  duplicate rows, as one by one does: the rows are inserted in array order;
- a statement with a subquery, RETURNING, a CTE, OR / BETWEEN in its WHERE, a parameter
  in `DO UPDATE` that is not a column's plain value, or a composite/range parameter is
  not rewritten (`form` answers None): it goes as `executemany`.

Array-typed parameters (e.g. `participants text[]`) cannot be one element of an array
of arrays (PostgreSQL arrays are rectangular): they travel as their text literal in a
`text[]` and are cast back in the statement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg


class Unsupported(Exception):
    """A value the set form cannot carry (send the run as `executemany`)."""


@dataclass(frozen=True)
class SetForm:
    sql: str
    literal: tuple[bool, ...]  # per parameter: sent as an array literal in a text[]
    key: tuple[int, ...] | None  # parameter indexes (0-based) that must not repeat per chunk
    shape: Shape

    def chunks(self, rows: Sequence[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
        """Consecutive chunks of `rows` in which the key never repeats."""
        if not self.key:
            return [list(rows)]
        out: list[list[tuple[Any, ...]]] = [[]]
        seen: set[Any] = set()
        for row in rows:
            key = tuple(_hashable(row[i]) for i in self.key)
            if key in seen:
                out.append([])
                seen = set()
            seen.add(key)
            out[-1].append(row)
        return out

    def columns(self, rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
        """The statement's arguments: one list per parameter."""
        columns = [list(values) for values in zip(*rows, strict=True)]
        for i, literal in enumerate(self.literal):
            if literal:
                columns[i] = [array_literal(v) for v in columns[i]]
        return columns


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


_TEXTS = {str}
_NUMBERS_FLOAT = {float}
_NUMBERS_INT = {int}


def array_literal(value: Any) -> str | None:
    """`value` (a list of scalars) as PostgreSQL's text form of an array."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise Unsupported(f"array parameter given {type(value).__name__}")
    kinds = set(map(type, value))
    if kinds == _NUMBERS_FLOAT or kinds == _NUMBERS_INT:
        # Scores, counts: `str` of each, quoted as below (a recommendation list's 700
        # scores went item by item, on the event loop, in every list written).
        return '{"' + '","'.join(map(str, value)) + '"}'
    if value and kinds == _TEXTS:
        # The common case (a profile's sectors, markets...), in C-speed passes: most
        # texts have nothing to escape.
        if '"' not in (joined := "".join(value)) and "\\" not in joined:
            return '{"' + '","'.join(value) + '"}'
        quoted = [item.replace("\\", "\\\\").replace('"', '\\"') for item in value]
        return '{"' + '","'.join(quoted) + '"}'
    items = []
    for item in value:
        if item is None:
            items.append("NULL")
        elif isinstance(item, bool):
            items.append("t" if item else "f")
        elif isinstance(item, str | int | float | UUID):
            text = str(item).replace("\\", "\\\\").replace('"', '\\"')
            items.append(f'"{text}"')
        else:
            raise Unsupported(f"array element {type(item).__name__}")
    return "{" + ",".join(items) + "}"


# Quoted literals and identifiers are skipped; `$n` outside them are parameters.
_TOKENS = re.compile(r"('(?:[^']|'')*')|(\"(?:[^\"]|\"\")*\")|\$(\d+)")
_FORBIDDEN = re.compile(r"\b(?:SELECT|RETURNING|WITH|OR|BETWEEN)\b", re.IGNORECASE)
_INSERT = re.compile(
    r"\s*INSERT\s+INTO\s+(\"?\w+\"?)\s*\(([^()]*)\)\s*VALUES\s*\(", re.IGNORECASE | re.DOTALL
)
_CONFLICT = re.compile(
    r"ON\s+CONFLICT\s*(?:\(([^()]*)\))?\s*DO\s+(NOTHING|UPDATE\s+SET\s+.*)$",
    re.IGNORECASE | re.DOTALL,
)
_UPDATE = re.compile(
    r"\s*UPDATE\s+(\"?\w+\"?)\s+SET\s+(.*?)\s+WHERE\s+(.*)$", re.IGNORECASE | re.DOTALL
)
_FROM = re.compile(r"\bFROM\b", re.IGNORECASE)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
# `$n` alone, perhaps cast: the parameter's value as it is.
_PLAIN = re.compile(r"^\s*\$(\d+)(?:\s*::\s*\w+)?\s*$")
_EQUALS = re.compile(r"^\s*(?:\"?\w+\"?\.)?\"?(\w+)\"?\s*=\s*\$(\d+)(?:\s*::\s*\w+)?\s*$")


def _substitute(text: str, replace: Any) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(3) is None:
            return match.group(0)
        return str(replace(int(match.group(3))))

    return _TOKENS.sub(one, text)


def _parameters(text: str) -> set[int]:
    return {int(m.group(3)) for m in _TOKENS.finditer(text) if m.group(3)}


def _closing(text: str, start: int) -> int:
    """Index of the `)` closing the `(` before `start` (quotes respected)."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c in "'\"":
            end = text.find(c, i + 1)
            if end < 0:
                return -1
            i = end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_top(text: str) -> list[str]:
    """`text` cut at its top-level commas."""
    parts, depth, current, i = [], 0, [], 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            end = text.find(c, i + 1)
            current.append(text[i : end + 1])
            i = end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts]


@dataclass(frozen=True)
class Shape:
    """What one row of the statement touches, for `shared.batching` to reorder by row."""

    table: str
    inserts: bool
    # The columns whose value the row gives as a parameter: an INSERT's plain values, an
    # UPDATE's WHERE equalities (0-based parameter indexes).
    given: dict[str, int]
    assigned: frozenset[str]  # the columns an UPDATE (or a DO UPDATE) sets


@dataclass(frozen=True)
class _Rewrite:
    """The statement over `_batch`, before the parameter types are known."""

    head: str  # up to where `FROM unnest(...) AS _batch(...)` goes
    tail: str  # after it
    key: tuple[int, ...] | None
    shape: Shape


def _assigned(assignments: str) -> frozenset[str]:
    return frozenset(
        part.split("=", 1)[0].strip().strip('"').lower() for part in _split_top(assignments)
    )


def _param(n: int) -> str:
    return f"_batch._p{n}"


def rewrite(query: str) -> _Rewrite | None:
    """The set form's text of `query`, or None when it has none (module docstring)."""
    if _FORBIDDEN.search(_TOKENS.sub("''", query)):
        return None
    if (insert := _INSERT.match(query)) is not None:
        return _rewrite_insert(query, insert)
    if (update := _UPDATE.match(query)) is not None:
        return _rewrite_update(update)
    return None


def _rewrite_insert(query: str, match: re.Match[str]) -> _Rewrite | None:
    end = _closing(query, match.end())
    if end < 0:
        return None
    columns = [c.strip().strip('"') for c in match.group(2).split(",")]
    values = _split_top(query[match.end() : end])
    if len(columns) != len(values):
        return None
    plain = {
        c: int(m.group(1)) for c, v in zip(columns, values, strict=True) if (m := _PLAIN.match(v))
    }
    rest = query[end + 1 :].strip()
    key: tuple[int, ...] | None = None
    assigned: frozenset[str] = frozenset()
    if rest:
        conflict = _CONFLICT.match(rest)
        if conflict is None:
            return None
        target = [c.strip().strip('"') for c in (conflict.group(1) or "").split(",") if c.strip()]
        updating = conflict.group(2).upper().startswith("UPDATE")
        if target and all(c in plain for c in target):
            key = tuple(plain[c] - 1 for c in target)
        elif updating:
            return None  # a conflict key the rows cannot be cut on
        # In DO UPDATE only EXCLUDED and the table are in scope: a parameter there must be
        # some column's plain value.
        by_param = {n: c for c, n in plain.items()}
        if any(n not in by_param for n in _parameters(rest)):
            return None
        rest = _substitute(rest, lambda n: f'EXCLUDED."{by_param[n]}"')
        if updating:
            assigned = _assigned(re.sub(r"^UPDATE\s+SET\s+", "", conflict.group(2), flags=re.I))
    selected = ", ".join(_substitute(v, _param) for v in values)
    head = f"INSERT INTO {match.group(1)} ({match.group(2)}) SELECT {selected}"
    given = {c.lower(): n - 1 for c, n in plain.items()}
    shape = Shape(match.group(1).strip('"').lower(), True, given, assigned)
    return _Rewrite(head, rest, key, shape)


def _rewrite_update(match: re.Match[str]) -> _Rewrite | None:
    table, assignments, where = match.groups()
    if _FROM.search(assignments) or _FROM.search(where):
        return None
    given = {}
    for conjunct in _AND.split(where):
        if (equal := _EQUALS.match(conjunct)) is not None:
            given[equal.group(1).lower()] = int(equal.group(2)) - 1
    if not given:
        return None  # no equality on a parameter: rows might overlap
    head = f"UPDATE {table} SET {_substitute(assignments, _param)}"
    tail = f"WHERE {_substitute(where, _param)}"
    shape = Shape(table.strip('"').lower(), False, given, _assigned(assignments))
    return _Rewrite(head, tail, tuple(given.values()), shape)


_TYPES = (
    "SELECT t.oid, format_type(t.oid, NULL) AS name, t.typcategory = 'A' AS is_array,"
    " t.typtype::text AS typtype FROM pg_type t WHERE t.oid = any($1::oid[])"
)


async def form(conn: asyncpg.Connection, query: str) -> SetForm | None:
    """`query`'s set form on `conn` (its parameter types as the server infers them)."""
    text = rewrite(query)
    if text is None:
        return None
    parameters = (await conn.prepare(query)).get_parameters()
    if not parameters:
        return None
    found = {r["oid"]: r for r in await conn.fetch(_TYPES, [p.oid for p in parameters])}
    arrays, casts, literal = [], [], []
    for n, parameter in enumerate(parameters, start=1):
        info = found.get(parameter.oid)
        if info is None or info["typtype"] not in ("b", "e", "d"):
            return None  # composite, range, pseudo: not carried in an array
        if info["is_array"]:
            arrays.append(f"${n}::text[]")
            casts.append(f"_batch._p{n}::{info['name']}")
            literal.append(True)
        else:
            arrays.append(f"${n}::{info['name']}[]")
            casts.append(f"_batch._p{n}")
            literal.append(False)
    names = ", ".join(f"_p{n}" for n in range(1, len(parameters) + 1))
    head, tail = text.head, text.tail
    for n in range(len(parameters), 0, -1):  # $12 before $1
        head = head.replace(f"_batch._p{n}", f"\x00{n}\x00")
        tail = tail.replace(f"_batch._p{n}", f"\x00{n}\x00")
    for n, cast in enumerate(casts, start=1):
        head = head.replace(f"\x00{n}\x00", f"({cast})" if literal[n - 1] else cast)
        tail = tail.replace(f"\x00{n}\x00", f"({cast})" if literal[n - 1] else cast)
    sql = f"{head} FROM unnest({', '.join(arrays)}) AS _batch({names}) {tail}".rstrip()
    return SetForm(sql, tuple(literal), text.key, text.shape)


# The statement grammar `shared.rebuild_fold` reads the same statements with.
TOKENS, FORBIDDEN, INSERT, CONFLICT, UPDATE = _TOKENS, _FORBIDDEN, _INSERT, _CONFLICT, _UPDATE
FROM, AND, closing, split_top = _FROM, _AND, _closing, _split_top
