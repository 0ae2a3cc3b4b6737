"""Every batch handler has the effect of its events applied one by one (real PostgreSQL).

The events of a small brokerage event (`bench.rebuild_events`: registrations in bursts,
approvals, meeting requests, accepts and declines, placements, e-mails) are applied to
two schemas of one fresh database: one event at a time through the per-event handlers,
and in runs through the batch handlers; then every projection table of the service is
compared row by row (`shared.rebuild.compare`, as the rebuild does).

- The live subscriptions (`Subscription.batch_handlers`, with the access projection the
  runtime adds): the consumed events in the order an inbox applies them (fetches of many
  partitions, partition by partition), through the inbox's own `_apply_runs` (each run
  of one type through its batch handler, consecutive projection-only types as one run).
- The rebuild's runs (`shared.rebuild.apply_windows` over `Plan.own` and
  `Plan.consumed`, several windows, each recorded while the one before is sent, the
  tables `shared.rebuild_fold` can fold kept in memory and written at the end) for
  every service, matching included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from bench.rebuild_events import Size, Timeline, generate
from services.matching import bootstrap as matching_bootstrap
from services.matching import rebuild as matching_rebuild
from services.notification import bootstrap as notification_bootstrap
from services.notification import queue as notification_queue
from services.notification import rebuild as notification_rebuild
from services.registration import bootstrap as registration_bootstrap
from services.registration import rebuild as registration_rebuild
from services.reporting import bootstrap as reporting_bootstrap
from services.reporting import history, live
from services.reporting import rebuild as reporting_rebuild
from services.scheduling import bootstrap as scheduling_bootstrap
from services.scheduling import rebuild as scheduling_rebuild
from shared.batching import apply_run, send_levels
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import Handler, InboxCore, Subscription, _Message, combine
from shared.rebuild import Plan, apply_windows
from shared.rebuild_fold import Fold
from shared.rebuild_schema import compare
from shared.rebuild_topics import apply_insert
from tests.integration.support import Infra, fresh_databases, schema_pool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PAYLOADS = registry()
SIZE = Size(participants=60, accepted=90, declined=15, slots=8, tables=12, burst=25)
FETCH = 200  # records per fetch of the simulated inbox
Event = tuple[Envelope, EventPayload]


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return generate(SIZE, seed=11)


@pytest.fixture
async def schemas(infra: Infra) -> AsyncIterator[str]:
    """A fresh database; its DSN (each test makes its two schemas in it)."""
    name = f"test_batch_{datetime.now():%H%M%S%f}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        yield dsns[name]


async def _schema(dsn: str, schema: str, plan: Plan) -> asyncpg.Pool:
    return await schema_pool(dsn, schema, plan.migrations)


def _events(line: Timeline, producers: Sequence[str]) -> list[Event]:
    timed = sorted((item for p in producers for item in line.events[p]), key=lambda item: item[0])
    return [(env, PAYLOADS.parse(env.type, env.data)) for _, env in timed]


def _as_fetched(line: Timeline, topics: Sequence[str]) -> list[Event]:
    """The consumed events in an order an inbox applies them: fetches of `FETCH` records
    in time order, each applied topic by topic (one partition each here)."""
    producers = [
        t.removesuffix(".events") for t in topics if t.removesuffix(".events") in line.events
    ]
    timed = sorted((item for p in producers for item in line.events[p]), key=lambda i: i[0])
    out: list[Event] = []
    for start in range(0, len(timed), FETCH):
        window = timed[start : start + FETCH]
        for producer in producers:
            out += [
                (env, PAYLOADS.parse(env.type, env.data))
                for _, env in window
                if env.source == f"/services/{producer}"
            ]
    return out


async def _one_by_one(pool: asyncpg.Pool, handlers: dict[str, Handler], events: list[Event]) -> int:
    applied = 0
    async with pool.acquire() as conn, conn.transaction():
        for envelope, payload in events:
            handler = handlers.get(PAYLOADS.current_type(envelope.type))
            if handler is not None:
                await handler(conn, envelope, payload)
                applied += 1
    return applied


async def _in_runs(pool: asyncpg.Pool, subscription: Subscription, events: list[Event]) -> int:
    """Through `InboxCore._apply_runs` itself (runs of a type with a batch handler in one
    call; consecutive projection-only types as one run), in one transaction; returns how
    many events went through batch handlers."""
    core = InboxCore(
        name="test-batch",
        dsn_pool=pool,
        subscription=subscription,
        dlq_producer=cast(AIOKafkaProducer, None),  # nothing fails here: never sends
    )
    messages = [
        _Message(
            ConsumerRecord(
                f"{envelope.source.rsplit('/', 1)[-1]}.events",
                0,
                n,
                0,
                0,
                None,
                None,
                None,
                0,
                0,
                [],
            ),
            envelope,
            None,
        )
        for n, (envelope, _) in enumerate(events)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await core._apply_runs(conn, messages)
    return sum(
        1
        for envelope, _ in events
        if PAYLOADS.current_type(envelope.type) in subscription.batch_handlers
    )


async def _differences(dsn: str, plan: Plan, tables: Sequence[str]) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        found = await compare(conn, _only(plan, tables), "one_by_one", "batched")
    finally:
        await conn.close()
    return [
        f"{d.table}: {d.only_live} only one by one, {d.only_rebuilt} only batched {d.samples}"
        for d in found
    ]


def _only(plan: Plan, tables: Sequence[str]) -> Plan:
    from dataclasses import replace

    return replace(plan, tables=tuple(tables))


LIVE = {
    "matching": (matching_bootstrap, matching_rebuild.PLAN, ()),
    "registration": (registration_bootstrap, registration_rebuild.PLAN, ()),
    "scheduling": (scheduling_bootstrap, scheduling_rebuild.PLAN, ()),
    "notification": (notification_bootstrap, notification_rebuild.PLAN, ()),
    "reporting": (reporting_bootstrap, reporting_rebuild.PLAN, ()),
}


@pytest.mark.parametrize("service", sorted(LIVE))
async def test_subscription_batch_handlers_equal_one_by_one(
    service: str, schemas: str, timeline: Timeline
) -> None:
    module, plan, skipped = LIVE[service]
    subscription = module.build_app().state.subscriptions[0]
    events = _as_fetched(timeline, subscription.topics)
    one = await _schema(schemas, "one_by_one", plan)
    batched = await _schema(schemas, "batched", plan)
    try:
        applied = await _one_by_one(one, dict(subscription.handlers), events)
        in_runs = await _in_runs(batched, subscription, events)
    finally:
        await one.close()
        await batched.close()
    assert applied > 50
    # Notification's reactions too: its deliveries (ids from the dedupe keys) must be
    # the same whether a run's notices are decided together or one by one.
    assert in_runs > 50, "the batch handlers took part"
    tables = [t for t in plan.tables if t not in skipped]
    assert await _differences(schemas, plan, tables) == []


async def test_notification_runs_queued_a_few_at_a_time_equal_one_by_one(
    schemas: str, timeline: Timeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notification's runs queue their deliveries a chunk at a time (`queue.Writer`, each
    chunk's statement in flight while the next is made): with chunks of a few rows, the
    placements' reminders cancelled and queued across chunk boundaries, the same rows."""
    monkeypatch.setattr(notification_queue, "CHUNK", 7)
    subscription = notification_bootstrap.build_app().state.subscriptions[0]
    events = _as_fetched(timeline, subscription.topics)
    plan = notification_rebuild.PLAN
    one = await _schema(schemas, "one_by_one", plan)
    batched = await _schema(schemas, "batched", plan)
    try:
        await _one_by_one(one, dict(subscription.handlers), events)
        await _in_runs(batched, subscription, events)
        async with batched.acquire() as conn:
            queued = await conn.fetchval("SELECT count(*) FROM deliveries")
            events_stored = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await one.close()
        await batched.close()
    assert queued == events_stored > 50 * 7
    assert await _differences(schemas, plan, plan.tables) == []


def _reporting_live() -> dict[str, Handler]:
    """Reporting's rebuilt projections' handlers and history's, as its live consumer has."""
    return combine(reporting_rebuild.PLAN.consumed, history.HANDLERS)


def _windows(events: list[Event], size: int = 97) -> list[list[Event]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def _same(event: Event) -> Event:
    return event


@pytest.mark.parametrize(
    "plan",
    [
        registration_rebuild.PLAN,
        matching_rebuild.PLAN,
        scheduling_rebuild.PLAN,
        notification_rebuild.PLAN,
        reporting_rebuild.PLAN,
    ],
    ids=lambda p: p.service,
)
async def test_rebuild_runs_equal_one_by_one(plan: Plan, schemas: str, timeline: Timeline) -> None:
    own = _events(timeline, [plan.service]) if plan.service in timeline.events else []
    producers = [t.removesuffix(".events") for t in plan.topics]
    consumed = _events(timeline, [p for p in producers if p in timeline.events])  # time order

    async def dispatch(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        await plan.consumed[PAYLOADS.current_type(envelope.type)](conn, envelope, e)

    every = [envelope for envelope, _ in consumed]  # the plan's `every_record`, if it has one
    consumed = [e for e in consumed if PAYLOADS.current_type(e[0].type) in plan.consumed]
    one = await _schema(schemas, "one_by_one", plan)
    batched = await _schema(schemas, "batched", plan)
    try:
        if plan.start is not None:
            plan.start()  # as each rebuild does (registration's keys, notification's meetings)
        async with one.acquire() as conn, conn.transaction():
            for envelope, payload in own:
                assert plan.own is not None
                await plan.own(conn, envelope, payload)
            for envelope, payload in consumed:
                await dispatch(conn, envelope, payload)
            if plan.every_record is not None:  # (its table takes nothing else)
                for envelope in every:
                    await conn.execute(plan.every_record.query, *plan.every_record.args(envelope))
        if plan.start is not None:
            plan.start()
        # As the rebuild applies them: in windows (small here, so that there are several),
        # each recorded while the one before goes to the server, the tables it can fold
        # folded in memory (`shared.rebuild_fold`) and written at the end.
        async with batched.acquire() as conn:
            fold = await Fold.read(conn)
            if plan.preload is not None:
                await plan.preload(conn)  # as each rebuild does (registration's keys)
        if plan.own is not None:
            await apply_windows(batched, plan.own, _windows(own), _same, fold=fold)
        if plan.every_record is not None:
            await apply_insert(batched, plan.every_record, every, fold)
        # The plan's inserts (reporting's notification outcomes) folded from the envelopes
        # as the rebuild does, not through the handlers the one-by-one side ran.
        for insert in set(plan.inserts.values()):
            envelopes = [e for e, _ in consumed if plan.inserts.get(e.type) is insert]
            await apply_insert(batched, insert, envelopes, fold)
        handled = [e for e in consumed if e[0].type not in plan.inserts]
        await apply_windows(batched, dispatch, _windows(handled), _same, fold=fold)
        async with batched.acquire() as conn, conn.transaction():
            await send_levels(conn, [{copy: rows} for copy, rows in fold.release_all()])
    finally:
        await one.close()
        await batched.close()
    assert len(own) + len(consumed) > 100
    assert await _differences(schemas, plan, plan.tables) == []
    # No handler read on its connection: every table stayed folded to the end (a read
    # sends them all to the server, as registration's keys once did).
    assert fold.released_by_reads == []


async def test_a_window_that_fails_to_decode_stops_the_replay_with_its_error(
    schemas: str, timeline: Timeline
) -> None:
    """The recording task's error reaches the caller (no wait for a window that never
    comes), after the windows before it were committed."""
    plan = reporting_rebuild.PLAN
    handlers = _reporting_live()
    events = _events(timeline, list(timeline.events))[:300]
    poison = events[250][0].id

    def decode(event: Event) -> Event:
        if event[0].id == poison:
            raise ValueError("undecodable")
        return event

    async def dispatch(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        await handlers[PAYLOADS.current_type(envelope.type)](conn, envelope, e)

    pool = await _schema(schemas, "failing", plan)
    try:
        with pytest.raises(ValueError, match="undecodable"):
            await asyncio.wait_for(apply_windows(pool, dispatch, _windows(events), decode), 60)
        kept = await pool.fetchval("SELECT count(*) FROM history")
    finally:
        await pool.close()
    assert kept == 2 * 97  # the two windows before the failing one's


async def test_notifications_of_a_run_are_delivered_at_commit_in_order(
    schemas: str, timeline: Timeline
) -> None:
    """Reporting's live subscription notifies the dashboards after each event
    (`services.reporting.live.notifying`): in a run they go as one lane of their own."""
    plan = reporting_rebuild.PLAN
    events = _events(timeline, list(timeline.events))[:200]
    handlers = live.notifying(_reporting_live())

    async def dispatch(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        await handlers[PAYLOADS.current_type(envelope.type)](conn, envelope, e)

    heard: list[str] = []
    pool = await _schema(schemas, "notified", plan)
    listener = await asyncpg.connect(schemas)
    try:
        await listener.add_listener(live.CHANNEL, lambda *args: heard.append(args[3]))
        async with pool.acquire() as conn, conn.transaction():
            await apply_run(conn, dispatch, events)
        expected = list(dict.fromkeys(str(e.event_id) for _, e in events if hasattr(e, "event_id")))
        for _ in range(100):
            if len(heard) >= len(expected):
                break
            await asyncio.sleep(0.05)
        assert await pool.fetchval("SELECT count(*) FROM history") == len(events)
    finally:
        await listener.close()
        await pool.close()
    assert expected and heard == expected  # identical ones folded, in the order sent
