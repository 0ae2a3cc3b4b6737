"""Several data-modifying statements sent as one: one round trip instead of one each.

    together = Together(conn)
    await projection.apply(together.connection(), event)   # handlers call execute()
    await together.flush()

`Together` stands in for a connection whose statements only write (`execute`,
`executemany`). It keeps them and, on `flush`, sends them as one statement, each a
data-modifying CTE of it:

    WITH _part1 AS (INSERT ...), _part2 AS (UPDATE ...) INSERT ...

Every part of one statement sees the same snapshot, none sees another's rows, and the
order in which they run is not defined. So a statement joins only if it names no table
an earlier part writes (a second write to a row, or a read of one, would not see the
first); otherwise it starts the next statement, sent after. Several statements run in
a transaction (the connection's, or one `flush` opens); a single one needs none, so a
command whose writes all join needs no BEGIN and COMMIT either. Unique and foreign-key
violations are raised as if the parts had run one by one (foreign keys are checked at
the end of the statement, when every part has run).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, cast

import asyncpg

_PARAMETER = re.compile(r"\$(\d+)")
_WRITTEN = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.IGNORECASE)
_CTE_NAME = re.compile(r"\s*(\w+)\s+AS\s*\(", re.IGNORECASE)


@lru_cache(maxsize=512)
def split_with(sql: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """A statement's top-level CTEs (name, body) and its main statement."""
    text = sql.strip()
    if not text[:5].upper() == "WITH ":
        return (), text
    ctes: list[tuple[str, str]] = []
    position = 5
    while True:
        found = _CTE_NAME.match(text, position)
        if found is None:
            raise ValueError(f"cannot split the CTEs of: {sql[:80]}")
        start = found.end()
        end = _closing(text, start)
        ctes.append((found.group(1), text[start:end]))
        position = end + 1
        rest = text[position:].lstrip()
        if not rest.startswith(","):
            return tuple(ctes), rest
        position = text.index(",", position) + 1


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis closing the one opened just before `start`."""
    depth, quoted = 1, False
    for index in range(start, len(text)):
        char = text[index]
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced parentheses in: {text[:80]}")


@lru_cache(maxsize=1024)
def _renumbered(sql: str, offset: int) -> str:
    if not offset:
        return sql
    return _PARAMETER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)


@lru_cache(maxsize=512)
def _facts(sql: str) -> tuple[int, frozenset[str], frozenset[str], frozenset[str]]:
    """A statement's parameter count, the tables it writes, the words it uses and the
    names of its CTEs (the same statements come again and again: computed once)."""
    arity = max((int(n) for n in _PARAMETER.findall(sql)), default=0)
    written = frozenset(t.lower() for t in _WRITTEN.findall(sql))
    words = frozenset(w.lower() for w in re.findall(r"\w+", sql))
    names = frozenset(name.lower() for name, _ in split_with(sql)[0])
    return arity, written, words, names


_WRITE = re.compile(r"\s*(?:INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


@lru_cache(maxsize=512)
def parts_of(sql: str) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """The writes of a statement `Together` could have made, one by one: each part's SQL
    (its parameters renumbered from $1) and which of the statement's arguments (0-based)
    it takes, in the order written. None when the statement is not such a merge: no CTE,
    a part that reads (SELECT, RETURNING, another part's name) or that names a table
    another part writes, where one after the other would differ from one snapshot."""
    ctes, main = split_with(sql)
    if not ctes:
        return None
    bodies = [body for _, body in ctes] + [main]
    names = {name.lower() for name, _ in ctes}
    facts = [_facts(body) for body in bodies]
    for index, body in enumerate(bodies):
        others = set().union(*(f[1] for i, f in enumerate(facts) if i != index))
        if not _WRITE.match(body) or facts[index][2] & ({"select", "returning"} | names | others):
            return None
    parts = []
    for body in bodies:
        used = sorted({int(n) for n in _PARAMETER.findall(body)})
        renumber = {str(n): f"${i + 1}" for i, n in enumerate(used)}
        text = _PARAMETER.sub(lambda m, to=renumber: to[m.group(1)], body)  # type: ignore[misc]
        parts.append((text.strip(), tuple(n - 1 for n in used)))
    return tuple(parts)


Part = tuple[tuple[tuple[str, str], ...], str, Sequence[Any]]  # CTEs, main, arguments


class _Group:
    """Parts that can be one statement: none names a table another writes."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.written: set[str] = set()
        self.names: set[str] = set()

    def admits(self, words: frozenset[str], names: frozenset[str]) -> bool:
        return not (self.names & names or self.written & words)

    def add(self, part: Part, written: frozenset[str], names: frozenset[str]) -> None:
        self.parts.append(part)
        self.written |= written
        self.names |= names

    def statement(self) -> tuple[str, list[Any]]:
        """The parts as one statement and its arguments."""
        clauses: list[str] = []
        arguments: list[Any] = []
        last = len(self.parts) - 1
        main_sql = ""
        for index, (ctes, main, args) in enumerate(self.parts):
            offset = len(arguments)
            clauses += [f"{name} AS ({_renumbered(body, offset)})" for name, body in ctes]
            if index == last:
                main_sql = _renumbered(main, offset)
            else:
                clauses.append(f"_part{index + 1} AS ({_renumbered(main, offset)})")
            arguments += args
        if not clauses:
            return main_sql, arguments
        return f"WITH {', '.join(clauses)} {main_sql}", arguments


class Together:
    """Data-modifying statements collected for as few round trips as they allow (see the
    module). Nothing written through it is visible before `flush`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._groups: list[_Group] = []

    def connection(self) -> asyncpg.Connection:
        """This collector where code expects a connection (it only writes through it)."""
        return cast(asyncpg.Connection, self)

    def is_in_transaction(self) -> bool:
        """True: what it collects commits together (one statement, or `flush` opens a
        transaction for several when the connection is in none)."""
        return True

    async def execute(self, sql: str, *args: Any) -> str:
        arity, written, words, names = _facts(sql)
        if len(args) != arity:
            raise ValueError(f"{len(args)} arguments for {arity} parameters: {sql[:80]}")
        if not self._groups or not self._groups[-1].admits(words, names):
            self._groups.append(_Group())
        self._groups[-1].add((*split_with(sql), args), written, names)
        return ""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            await self.execute(sql, *row)

    def statements(self) -> list[tuple[str, list[Any]]]:
        """What `flush` sends: one statement per group, in order."""
        return [group.statement() for group in self._groups]

    async def flush(self) -> None:
        """Send what was collected: one statement per group, in a transaction of their own
        when there are several and the connection is in none."""
        statements, self._groups = self.statements(), []
        if len(statements) > 1 and not self._conn.is_in_transaction():
            async with self._conn.transaction():
                for sql, arguments in statements:
                    await self._conn.execute(sql, *arguments)
            return
        for sql, arguments in statements:
            await self._conn.execute(sql, *arguments)
