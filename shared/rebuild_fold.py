"""The rebuild's tables folded in memory, written once with COPY.

During a rebuild the fresh schema has one writer, the rebuild, and starts empty. So a
projection handler's statements need not go to the server one run at a time: where a
statement touches one row of one table, found by a unique key among its arguments, its
effect can be worked out here, on the table's rows kept in memory, and the final rows
written with one COPY (`asyncpg.Connection.copy_records_to_table`). The handlers are
the live ones, unchanged: what is folded is their SQL, so there is no second
implementation of any projection to keep in step.

What is folded (anything else is not, `Fold.take` answers False):
- `INSERT INTO t (columns) VALUES (values) [ON CONFLICT [(unique columns)] DO NOTHING |
  DO UPDATE SET column = value, ...]`, and `UPDATE t SET column = value, ... WHERE
  a = $i [AND b = $j ...]` where the equalities are exactly the columns of one of the
  table's unique indexes;
- values that are a parameter (`$n`, cast to the column's own type or not), a constant
  (`NULL`, `true`, `false`, an integer, a string literal into a text column), `now()`,
  `coalesce(...)` of those, a column of the row (an UPDATE's, DO UPDATE's old row) or
  `EXCLUDED.column`;
- on a table without foreign keys (in or out), whose column defaults are constants,
  `now()` or a sequence (a sequence-filled column, left to the server at the COPY, in
  the order the rows were first inserted, must not be given by a statement).

A table's checks the fold cannot work out (a partial or expression unique index, an
exclusion constraint, a deferrable unique constraint: matching's one open request per
pair, scheduling's one meeting per table and slot) are not made per statement but once,
on the final rows, when the COPY makes them again (`shared.rebuild_copy`): a rebuild
whose rows break one fails there. The events it replays broke none live (a statement
that did failed, and its event was never recorded or applied), so only an order the
live service never saw could, and a rebuild that sent the statements would have failed
on it too. What such a check decides rather than refuses is not folded: an INSERT's
`ON CONFLICT DO NOTHING` without a target, which any unique index or exclusion
constraint of the table arbitrates.

Same rows as the statements one after the other, because: every unique index (but
those over a sequence-filled column, which a statement cannot meet) is kept as a
dictionary, so an INSERT meets the row its conflict target (or, without one, any unique
index) names, as the server would; an UPDATE changes the one row its key names (none if
there is none); values are worked out from the old row, all before any is assigned, as
in SQL; a NULL in a key meets nothing. A statement that would fail on the server (a
key met on another index than the conflict target, an INSERT without ON CONFLICT
meeting a row) raises here. Constraints (NOT NULL, CHECK) are checked by the COPY.
`now()` is the fold's own time: the columns it fills are the clock's, left out of the
comparison (`shared.rebuild_schema.compare`) as they are in the live-vs-rebuilt check.

When a statement that is not folded names a folded table (reads it, or writes it in a
way not folded), or a handler cannot be recorded at all (it reads on the connection),
the table's rows are written first (`release`) and the table is no longer folded for
the rest of the rebuild: from then on its statements go to the server as before.
Triggers fire on COPY as on INSERT (the projections' tables have NOTIFY ones only).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any
from uuid import UUID

import asyncpg

from shared import set_statements as sets
from shared.rebuild_fold_catalog import (
    COLUMNS,
    CONSTRAINED,
    EXCLUDING,
    NOW_TEXT,
    SERIAL,
    UNIQUES,
    defaults_of,
)
from shared.rebuild_fold_rows import insert_row, update_row

# A value worked out from (arguments, old row, proposed row).
Value = Callable[[tuple[Any, ...], list[Any] | None, list[Any] | None], Any]


@dataclass(frozen=True)
class Copy:
    """The rows of `table` to write with COPY (a statement of `shared.batching`'s levels)."""

    table: str
    columns: tuple[str, ...]


# A type's other names, as a cast may spell it.
_ALIASES = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "bool": "boolean",
    "varchar": "character varying",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "float8": "double precision",
    "float4": "real",
    "decimal": "numeric",
}
_TEXT_TYPES = ("text", "character varying")
_INT_TYPES = ("integer", "bigint", "smallint")
_PARAM = re.compile(r"^\$(\d+)(?:\s*::\s*([\w ]+?(?:\[\])?))?$")
_STRING = re.compile(r"^'((?:[^']|'')*)'(?:\s*::\s*(\w[\w ]*))?$")
_INTEGER = re.compile(r"^-?\d+$")
_COALESCE = re.compile(r"^coalesce\s*\((.*)\)$", re.IGNORECASE | re.DOTALL)
_EXCLUDED = re.compile(r"^excluded\.\"?(\w+)\"?$", re.IGNORECASE)
_COLUMN = re.compile(r"^(?:\"?(\w+)\"?\.)?\"?(\w+)\"?$")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_IS_CANONICAL_UUID = _CANONICAL_UUID.fullmatch
_EQUAL = re.compile(r"^\s*(?:\"?\w+\"?\.)?\"?(\w+)\"?\s*=\s*\$(\d+)(?:\s*::\s*[\w ]+)?\s*$")


def _base_type(name: str) -> str:
    name = re.sub(r"\(.*?\)", "", name.strip().lower()).strip()
    return _ALIASES.get(name, name)


class Unfoldable(Exception):
    """This statement (or value) has no folded form."""


class _Table:
    """One table's rows in memory, in the order they were first inserted."""

    def __init__(
        self, name: str, columns: list[tuple[str, str]], defaults: list[Any], now: datetime
    ) -> None:
        self.name = name
        self.names = [c for c, _ in columns]
        self.types = {c: _base_type(t) for c, t in columns}
        self.position = {c: i for i, c in enumerate(self.names)}
        self.defaults = defaults
        self.now = now  # what now() is in the fold (a column it fills is the clock's)
        self.indexes: list[tuple[int, ...]] = []  # unique indexes' column positions
        # Per column, how its values are compared (None: as they are).
        self.normal: list[Callable[[Any], Any] | None] = [
            _uuid if self.types[c] == "uuid" else tuple if self.types[c].endswith("[]") else None
            for c in self.names
        ]
        self.rows: list[list[Any]] = []
        self.found: list[dict[Any, list[Any]]] = []  # per index: key (`key`) -> row
        # Per index, its columns' positions and how each is compared.
        self.parts: list[tuple[tuple[int, Callable[[Any], Any] | None], ...]] = []
        # The column and comparison of the table's only unique key, if it has one key of
        # one column (the quick path of `shared.rebuild_fold_rows.insert_row`).
        self.one_key: tuple[int, Callable[[Any], Any] | None] | None = None
        # The defaults after a statement's arguments (`_Operation.row_of`).
        self.fallbacks = tuple(defaults)
        self.released = False
        self.modified = False  # a folded statement may change its rows (UPDATE, DO UPDATE)
        self.streamed = False  # some of its rows may be on the server (`Fold.stream`)
        # It has checks made on the final rows only (the module's docstring).
        self.checked_at_copy = False

    def add_index(self, positions: tuple[int, ...]) -> None:
        self.indexes.append(positions)
        self.found.append({})
        self.parts.append(tuple((i, self.normal[i]) for i in positions))
        one = len(self.parts) == 1 and len(positions) == 1
        self.one_key = self.parts[0][0] if one else None

    def key(self, index: int, row: Sequence[Any]) -> Any:
        """The row's values of a unique index, as compared (None: a NULL, meets nothing):
        the value itself for an index of one column (no tuple to make and hash for every
        lookup: a table of hundreds of thousands of rows is looked up at every insert)."""
        parts = self.parts[index]
        if len(parts) == 1:  # the usual case, quickly
            ((i, normal),) = parts
            value = row[i]
            if value is None:
                return None
            return value if normal is None else normal(value)
        values = []
        for i, normal in parts:
            value = row[i]
            if value is None:
                return None
            values.append(value if normal is None else normal(value))
        return tuple(values)

    def copy(self) -> tuple[Copy, list[tuple[Any, ...]]]:
        kept = [i for i, d in enumerate(self.defaults) if d is not SERIAL]
        if len(kept) == 1:
            rows = [(row[kept[0]],) for row in self.rows]
        else:
            take = itemgetter(*kept)
            rows = [take(row) for row in self.rows]
        return Copy(self.name, tuple(self.names[i] for i in kept)), rows


def _uuid(value: Any) -> str:
    """A uuid as the server compares it (its spellings are one value)."""
    if type(value) is str and _IS_CANONICAL_UUID(value):
        return value  # already as `str(UUID(value))` spells it
    return str(value if isinstance(value, UUID) else UUID(str(value)))


@dataclass(frozen=True)
class _Operation:
    """A statement's folded form (per SQL text)."""

    table: _Table
    inserts: bool
    values: tuple[tuple[int, Value], ...]  # column position, value
    target: int | None = None  # an INSERT's conflict index (None: any)
    on_conflict: str = ""  # "", "nothing" or "update"
    updates: tuple[tuple[int, Value], ...] = ()  # DO UPDATE's or UPDATE's assignments
    where: tuple[tuple[int, int], ...] = ()  # an UPDATE's key: index position, parameter
    # `values` and `updates` split: (column position, parameter) where the value is a
    # plain parameter, the rest as they are (what `shared.rebuild_fold_rows` goes through).
    value_params: tuple[tuple[int, int], ...] = field(init=False)
    value_others: tuple[tuple[int, Value], ...] = field(init=False)
    update_params: tuple[tuple[int, int], ...] = field(init=False)
    update_others: tuple[tuple[int, Value], ...] = field(init=False)
    # The new row from (arguments + the table's defaults) at once, when every value is a
    # parameter: each column's parameter, or its default (counted from the end).
    row_of: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = field(init=False)

    @property
    def modifies(self) -> bool:
        """May change a row already there (an UPDATE, an INSERT ... DO UPDATE)."""
        return not self.inserts or self.on_conflict == "update"

    def __post_init__(self) -> None:
        for name, pairs in (("value", self.values), ("update", self.updates)):
            params = tuple((p, v.n) for p, v in pairs if isinstance(v, _Parameter))
            others = tuple((p, v) for p, v in pairs if not isinstance(v, _Parameter))
            object.__setattr__(self, f"{name}_params", params)
            object.__setattr__(self, f"{name}_others", others)
        row_of: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None
        width = len(self.table.names)
        if self.inserts and not self.value_others and width > 1:
            given = dict(self.value_params)
            row_of = itemgetter(*(given.get(p, p - width) for p in range(width)))
        object.__setattr__(self, "row_of", row_of)


class _Parameter:
    """The value of a statement's parameter `n` (0-based), as it is."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, args: tuple[Any, ...], old: list[Any] | None, new: list[Any] | None) -> Any:
        return args[self.n]


class Fold:
    """The folded tables of one rebuild (`read` on its fresh schema's connection)."""

    def __init__(self, tables: dict[str, _Table]) -> None:
        self._tables = tables
        self._operations: dict[str, _Operation | None] = {}
        # Where a streamed table's last rows go when it is released (`stream`).
        self._streamed: dict[str, Callable[[Copy, list[tuple[Any, ...]]], None]] = {}
        # The event types whose handler read on its connection while tables were still
        # folded (`release_for_read`): from then on, every statement went to the server.
        self.released_by_reads: list[str] = []

    @classmethod
    async def read(cls, conn: asyncpg.Connection) -> Fold:
        columns: dict[str, list[asyncpg.Record]] = {}
        for row in await conn.fetch(COLUMNS):
            columns.setdefault(row["table_name"], []).append(row)
        excluded = {row["table_name"] for row in await conn.fetch(CONSTRAINED)}
        excluding = {row["table_name"] for row in await conn.fetch(EXCLUDING)}
        uniques: dict[str, list[asyncpg.Record]] = {}
        for row in await conn.fetch(UNIQUES):
            uniques.setdefault(row["table_name"], []).append(row)
        tables: dict[str, _Table] = {}
        now = datetime.now(UTC)
        for name, cols in columns.items():
            if name in excluded:
                continue
            defaults = await defaults_of(conn, cols, now)
            if defaults is None:
                continue
            table = _Table(name, [(c["column_name"], c["type"]) for c in cols], defaults, now)
            found = []
            for unique in uniques.get(name, []):
                if unique["partial"] or not unique["immediate"]:
                    table.checked_at_copy = True  # (not a key of the fold's)
                else:
                    found.append(unique)
            table.checked_at_copy |= name in excluding
            for unique in found:
                positions = tuple(table.position[c] for c in unique["columns"])
                if any(defaults[i] is SERIAL for i in positions):
                    continue  # a sequence's values never meet (no statement gives them)
                table.add_index(positions)
            tables[name.lower()] = table
        return cls(tables)

    def take(self, query: str, args: tuple[Any, ...]) -> bool:
        """Apply `query` to the rows in memory if it has a folded form on a folded table."""
        operation = self._operations.get(query, _UNKNOWN)  # (inline: once per statement)
        if operation is _UNKNOWN:
            operation = self._operation(query)
        if operation is None or operation.table.released:
            return False
        if operation.table.streamed and operation.modifies:
            return False  # its rows are (partly) on the server: released by the caller
        if operation.inserts:
            insert_row(operation, args)
        else:
            update_row(operation, args)
        return True

    def appends(self, query: str) -> bool:
        """Whether `query` folds as an insert that changes no row already there, into a
        table that is neither released nor changed so far (one `stream` may take)."""
        operation = self._operation(query)
        if operation is None or operation.modifies:
            return False
        table = operation.table
        return not (table.released or table.modified or table.streamed)

    def release(self, tables: Iterable[str]) -> list[tuple[Copy, list[tuple[Any, ...]]]]:
        """The rows of those of `tables` still folded, to write now; they are folded no
        more (their next statements go to the server, after these rows)."""
        out = []
        for name in tables:
            table = self._tables.get(name.lower())
            if table is None or table.released:
                continue
            table.released = True
            copy, rows = table.copy()
            table.rows, table.found = [], []
            last = self._streamed.pop(table.name.lower(), None)
            if last is not None:
                last(copy, rows)  # goes after the rows streamed before it
            elif rows:
                out.append((copy, rows))
        return out

    def release_all(self) -> list[tuple[Copy, list[tuple[Any, ...]]]]:
        return self.release(list(self._tables))

    def release_for_read(self, ce_type: str) -> list[tuple[Copy, list[tuple[Any, ...]]]]:
        """`release_all` before a handler of `ce_type` reads on its connection (it may read
        any table), noted in `released_by_reads` if some table was still folded."""
        if any(not table.released for table in self._tables.values()):
            self.released_by_reads.append(ce_type)
        return self.release_all()

    def release_filled(self, keep: Iterable[str] = ()) -> list[tuple[Copy, list[tuple[Any, ...]]]]:
        """`release` of the tables that hold rows but those of `keep` (which stay folded)."""
        kept = {name.lower() for name in keep}
        return self.release(
            [n for n, t in self._tables.items() if t.rows and not t.released and n not in kept]
        )

    def appended_only(self) -> list[tuple[str, int]]:
        """The folded tables no statement so far changed a row of (inserts only, met rows
        left as they are), with their rows held: what `stream` may take."""
        return [
            (name, len(t.rows))
            for name, t in self._tables.items()
            if not (t.released or t.modified or t.streamed) and t.rows
        ]

    def stream(
        self, name: str, last: Callable[[Copy, list[tuple[Any, ...]]], None]
    ) -> Callable[[], tuple[Copy, list[tuple[Any, ...]]]]:
        """`name` (one of `appended_only`) streamed: the rows folded so far can be taken
        (the function returned) and written while the fold goes on; its unique keys stay
        here, so later inserts meet them as before. When the table is released, its
        remaining rows go to `last` instead of the caller; a statement that would change
        one of its rows is not folded (the caller releases the table first)."""
        table = self._tables[name]
        table.streamed = True
        self._streamed[name] = last

        def take() -> tuple[Copy, list[tuple[Any, ...]]]:
            copy, rows = table.copy()
            table.rows = []
            return copy, rows

        return take

    def _operation(self, query: str) -> _Operation | None:
        """`query`'s folded form (None: it has none), compiled once per SQL text."""
        if query not in self._operations:
            self._operations[query] = self._compile(query)
        return self._operations[query]

    def _compile(self, query: str) -> _Operation | None:
        try:
            operation = _compile(self._tables, query)
        except Unfoldable:
            return None
        if operation.modifies:
            operation.table.modified = True
        return operation


_UNKNOWN: Any = object()


def _compile(tables: dict[str, _Table], query: str) -> _Operation:
    if sets.FORBIDDEN.search(sets.TOKENS.sub("''", query)):
        raise Unfoldable("subquery, CTE, RETURNING, OR")
    if (insert := sets.INSERT.match(query)) is not None:
        return _compile_insert(tables, query, insert)
    if (update := sets.UPDATE.match(query)) is not None:
        return _compile_update(tables, update)
    raise Unfoldable("neither INSERT nor UPDATE")


def _table(tables: dict[str, _Table], name: str) -> _Table:
    table = tables.get(name.strip('"').lower())
    if table is None:
        raise Unfoldable("not a folded table")
    return table


def _assignments(table: _Table, text: str, excluded: bool) -> tuple[tuple[int, Value], ...]:
    out = []
    for part in sets.split_top(text):
        column, _, value = part.partition("=")
        name = column.strip().strip('"').lower()
        position = table.position.get(name)
        if position is None or table.defaults[position] is SERIAL:
            raise Unfoldable(f"assigns {name}")
        if any(position in index for index in table.indexes):
            raise Unfoldable("changes a unique key")
        out.append((position, _value(table, value, table.types[name], excluded)))
    return tuple(out)


def _compile_insert(tables: dict[str, _Table], query: str, match: re.Match[str]) -> _Operation:
    table = _table(tables, match.group(1))
    end = sets.closing(query, match.end())
    if end < 0:
        raise Unfoldable("unbalanced")
    columns = [c.strip().strip('"').lower() for c in match.group(2).split(",")]
    values = sets.split_top(query[match.end() : end])
    if len(columns) != len(values) or len(set(columns)) != len(columns):
        raise Unfoldable("columns and values")
    given = []
    for column, value in zip(columns, values, strict=True):
        position = table.position.get(column)
        if position is None or table.defaults[position] is SERIAL:
            raise Unfoldable(f"gives {column}")
        given.append((position, _value(table, value, table.types[column], False, row=False)))
    rest = query[end + 1 :].strip()
    if not rest:
        return _Operation(table, True, tuple(given))
    conflict = sets.CONFLICT.match(rest)
    if conflict is None:
        raise Unfoldable("after VALUES")
    target = None
    if conflict.group(1):
        names = {c.strip().strip('"').lower() for c in conflict.group(1).split(",")}
        positions = {table.position.get(c) for c in names}
        matching = [n for n, index in enumerate(table.indexes) if set(index) == positions]
        if not matching:
            raise Unfoldable("conflict target")
        target = matching[0]
    action = conflict.group(2)
    if not action.upper().startswith("UPDATE"):
        if target is None and table.checked_at_copy:
            raise Unfoldable("DO NOTHING that a check the fold does not make arbitrates")
        return _Operation(table, True, tuple(given), target, "nothing")
    if target is None:
        raise Unfoldable("DO UPDATE without a target")
    assignments = re.sub(r"^UPDATE\s+SET\s+", "", action, flags=re.IGNORECASE)
    if re.search(r"\bWHERE\b", sets.TOKENS.sub("''", assignments), re.IGNORECASE):
        raise Unfoldable("DO UPDATE ... WHERE")
    updates = _assignments(table, assignments, excluded=True)
    return _Operation(table, True, tuple(given), target, "update", updates)


def _compile_update(tables: dict[str, _Table], match: re.Match[str]) -> _Operation:
    name, assignments, where = match.groups()
    table = _table(tables, name)
    if sets.FROM.search(assignments) or sets.FROM.search(where):
        raise Unfoldable("UPDATE ... FROM")
    key: dict[int, int] = {}
    for conjunct in sets.AND.split(where):
        equal = _EQUAL.match(conjunct)
        if equal is None:
            raise Unfoldable("WHERE other than a key's equalities")
        position = table.position.get(equal.group(1).lower())
        if position is None or position in key:
            raise Unfoldable("WHERE column")
        key[position] = int(equal.group(2)) - 1
    matching = [n for n, index in enumerate(table.indexes) if set(index) == set(key)]
    if not matching:
        raise Unfoldable("WHERE is not a unique key")
    index = matching[0]
    where_params = tuple((n, key[p]) for n, p in enumerate(table.indexes[index]))
    updates = _assignments(table, assignments, excluded=False)
    return _Operation(table, False, (), index, "", updates, where_params)


def _value(table: _Table, text: str, column_type: str, excluded: bool, row: bool = True) -> Value:
    """`text` (a value in a statement) as a function of the arguments and rows."""
    text = text.strip()
    if (param := _PARAM.match(text)) is not None:
        n = int(param.group(1)) - 1
        if param.group(2) and _base_type(param.group(2)) != column_type:
            raise Unfoldable("a parameter cast to another type")
        return _Parameter(n)
    if NOW_TEXT.match(text):
        moment = table.now
        return lambda args, old, new: moment
    upper = text.upper()
    if upper == "NULL":
        return lambda args, old, new: None
    if upper in ("TRUE", "FALSE") and column_type == "boolean":
        flag = upper == "TRUE"
        return lambda args, old, new: flag
    if _INTEGER.match(text) and column_type in _INT_TYPES:
        number = int(text)
        return lambda args, old, new: number
    if (string := _STRING.match(text)) is not None and column_type in _TEXT_TYPES:
        if string.group(2) and _base_type(string.group(2)) not in _TEXT_TYPES:
            raise Unfoldable("a string cast")
        literal = string.group(1).replace("''", "'")
        return lambda args, old, new: literal
    if (coalesce := _COALESCE.match(text)) is not None:
        options = [
            _value(table, part, column_type, excluded, row)
            for part in sets.split_top(coalesce.group(1))
        ]

        def first(args: tuple[Any, ...], old: list[Any] | None, new: list[Any] | None) -> Any:
            for option in options:
                if (value := option(args, old, new)) is not None:
                    return value
            return None

        return first
    if excluded and (other := _EXCLUDED.match(text)) is not None:
        position = _column(table, other.group(1), column_type)
        return lambda args, old, new: new[position] if new is not None else None
    if row and (other := _COLUMN.match(text)) is not None:
        if other.group(1) and other.group(1).lower() != table.name.lower():
            raise Unfoldable("another table's column")
        position = _column(table, other.group(2), column_type)
        return lambda args, old, new: old[position] if old is not None else None
    raise Unfoldable(f"value {text!r}")


def _column(table: _Table, name: str, column_type: str) -> int:
    position = table.position.get(name.lower())
    if position is None or table.types[table.names[position]] != column_type:
        raise Unfoldable(f"column {name}")
    if table.defaults[position] is SERIAL:
        raise Unfoldable("a sequence-filled column's value is the server's")
    return position
