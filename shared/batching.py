"""Batch handlers made from per-event projection handlers: a run of events applied with
one statement per statement of the handler, instead of one round trip per event.

A projection handler writes with `conn.execute(sql, *args)`. `batched(handler)` runs it,
for each event of a run, against a *recorder* that keeps the statements instead of
sending them. Consecutive events whose handlers wrote the same statements (the same SQL
texts, in the same order) form a group, and each of the group's statements goes to the
server once, as `executemany` over the group's events: one prepared statement, its rows
pipelined in one round trip, each row executed exactly as `execute` would have.

Same effect as one by one: within a statement, the rows run in the events' order. A
handler with several statements has them run statement by statement over the group
(every event's first statement, then every event's second...), which is the same as
event by event when no statement touches a table another of the handler's statements
writes; when one does (`_reorderable`), the group runs event by event. A handler that
does anything but `execute` (a read, a transaction, `executemany` itself) cannot be
recorded: that event runs on the real connection, after the statements recorded before
it. Recording sends nothing, so the fallback never applies anything twice.

Used by the services' inbox subscriptions (`Subscription.batch_handlers`) and by the
rebuild (`shared.rebuild`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, cast

import asyncpg

from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import BatchHandler, Handler

Shape = tuple[str, ...]  # the SQL texts one event's handler executed, in order


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
        self.calls.append((query, args))
        return ""

    def __getattr__(self, name: str) -> Any:
        raise NotRecordable(name)


_WRITES = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)


@lru_cache(maxsize=1024)
def _reorderable(shape: Shape) -> bool:
    """Whether running `shape`'s statements statement by statement over many events is the
    same as event by event: no statement mentions a table another statement writes."""
    if len(shape) < 2:
        return True
    written = []
    for query in shape:
        match = _WRITES.match(query)
        written.append(match.group(1).lower() if match else None)
    for i, query in enumerate(shape):
        for j, table in enumerate(written):
            if i != j and table and re.search(rf"\b{table}\b", query, re.IGNORECASE):
                return False
    return True


class _Group:
    __slots__ = ("rows", "shape")

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.rows: list[list[tuple[Any, ...]]] = []  # per event, each statement's arguments


async def _flush(conn: asyncpg.Connection, groups: list[_Group]) -> None:
    for group in groups:
        if len(group.rows) == 1 or not _reorderable(group.shape):
            for event_args in group.rows:
                for query, args in zip(group.shape, event_args, strict=True):
                    await conn.execute(query, *args)
            continue
        for position, query in enumerate(group.shape):
            await conn.executemany(query, [event_args[position] for event_args in group.rows])
    groups.clear()


async def apply_run(
    conn: asyncpg.Connection,
    handler: Handler,
    run: Sequence[tuple[Envelope, EventPayload]],
) -> None:
    """Apply `run` through `handler`, with the same effect as one event after the other."""
    groups: list[_Group] = []
    for envelope, payload in run:
        recorder = _Recorder()
        try:
            await handler(cast(asyncpg.Connection, recorder), envelope, payload)
        except NotRecordable:
            await _flush(conn, groups)
            await handler(conn, envelope, payload)
            continue
        if not recorder.calls:
            continue  # nothing to write for this event
        shape = tuple(query for query, _ in recorder.calls)
        if not groups or groups[-1].shape != shape:
            groups.append(_Group(shape))
        groups[-1].rows.append([args for _, args in recorder.calls])
    await _flush(conn, groups)


def batched(handler: Handler) -> BatchHandler:
    """`handler` as a batch handler (see the module's docstring)."""

    async def apply(conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]) -> None:
        await apply_run(conn, handler, run)

    return apply


def batch_handlers(
    handlers: Mapping[str, Handler], types: Iterable[str] | None = None
) -> dict[str, BatchHandler]:
    """Batch handlers for `types` (default: all) of `handlers`: for a subscription whose
    handlers of those types only project (a reaction that reads falls back to one by
    one, but need not be recorded first)."""
    chosen = handlers.keys() if types is None else types
    return {ce_type: batched(handlers[ce_type]) for ce_type in chosen if ce_type in handlers}


def in_turn(*steps: BatchHandler) -> BatchHandler:
    """One batch handler that runs `steps` over the whole run, one after the other: the
    same as running them event by event when they write different tables (e.g. the
    access projection's, then a service's own)."""

    async def apply(conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]) -> None:
        for step in steps:
            await step(conn, run)

    return apply
