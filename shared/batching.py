"""Batch handlers made from per-event projection handlers: a run of events applied with
one statement per statement shape of the handlers, instead of one round trip per event.

A projection handler writes with `conn.execute(sql, *args)`. `apply_run` runs it, for
each event of a run, against a *recorder* that keeps the statements instead of sending
them, and queues each statement in a *lane*: the statements that touch a set of tables
(the tables its text names, grown by the foreign keys between them). A run of one SQL
text in a lane goes to the server as one statement over arrays
(`shared.set_statements`), or as `executemany` when it has no such form.

Same effect as one event after the other, because the order that matters is kept:
- two statements that touch no common table commute: neither reads nor writes what the
  other does (the projections' tables have no triggers but NOTIFY ones, `now()` is the
  transaction's time, and tables joined by a foreign key count as one, since a child
  row needs its parent first);
- statements that touch a common table stay in their recorded order: they are in the
  same lane, in order, or the earlier one's lane was sent before the later one was
  queued (a statement whose tables span several lanes sends those lanes first);
- within a run of one SQL text, `shared.set_statements` keeps the rows' order where it
  matters (module docstring there);
- a handler that does anything but `execute` (a read, a transaction, `executemany`
  itself) cannot be recorded: everything queued is sent, then that event runs on the
  real connection. Recording sends nothing, so the fallback never applies twice.
Sequence-filled columns may be numbered in another order; the rebuild's comparison
leaves them out, as it leaves out clock-filled ones.

Used by the services' inbox subscriptions (`Subscription.batch_handlers`) and by the
rebuild (`shared.rebuild`).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import asyncpg

from shared import rebuild_copy, set_statements, statements
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import BatchHandler, Handler
from shared.rebuild_fold import Copy, Fold
from shared.set_statements import SetForm


class NotRecordable(BaseException):
    """The handler did something a recorder cannot defer (read, nest a transaction...).

    A BaseException, so that a handler's own `except Exception` does not swallow it."""


class _Recorder:
    """Stands in for the connection while a handler runs: keeps its `execute` calls."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, query: str, *args: Any, **options: Any) -> str:
        if options:
            raise NotRecordable("execute with options")  # e.g. a timeout of its own
        if not args:
            # Without arguments `execute` may carry several statements, which
            # `executemany` refuses: send it as it is.
            raise NotRecordable("execute without arguments")
        parts = statements.parts_of(query)
        if parts is None:
            self.calls.append((query, args))
            return ""
        # A handler's writes merged for one round trip (`statements.Together`'s shape):
        # recorded as the statements they are, so that each joins its table's set form.
        for sql, positions in parts:
            self.calls.append((sql, tuple(args[i] for i in positions)))
        return ""

    def __getattr__(self, name: str) -> Any:
        raise NotRecordable(name)


# Words after which a table is named (an over-approximation is only slower, never wrong);
# `DO UPDATE SET`, `FROM unnest(` name none.
_NAMES = re.compile(
    r"\b(?:INTO|UPDATE|FROM|JOIN|USING|TABLE)\s+(?:ONLY\s+)?\"?(\w+)", re.IGNORECASE
)
_NOT_TABLES = frozenset({"set", "unnest", "select", "lateral", "only"})


@lru_cache(maxsize=4096)
def _named_tables(query: str) -> frozenset[str]:
    names = (m.group(1).lower() for m in _NAMES.finditer(query))
    return frozenset(name for name in names if name not in _NOT_TABLES)


_FOREIGN_KEYS = (
    "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent"
    " FROM pg_constraint c WHERE c.contype = 'f'"
    " AND pg_table_is_visible(c.conrelid) AND pg_table_is_visible(c.confrelid)"
)
# Unique indexes checked row by row (a deferred one is checked at commit: order inside
# the transaction does not matter to it); `whole`: an expression or partial index, whose
# columns are not all listed.
_UNIQUE = (
    "SELECT c.relname AS table_name, i.indisprimary AS is_primary,"
    " array(SELECT a.attname::text FROM unnest(i.indkey) k"
    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k) AS columns,"
    " (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL) AS whole"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
    " WHERE i.indisunique AND i.indimmediate AND pg_table_is_visible(c.oid)"
    " UNION ALL SELECT c.relname, false, array[]::text[], true FROM pg_constraint x"
    " JOIN pg_class c ON c.oid = x.conrelid WHERE x.contype = 'x' AND pg_table_is_visible(c.oid)"
)
ALL = frozenset({"*"})  # every column
# `SELECT pg_notify(...)` touches no table: PostgreSQL delivers notifications when the
# transaction commits, in the order they were sent, so they commute with every table's
# statements and keep their order among themselves in a lane of their own (not a name a
# table can have). Without this, reporting's dashboard notice after each event sent
# every lane before it: no run was longer than one event.
NOTIFICATIONS = frozenset({"(notifications)"})
_NOTIFY = re.compile(r"\s*SELECT\s+pg_notify\s*\(\s*\$1\s*,\s*\$2\s*\)\s*;?\s*$", re.IGNORECASE)


class Catalog:
    """What `_Lanes` needs to know of the tables (read once per connection)."""

    def __init__(self) -> None:
        self.related: dict[str, frozenset[str]] = {}  # a table's foreign-key group
        self.primary: dict[str, tuple[str, ...]] = {}
        # Columns of the other unique indexes (`ALL`: some index's columns are not known).
        self.secondary: dict[str, frozenset[str]] = {}
        self._statements: dict[str, _Statement] = {}

    @classmethod
    async def read(cls, conn: asyncpg.Connection) -> Catalog:
        catalog = cls()
        groups: dict[str, set[str]] = {}
        for row in await conn.fetch(_FOREIGN_KEYS):
            a, b = row["child"].strip('"').lower(), row["parent"].strip('"').lower()
            merged = groups.get(a, {a}) | groups.get(b, {b})
            for table in merged:
                groups[table] = merged
        catalog.related = {table: frozenset(group) for table, group in groups.items()}
        for row in await conn.fetch(_UNIQUE):
            table = row["table_name"].lower()
            if row["is_primary"]:
                catalog.primary[table] = tuple(c.lower() for c in row["columns"])
                continue
            columns = ALL if row["whole"] else frozenset(c.lower() for c in row["columns"])
            found = catalog.secondary.get(table, frozenset())
            catalog.secondary[table] = ALL if ALL <= found else found | columns
        return catalog

    def statement(self, query: str) -> _Statement:
        """What `_Lanes` needs to know of `query` (worked out once per SQL text)."""
        found = self._statements.get(query)
        if found is None:
            found = self._statements[query] = self._statement(query)
        return found

    def _statement(self, query: str) -> _Statement:
        """The tables `query` touches, and how to key its rows (`_Statement`)."""
        if _NOTIFY.match(query):
            return _Statement(NOTIFICATIONS)
        named = _named_tables(query)
        grown = [self.related[t] for t in named if t in self.related]
        tables = named.union(*grown) if grown else named
        shape = _shape(query)
        if len(tables) != 1 or shape is None or shape.table in self.related:
            return _Statement(tables)  # foreign keys order it with other tables
        primary = self.primary.get(shape.table)
        if not primary or not all(c in shape.given for c in primary):
            return _Statement(tables)  # may touch rows other than one of its own
        if shape.assigned & set(primary):
            return _Statement(tables)  # moves the row to another key
        secondary = self.secondary.get(shape.table, frozenset())
        meets = bool(secondary) and bool(
            shape.inserts or ALL <= secondary or shape.assigned & secondary
        )
        return _Statement(tables, shape.table, tuple(shape.given[c] for c in primary), meets)


@dataclass(frozen=True)
class _Statement:
    """The tables a SQL text touches; for one that touches one row of one table, named by
    its primary key, where that key's values are among its arguments (`positions`):

    two statements of one table whose keys differ commute. An INSERT may meet another
    row on another unique index, whose outcome depends on which came first: so every
    statement that inserts, or changes such a column (`meets`), also has the key
    `(table, None)`, shared by all those. Without `positions`, it keeps its place."""

    tables: frozenset[str]
    table: str = ""
    positions: tuple[int, ...] | None = None
    meets: bool = False

    def keys(self, args: tuple[Any, ...]) -> list[Hashable] | None:
        if self.positions is None:
            return None
        row = tuple(_hashable(args[i]) for i in self.positions)
        if self.meets:
            return [(self.table, row), (self.table, None)]
        return [(self.table, row)]


@lru_cache(maxsize=4096)
def _shape(query: str) -> set_statements.Shape | None:
    rewritten = set_statements.rewrite(query)
    return rewritten.shape if rewritten is not None else None


def _hashable(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


# Per connection: its catalog, and the set form of each SQL text (None: it has none).
_catalogs: weakref.WeakKeyDictionary[Any, Catalog] = weakref.WeakKeyDictionary()
_forms: weakref.WeakKeyDictionary[Any, dict[str, SetForm | None]] = weakref.WeakKeyDictionary()


def _raw(conn: asyncpg.Connection) -> Any:
    """The connection itself (a pool hands out a proxy)."""
    return getattr(conn, "_con", None) or conn


async def _catalog(conn: asyncpg.Connection) -> Catalog:
    raw = _raw(conn)
    found = _catalogs.get(raw)
    if found is None:
        found = _catalogs[raw] = await Catalog.read(conn)
    return found


# A lane's statements as sent: levels in order, each a run of rows per SQL text (or the
# rows a `Fold` released, to COPY).
Levels = list[dict[str | Copy, list[tuple[Any, ...]]]]
Flush = Callable[[Levels], Awaitable[None]]


async def send_levels(conn: asyncpg.Connection, levels: Levels) -> None:
    for level in levels:
        for query, rows in level.items():
            if isinstance(query, Copy):
                await rebuild_copy.write(conn, query, rows)
            else:
                await send_many(conn, query, rows)


async def send_many(conn: asyncpg.Connection, query: str, rows: list[tuple[Any, ...]]) -> None:
    """`query` over `rows`, in order: as one statement over arrays where it has that form."""
    if len(rows) > 1 and _NOTIFY.match(query):
        # PostgreSQL folds identical notifications of one transaction into one, so the
        # repeats change nothing; reporting sends one per event, a batch's all alike.
        rows = list(dict.fromkeys(rows))
    if len(rows) == 1:
        await conn.execute(query, *rows[0])
        return
    cache = _forms.setdefault(_raw(conn), {})
    if query not in cache:
        cache[query] = await set_statements.form(conn, query)
    set_form = cache[query]
    if set_form is None:
        await conn.executemany(query, rows)
        return
    for chunk in set_form.chunks(rows):
        try:
            columns = set_form.columns(chunk)
        except set_statements.Unsupported:
            await conn.executemany(query, chunk)
            continue
        await conn.execute(set_form.sql, *columns)


class _Lane:
    """Statements that touch `tables`, as *levels*: a level's statements commute with
    each other but for those of one SQL text, which keep their order in their run (a
    level is a run per SQL text); levels run in order. A statement goes to the first
    level after every earlier statement it does not commute with (`Catalog.keys`):
    after the level of the last one with a common key (to the same level when that one
    has the same SQL text: their run keeps them in order), and after the last statement
    without keys, which has a level of its own."""

    __slots__ = ("floor", "last", "levels", "tables")

    def __init__(self, tables: frozenset[str]) -> None:
        self.tables = tables
        self.levels: Levels = []
        self.floor = 0  # no statement goes below this level
        self.last: dict[Hashable, tuple[int, str]] = {}  # key -> (level, SQL) of its last

    def add(self, query: str, args: tuple[Any, ...], keys: list[Hashable] | None) -> None:
        if keys is None:
            level = max(len(self.levels), self.floor)
            if self.levels and level > 0 and list(self.levels[level - 1]) == [query]:
                level -= 1  # a run of one statement without keys continues
            self.floor = level + 1
            self.last = {}
        else:
            level = self.floor
            for key in keys:
                if (previous := self.last.get(key)) is not None:
                    level = max(level, previous[0] + (previous[1] != query))
            for key in keys:
                self.last[key] = (level, query)
        while len(self.levels) <= level:
            self.levels.append({})
        self.levels[level].setdefault(query, []).append(args)

    def take(self) -> Levels:
        """The levels to send, the lane emptied."""
        levels = self.levels
        self.levels = []
        self.floor = 0
        self.last = {}
        return levels


class _Lanes:
    """`flush` sends a lane's levels (or keeps them, to send later in the same order).

    With a `fold` (the rebuild's), a statement it folds goes no further; one it does not
    fold first has the folded rows of the tables it names released (COPY), which touch
    no other table and so go before the lanes still queued."""

    def __init__(self, catalog: Catalog, flush: Flush, fold: Fold | None = None) -> None:
        self._catalog = catalog
        self._flush = flush
        self._fold = fold
        self._by_table: dict[str, _Lane] = {}
        self._order: list[_Lane] = []  # creation order, for `send_all`

    async def add(self, query: str, args: tuple[Any, ...]) -> None:
        if self._fold is not None and self._fold.take(query, args):
            return
        statement = self._catalog.statement(query)
        tables = statement.tables
        if self._fold is not None:
            released = self._fold.release(tables) if tables else self._fold.release_all()
            for copy, rows in released:
                await self._flush([{copy: rows}])
        if not tables:  # touches who knows what: after everything, before anything else
            await self.send_all()
            await self._flush([{query: [args]}])
            return
        keys = statement.keys(args)
        if len(tables) == 1:  # the usual case, quickly
            (table,) = tables
            lane = self._by_table.get(table)
            if lane is not None and lane.tables == tables:
                lane.add(query, args, keys)
                return
        lanes = {id(lane): lane for t in tables if (lane := self._by_table.get(t)) is not None}
        if len(lanes) == 1:
            (lane,) = lanes.values()
            if tables <= lane.tables:
                lane.add(query, args, keys)
                return
        # Spans several lanes, or more than one: those go first, then a lane of its own.
        for lane in self._order:
            if id(lane) in lanes:
                await self._flush(lane.take())
                for t in lane.tables:
                    del self._by_table[t]
        self._order = [lane for lane in self._order if id(lane) not in lanes]
        lane = _Lane(tables)
        lane.add(query, args, keys)
        self._order.append(lane)
        for t in tables:
            self._by_table[t] = lane

    async def send_all(self) -> None:
        for lane in self._order:
            await self._flush(lane.take())
        self._order = []
        self._by_table = {}


async def apply_run(
    conn: asyncpg.Connection,
    handler: Handler,
    run: Sequence[tuple[Envelope, EventPayload]],
) -> None:
    """Apply `run` through `handler`, with the same effect as one event after the other."""

    async def send(levels: Levels) -> None:
        await send_levels(conn, levels)

    lanes = _Lanes(await _catalog(conn), send)
    for envelope, payload in run:
        recorder = _Recorder()
        try:
            await handler(cast(asyncpg.Connection, recorder), envelope, payload)
        except NotRecordable:
            await lanes.send_all()
            await handler(conn, envelope, payload)
            continue
        for query, args in recorder.calls:
            await lanes.add(query, args)
    await lanes.send_all()


@dataclass
class Recorded:
    """A run recorded without a connection (`record_run`), to send later (`send_recorded`):
    the lanes' levels in the order `apply_run` would have sent them, up to the first event
    that could not be recorded; `rest`, from that event on, is applied by `apply_run`."""

    levels: list[Levels]
    rest: Sequence[tuple[Envelope, EventPayload]]
    events: int  # in the run


async def catalog_of(conn: asyncpg.Connection) -> Catalog:
    """What `record_run` needs to know of the tables on `conn` (read once per connection)."""
    return await _catalog(conn)


async def record_run(
    catalog: Catalog,
    handler: Handler,
    run: Sequence[tuple[Envelope, EventPayload]],
    pause_every: int = 0,
    fold: Fold | None = None,
) -> Recorded:
    """`run`'s statements, recorded while the connection does other work (the rebuild
    records window N+1 while the server executes window N). Every `pause_every` events
    it yields to the event loop, so that whoever waits on the server goes on promptly.

    A handler that keeps memory between events sees them in order as long as the caller
    sends a run with a `rest` before recording the next (`shared.rebuild.apply_windows`
    does); an event whose handler could not be recorded is handled twice (recorded, then
    on the connection), as in `apply_run`. With a `fold`, its tables' statements are
    folded in memory (`shared.rebuild_fold`) and all its rows released before such an
    event, which may read them."""
    kept: list[Levels] = []

    async def keep(levels: Levels) -> None:
        if levels:
            kept.append(levels)

    lanes = _Lanes(catalog, keep, fold)
    take = fold.take if fold is not None else None
    for i, (envelope, payload) in enumerate(run):
        if pause_every and i % pause_every == pause_every - 1:
            await asyncio.sleep(0)
        recorder = _Recorder()
        try:
            await handler(cast(asyncpg.Connection, recorder), envelope, payload)
        except NotRecordable:
            await lanes.send_all()
            released = fold.release_for_read(envelope.type) if fold is not None else []
            for copy, rows in released:
                await keep([{copy: rows}])
            return Recorded(kept, run[i:], len(run))
        for query, args in recorder.calls:
            if take is None or not take(query, args):  # (folded: nothing to queue)
                await lanes.add(query, args)
    await lanes.send_all()
    return Recorded(kept, (), len(run))


async def send_recorded(conn: asyncpg.Connection, handler: Handler, recorded: Recorded) -> None:
    """What `record_run` recorded, then the rest of the run: the same as `apply_run`."""
    for levels in recorded.levels:
        await send_levels(conn, levels)
    if recorded.rest:
        await apply_run(conn, handler, recorded.rest)


def batched(handler: Handler) -> BatchHandler:
    """`handler` as a batch handler (see the module's docstring). It carries `handler` as
    its `projection`: the inbox applies consecutive runs of several such types as one
    run (`shared.inbox`), since the lanes keep what order matters across types too."""

    async def apply(conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]) -> None:
        await apply_run(conn, handler, run)

    apply.projection = handler  # type: ignore[attr-defined]
    return apply


def projection_of(batch_handler: BatchHandler) -> Handler | None:
    """The per-event handler a `batched` handler applies (None for any other)."""
    return cast(Handler | None, getattr(batch_handler, "projection", None))


def batch_handlers(
    handlers: Mapping[str, Handler], types: Iterable[str] | None = None
) -> dict[str, BatchHandler]:
    """Batch handlers for `types` (default: all) of `handlers`: for a subscription whose
    handlers of those types only project (a reaction that reads falls back to one by
    one, but need not be recorded first)."""
    chosen = handlers.keys() if types is None else types
    return {ce_type: batched(handlers[ce_type]) for ce_type in chosen if ce_type in handlers}


def projected_first(
    projections: Mapping[str, Handler], runs: Mapping[str, BatchHandler]
) -> dict[str, BatchHandler]:
    """`runs`, each after its type's handler in `projections` (`in_turn(batched(...), run)`;
    a type `projections` lacks keeps its run as it is). Types with the same projection
    handler and run get the same object, so that the inbox applies a stretch of them as
    one run (a burst of registrations of several kinds, approvals and rejections) rather
    than one run per change of type."""
    made: dict[tuple[int, int], BatchHandler] = {}
    wrapped: dict[str, BatchHandler] = {}
    for ce_type, run in runs.items():
        project = projections.get(ce_type)
        if project is None:
            wrapped[ce_type] = run
            continue
        key = (id(project), id(run))
        if key not in made:
            made[key] = in_turn(batched(project), run)
        wrapped[ce_type] = made[key]
    return wrapped


def in_turn(*steps: BatchHandler) -> BatchHandler:
    """One batch handler that runs `steps` over the whole run, one after the other: the
    same as running them event by event when they write different tables (e.g. the
    access projection's, then a service's own). Steps that are all `batched` become one
    `batched` handler of their per-event handlers in turn (the lanes then order their
    statements as event by event would)."""
    projections = [projection_of(step) for step in steps]
    if all(p is not None for p in projections):
        chain = [p for p in projections if p is not None]

        async def each(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
            for projection in chain:
                await projection(conn, envelope, event)

        return batched(each)

    async def apply(conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]) -> None:
        for step in steps:
            await step(conn, run)

    return apply
