"""Rebuild a service's projections from its events, beside the live ones (blue/green).

1. A fresh schema (`rebuild`) gets the service's migrations.
2. The service's own events are replayed from its event store through its projection,
   in the order they were recorded.
3. The topics it consumes are read from the start and every record the live service
   applied (its inbox says which: dead-lettered ones and ones from before the service
   existed are left out, as they were live) goes through its projection handlers,
   in the order of the records' times.
4. Under locks that hold commands and the consumer back for the moment it takes, what
   the live service recorded or applied meanwhile is replayed too, so both sides stand
   at the same point; tables derived from the others rather than folded from events
   (`Plan.finish`: matching's recommendation lists) are computed then, once; each
   projection table is compared with the live one, row by row
   (columns the clock fills, such as `created_at`, are left out), and every difference
   is reported.
5. With `switch`, before the comparison, the live tables move to a `retired_<time>`
   schema and the rebuilt ones take their place. The service keeps running: its
   statements are re-planned on the new tables.

The schema side (the fresh schema, the row-by-row comparison, the switched tables'
triggers) is `shared.rebuild_schema`.

Events are applied in windows of `BATCH` (`shared.batching`): each handler's statements
are recorded, queued per table and reordered by row where that changes nothing, and each
run of one SQL text goes to the server as one statement over arrays
(`shared.set_statements`), not one round trip (nor one executor run) per event. Most
never go as such: the fresh schema has one writer, so a statement that touches one row by
a unique key is folded into that table's rows in memory (`shared.rebuild_fold`), and the
rows are written once at the end with COPY, the plain indexes built after the load.

Reactions (handlers that decide and record new events) are not replayed: their
decisions are in the event store already. Plans per service: `services/<name>/rebuild.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import ConsumerRecord

from shared import batching
from shared.batching import apply_run
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.envelope import Envelope
from shared.inbox import Handler
from shared.inserts import Insert
from shared.kafka import client_options
from shared.rebuild_fold import Fold
from shared.rebuild_own import Reading, decoder, own_windows, reads_envelope
from shared.rebuild_report import Report
from shared.rebuild_schema import Difference, compare, fresh_schema, rehome_triggers
from shared.rebuild_topics import (
    EveryRecordAsRead,
    Placed,
    apply_insert,
    consumed_events,
    read_topics,
)
from shared.rebuild_write import PendingWrite, Stream, write
from shared.topics import prefixed_all

# Events per transaction (and per window of `shared.batching.apply_run`): large, so that
# a table's statements batch across the types that interleave with them.
BATCH = 20000
Applier = Callable[
    [asyncpg.Connection, Handler, Sequence[tuple[Envelope, EventPayload]]], Awaitable[None]
]


async def one_by_one(
    conn: asyncpg.Connection, handler: Handler, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    """A statement per event, as before runs (the figure `apply_run` is compared with)."""
    for envelope, event in run:
        await handler(conn, envelope, event)


# Derives tables from the others once every event is replayed (on the rebuilt schema).
Finisher = Callable[[asyncpg.Connection], Awaitable[None]]


# The access projection every service keeps (shared/access/projection.py).
ACCESS_TABLES = ("api_keys", "access_events", "access_co_organisers", "access_registrations")


@dataclass(frozen=True)
class Plan:
    """What a service's rebuild replays and compares."""

    service: str
    migrations: Path
    tables: tuple[str, ...]  # the projection tables, rebuilt and compared
    own: Handler | None  # one of the service's own events into its tables
    topics: tuple[str, ...] = ()  # consumed topics (canonical names)
    consumer: str = ""  # the live consumer's name (its inbox rows say what it applied)
    consumed: Mapping[str, Handler] = field(default_factory=dict)  # projection handlers only
    # Columns filled by the clock without a default (set by `now()` in an UPDATE).
    volatile: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Tables that are a function of the replayed ones rather than a fold of events
    # (matching's recommendation lists), computed once at the end, under the locks.
    finish: Finisher | None = None
    # Called as each rebuild starts (a handler's per-run memory: registration's keys).
    start: Callable[[], None] | None = None
    # Then awaited with a connection to the live database, before the replay: what the
    # handlers would otherwise read on theirs (registration's keys), which a recorded
    # run cannot do (`shared.batching.NotRecordable`: every folded table is released).
    preload: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
    # Tables the consumed events write as well as the own ones (scheduling's meetings:
    # accepted, then placed): kept folded after the own events instead of written while
    # the consumed ones are applied, whose statements would then go to the server.
    shared_tables: tuple[str, ...] = ()
    # A statement every consumed event gets (reporting's history), not in `consumed`.
    every_record: Insert | None = None
    # Consumed types (their current versions) whose one handler here is an `Insert`'s
    # (reporting's notification outcomes): their envelopes kept as the topics are read
    # (`shared.rebuild_topics.consumed_events`) and folded after the read, not validated
    # nor run through the handlers' time-ordered runs.
    inserts: Mapping[str, Insert] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for ce_type, insert in self.inserts.items():
            if self.consumed.get(ce_type) is not insert.handler:
                raise ValueError(f"{self.service}: {ce_type} has handlers beside its insert")


@dataclass
class _Own:
    """The own events replayed so far (their ids), to replay only the rest later."""

    done: set[str] = field(default_factory=set)


async def replay_own(
    source: asyncpg.Connection,
    target: asyncpg.Pool,
    plan: Plan,
    registry: PayloadRegistry,
    seen: _Own,
    apply: Applier = apply_run,
    fold: Fold | None = None,
    reading: Reading | None = None,
) -> int:
    """The service's events not replayed yet, in recorded order, through its projection
    (read and decoded as `shared.rebuild_own` says; from `reading`, if started before)."""
    if plan.own is None:
        return 0
    envelope = reads_envelope(plan.own)
    windows = own_windows(source, envelope, seen.done, BATCH, reading)
    count = 0

    def done(window: Sequence[asyncpg.Record]) -> None:
        nonlocal count
        count += len(window)
        seen.done.update([r["id"] for r in window])

    await apply_windows(target, plan.own, windows, decoder(registry, envelope), apply, done, fold)
    return count


# Records decoded (or events recorded) between two yields to the event loop.
PAUSE_EVERY = 200
T = TypeVar("T")


async def apply_windows(
    target: asyncpg.Pool,
    handler: Handler,
    windows: Iterable[Sequence[T]] | AsyncIterable[Sequence[T]],
    decode: Callable[[T], tuple[Envelope, EventPayload] | None],
    apply: Applier = apply_run,
    done: Callable[[Sequence[T]], None] | None = None,
    fold: Fold | None = None,
    after: list[PendingWrite] | None = None,
    recorded: Callable[[], None] | None = None,
) -> int:
    """Each window's items decoded (None: left out) and applied through `handler`, one
    transaction per window; `done(window)` after its commit. Returns the events applied.
    `after` (writes under way on other connections; it may grow meanwhile) is awaited
    before a statement that names one of their tables is sent to the server;
    `recorded()` is called as each window is recorded.

    With `apply_run`, pipelined: window N+1 is decoded and its statements recorded
    (`shared.batching.record_run`) while the server executes window N, so the Python
    side and PostgreSQL work at the same time; same statements, same order. A window
    with events that could not be recorded (its `rest`, applied on the connection) is
    applied in full before the next is recorded: handlers see the events in order.
    With a `fold` (`shared.rebuild_fold`), the statements it folds stay in memory.
    `windows` may come as they are read (an async iterator: closed when this returns)."""
    async with contextlib.aclosing(_windows_of(windows)) as each:
        return await _apply_windows(
            target, handler, each, decode, apply, done, fold, after or [], recorded
        )


async def _windows_of(
    windows: Iterable[Sequence[T]] | AsyncIterable[Sequence[T]],
) -> AsyncGenerator[Sequence[T], None]:
    if isinstance(windows, AsyncIterable):
        async for window in windows:
            yield window
    else:
        for window in windows:
            yield window


async def _apply_windows(
    target: asyncpg.Pool,
    handler: Handler,
    windows: AsyncIterator[Sequence[T]],
    decode: Callable[[T], tuple[Envelope, EventPayload] | None],
    apply: Applier,
    done: Callable[[Sequence[T]], None] | None,
    fold: Fold | None,
    after: list[PendingWrite],
    recorded_hook: Callable[[], None] | None,
) -> int:
    if apply is not apply_run:
        for pending in after:
            await pending.write
        count = 0
        async for window in windows:
            run = [d for item in window if (d := decode(item)) is not None]
            async with target.acquire() as conn, conn.transaction():
                await apply(conn, handler, run)
            count += len(run)
            if done is not None:
                done(window)
        return count
    async with target.acquire() as conn:
        catalog = await batching.catalog_of(conn)
        ready: asyncio.Queue[
            tuple[Sequence[T], batching.Recorded, asyncio.Event] | BaseException | None
        ] = asyncio.Queue(maxsize=1)

        async def record() -> None:
            try:
                async for window in windows:
                    run = []
                    for i, item in enumerate(window):
                        if i % PAUSE_EVERY == PAUSE_EVERY - 1:
                            await asyncio.sleep(0)
                        if (decoded := decode(item)) is not None:
                            run.append(decoded)
                    recorded = await batching.record_run(catalog, handler, run, PAUSE_EVERY, fold)
                    if recorded_hook is not None:
                        recorded_hook()
                    sent = asyncio.Event()
                    await ready.put((window, recorded, sent))
                    if recorded.rest:
                        await sent.wait()
            except Exception as exc:  # handed to the sender, which raises it
                await ready.put(exc)
                return
            await ready.put(None)

        recorder = asyncio.create_task(record())
        count = 0
        try:
            while (item := await ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                window, recorded, sent = item
                for pending in [p for p in after if p.needed_by(catalog, recorded)]:
                    await pending.write
                    after.remove(pending)
                async with conn.transaction():
                    # Each table's statements, as runs of one SQL text over arrays.
                    await batching.send_recorded(conn, handler, recorded)
                sent.set()
                count += recorded.events
                if done is not None:
                    done(window)
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
        return count


async def _applied(source: asyncpg.Connection, consumer: str) -> set[str]:
    rows = await source.fetch(
        "SELECT message_id FROM public.inbox WHERE consumer = $1 AND outcome = 'processed'",
        consumer,
    )
    return {r["message_id"] for r in rows}


async def apply_consumed(
    target: asyncpg.Pool,
    plan: Plan,
    registry: PayloadRegistry,
    events: list[Placed],
    apply: Applier = apply_run,
    fold: Fold | None = None,
    after: list[PendingWrite] | None = None,
    recorded: Callable[[], None] | None = None,
) -> int:
    """The consumed events, in the order of their records' times (not partition by
    partition as a live fetch may). Notification's meetings, which once counted on a
    placement coming before a later cancellation from another topic, no longer do
    (`services.notification.domain.Meeting`). `after`, `recorded`: `apply_windows`."""
    events.sort(key=itemgetter(0))
    handlers, current_type = plan.consumed, registry.current_type

    async def consumed(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
        await handlers[current_type(envelope.type)](conn, envelope, event)

    windows = [events[start : start + BATCH] for start in range(0, len(events), BATCH)]
    return await apply_windows(
        target, consumed, windows, itemgetter(1), apply, None, fold, after, recorded
    )


async def apply_records(
    target: asyncpg.Pool,
    plan: Plan,
    registry: PayloadRegistry,
    records: Sequence[ConsumerRecord[bytes, bytes]],
    applied: set[str],
    apply: Applier = apply_run,
) -> int:
    """The records the live consumer applied (`apply_consumed`)."""
    events, every, add, inserted = consumed_events(plan, registry, applied)
    add(records)
    if plan.every_record is not None:
        await apply_insert(target, plan.every_record, every, None)
    for insert, envelopes in inserted.items():
        await apply_insert(target, insert, envelopes, None)
    return await apply_consumed(target, plan, registry, events, apply)


@contextlib.asynccontextmanager
async def paused_cyclic_gc() -> AsyncIterator[None]:
    """The cyclic garbage collector off while the events are replayed. A replay holds
    every event it read (records, envelopes, payloads, the fold's rows: millions of
    objects at the bench's size), and each full collection walks them all: with it on,
    the collector took 40 % of the Python side's time (notification, 213,003 events:
    53 -> 31 us per event without it). What a replay frees is freed by reference counts
    (the cycles it makes are few: asyncio's). It is paused for the whole rebuild, the
    comparison included, and runs again once what the replay held is gone: turned on
    with those objects still alive, its next collection walked every one of them, as
    they were all young (about 1 s for reporting's 213,003 events)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@paused_cyclic_gc()
async def rebuild(
    plan: Plan,
    dsn: str,
    bootstrap: str,
    registry: PayloadRegistry,
    *,
    topic_prefix: str = "",
    group_suffix: str = "",
    schema: str = "rebuild",
    switch: bool = False,
    kafka_options: Mapping[str, Any] | None = None,
    apply: Applier = apply_run,
) -> Report:
    """`apply`: how a run of events goes through a handler (`one_by_one` to compare).

    The consumed topics are read (and their records decoded) from the start while the
    fresh schema is made and the own events are replayed: the Python side has that
    reading to do whenever it would wait on the server. Their events are applied after
    the own ones, in the same order as before."""
    report = Report(plan.service, schema)
    if plan.start is not None:
        plan.start()
    began = lap = time.perf_counter()
    lap_cpu = time.process_time()
    source = await asyncpg.connect(dsn)
    topics = prefixed_all(topic_prefix, plan.topics)
    applied: set[str] = set()
    reading: asyncio.Task[tuple[list[ConsumerRecord[bytes, bytes]], Any]] | None = None
    events: list[Placed] = []
    every: list[Envelope] = []
    target: asyncpg.Pool | None = None
    making: asyncio.Task[asyncpg.Pool] | None = None
    # Writes on other connections (`shared.rebuild_write`): awaited before the report.
    writes: list[PendingWrite] = []
    stream: Stream | None = None
    as_read: EveryRecordAsRead | None = None  # the plan's `every_record` folded as read
    own_rows: Reading | None = None

    def phase(name: str) -> None:
        nonlocal lap, lap_cpu
        now, now_cpu = time.perf_counter(), time.process_time()
        report.phases[name], report.phases_cpu[name] = now - lap, now_cpu - lap_cpu
        lap, lap_cpu = now, now_cpu

    try:
        # The fresh schema made (one round trip once connected, `fresh_schema`) while the
        # applied ids are read; the topics read and the own events sorted meanwhile,
        # not after it: nothing is folded or written before the schema is there, but the
        # records are decoded as they come. (When it took a round trip per statement, it
        # had to come first: once the read's decoding held the event loop, each waited
        # for it, 1.3-2.2 s in all beside the read of 213,003 records.)
        making = asyncio.create_task(fresh_schema(dsn, schema, plan))
        if plan.preload is not None:
            await plan.preload(source)
        if topics:
            applied = await _applied(source, plan.consumer + group_suffix)
            # Decoded as the records come (the Python side would idle waiting for them).
            events, every, add, inserted = consumed_events(plan, registry, applied)
            if plan.every_record is not None:
                as_read = EveryRecordAsRead(plan.every_record, every)
                add = as_read.each_batch(add)
            reading = asyncio.create_task(
                read_topics(bootstrap, topics, kafka_options=kafka_options, each_batch=add)
            )
        if plan.own is not None:  # the server sorts and sends them meanwhile
            own_rows = Reading(source, reads_envelope(plan.own))
        target = await making
        phase("schema")
        fold = None
        if apply is apply_run:  # the fresh schema's tables folded in memory, then COPY
            async with target.acquire() as conn:
                fold = await Fold.read(conn)
        own = _Own()
        report.own_events = await replay_own(
            source, target, plan, registry, own, apply, fold, own_rows
        )
        phase("own")
        if fold is not None and reading is not None:
            # The tables the own events filled, written on another connection while the
            # consumed events are applied (a statement that names one of them now goes
            # to the server, after this write).
            # (Not the table of the plan's `every_record`: its rows are folded next.)
            kept = [plan.every_record.table] if plan.every_record is not None else []
            released = fold.release_filled(keep=[*kept, *plan.shared_tables])
            writes.append(PendingWrite.start(target, released))
            if as_read is not None and (streamed := as_read.start(target, fold)) is not None:
                writes.append(streamed)
        pending = list(writes)

        def drain() -> None:
            """After each window: the largest table the consumed events only insert
            into (reporting's history) streamed to the server (`shared.rebuild_write`)."""
            nonlocal stream
            if stream is None and fold is not None:
                stream = Stream.start(target, fold, BATCH // 2)
                if stream is not None:
                    pending.append(stream.pending)
                    writes.append(stream.pending)
            if stream is not None:
                stream.drain()

        if reading is not None:
            records, _ = await reading
            report.records_read = len(records)
            del records
            phase("read")
            if plan.every_record is not None:
                assert as_read is not None  # (made with the read)
                await apply_insert(target, plan.every_record, as_read.rest, fold)
                if fold is not None:  # no consumed handler names its table: written now
                    released = fold.release([plan.every_record.table])
                    writes.append(PendingWrite.start(target, released))
                    pending.append(writes[-1])
            for insert, envelopes in inserted.items():
                await apply_insert(target, insert, envelopes, fold)
                if fold is not None:
                    writes.append(PendingWrite.start(target, fold.release([insert.table])))
                    pending.append(writes[-1])
            applied_events = await apply_consumed(
                target, plan, registry, events, apply, fold, pending, drain
            )
            folded = sum(len(envelopes) for envelopes in inserted.values())
            report.consumed_events = len(every) if plan.every_record else applied_events + folded
            phase("consumed")
        if fold is not None:
            # The largest table on one connection, the others on the second at once: the
            # server builds one's indexes while the next one's rows are sent. (A streamed
            # table's last rows go to its stream.)
            released = sorted(fold.release_all(), key=lambda copy: len(copy[1]), reverse=True)
            await asyncio.gather(write(target, released[:1]), write(target, released[1:]))
        for writing in writes:
            await writing.write
        if fold is not None:
            phase("written")
            report.released_by_reads = list(fold.released_by_reads)
        report.seconds = time.perf_counter() - began
        report.switched_to, report.differences = await _settle(
            source,
            target,
            plan,
            registry,
            (bootstrap, topics, plan.consumer + group_suffix, kafka_options),
            applied,
            own,
            schema,
            switch,
        )
    finally:
        if own_rows is not None:
            await own_rows.stop()  # (done if the replay read them all)
        for task in (making, reading, *(w.write for w in writes)):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await source.close()
        if target is None and making is not None and making.done() and not making.cancelled():
            target = making.result() if making.exception() is None else None
        if target is not None:
            await target.close()
    return report


async def _settle(
    source: asyncpg.Connection,
    target: asyncpg.Pool,
    plan: Plan,
    registry: PayloadRegistry,
    consumed: tuple[str, Sequence[str], str, Mapping[str, Any] | None],
    applied_before: set[str],
    own: _Own,
    schema: str,
    swap: bool,
) -> tuple[str | None, list[Difference]]:
    """Under locks that hold commands and the consumer back: replay what they recorded or
    applied meanwhile, so both sides stand at the same point, then compare (with `swap`,
    swap the tables first and compare the retired ones with the new live ones). Returns
    the retired schema's name (with `swap`) and the differences."""
    bootstrap, topics, consumer, kafka_options = consumed
    async with source.transaction():
        # Commands append to `events`, consumers insert into `inbox`: both wait now.
        await source.execute("LOCK TABLE public.events, public.inbox IN EXCLUSIVE MODE")
        await replay_own(source, target, plan, registry, own)
        if topics:
            # What the live consumer applied meanwhile: past the first read's end, or
            # before it if the consumer was behind then (so read from the start again).
            applied = await _applied(source, consumer)
            if applied - applied_before:
                records, _ = await read_topics(bootstrap, topics, kafka_options=kafka_options)
                await apply_records(target, plan, registry, records, applied - applied_before)
        if plan.finish is not None:
            async with target.acquire() as conn, conn.transaction():
                await plan.finish(conn)
        if not swap:
            return None, await compare(source, plan, "public", schema)
        retired = f"retired_{datetime.now(UTC):%Y%m%d%H%M%S}"
        await source.execute(f'CREATE SCHEMA "{retired}"')
        for table in plan.tables:
            await source.execute(f'ALTER TABLE public."{table}" SET SCHEMA "{retired}"')
            await source.execute(f'ALTER TABLE "{schema}"."{table}" SET SCHEMA public')
        await rehome_triggers(source, schema, plan.tables)
        return retired, await compare(source, plan, retired, "public")


def run(plan: Plan, registry: PayloadRegistry, argv: Sequence[str], settings: Any, dsn: str) -> int:
    """The command line of `python -m services.<name>.rebuild [--switch]`."""
    switch = "--switch" in argv
    report = asyncio.run(
        rebuild(
            plan,
            dsn,
            settings.kafka_bootstrap_servers,
            registry,
            topic_prefix=settings.topic_prefix,
            group_suffix=settings.consumer_group_suffix,
            switch=switch,
            kafka_options=client_options(settings),
        )
    )
    for line in report.lines():
        print(line)
    return 0 if report.equal else 1
