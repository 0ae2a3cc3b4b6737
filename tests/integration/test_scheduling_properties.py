"""Property-based tests of the agenda's guarantees, on a real PostgreSQL database.

Random sequences of accepts, cancels, withdrawals, locks, re-optimisations and publication
drive scheduling's handlers directly (each in its own transaction, a group of them at once
on separate connections, as concurrent consumers and API calls would). After every group:
the agenda rebuilt from the projection passes the solver's independent checker (nobody and
no table double-booked, availability and caps held), locked meetings have not moved, and
folding the published events gives the projection's agenda. At the end, the projection
rebuilt from the events alone (scheduling's own, then the consumed ones, as
`shared.rebuild` replays them) equals the live one row by row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scheduling import domain, handlers, projection
from services.scheduling.domain import Place
from services.scheduling.solver import Schedule, Unscheduled, check
from shared import eventstore
from shared.access.policy import Role
from shared.auth import Principal
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.db import migrate
from shared.envelope import Envelope
from shared.errors import NotFound, RuleViolation
from tests.integration.support import FreshDatabase
from tests.unit.scheduling_service import factories as f

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services/scheduling/migrations"
BERLIN = ZoneInfo("Europe/Berlin")
PAYLOADS = registry()
ADMIN = Principal(Role.ADMIN, "admin")

Op = tuple[Any, ...]
KINDS = ["accept"] * 10 + ["cancel"] * 2 + ["lock"] * 3 + ["unlock"] + ["reoptimise"] * 2
KINDS += ["withdraw", "publish"]  # weighted: mostly accepts, publication rare
ops = st.tuples(st.sampled_from(KINDS), st.integers(0, 7), st.integers(0, 6), st.integers(0, 40))
scenarios = st.fixed_dictionaries(
    {
        "tables": st.integers(0, 3),
        "cap": st.one_of(st.none(), st.integers(1, 3)),
        "remote": st.lists(st.booleans(), min_size=8, max_size=8),
        "morning_only": st.lists(st.booleans(), min_size=8, max_size=8),
        "groups": st.lists(st.lists(ops, min_size=2, max_size=8), min_size=2, max_size=8),
    }
)


CONSUMED: list[tuple[Envelope, EventPayload]] = []  # what `consume` applied, in order


async def consume(pool: asyncpg.Pool, payload: EventPayload, key: str) -> None:
    """What the inbox does with one event: its handler, in a transaction."""
    env = Envelope.wrap(payload, key=key)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await handlers.HANDLERS[env.type](conn, env, payload)
        CONSUMED.append((env, payload))


# The projection's columns the rebuild must reproduce (not the clock's).
REBUILT = {
    "meetings": "meeting_id, event_id, participants, mode, status, slot_id, slot_start,"
    " slot_end, table_no, locked, reason, meeting_type",
    "event_grids": "*",
    "attendees": "*",
    "agenda_publications": "*",
    "slot_rule_changes": "event_id, meeting_type, allowed_slots, set_by",
}


async def rebuilt_equals_live(database: FreshDatabase, event_id: str) -> None:
    """Scheduling's own events of the event's stream through `projection.AGENDA`, then the
    consumed ones through the projection's handlers, into a fresh schema; compared."""
    schema = f"rb_{uuid.uuid4().hex[:8]}"
    await database.pool.execute(f"CREATE SCHEMA {schema}")
    target = await asyncpg.create_pool(
        database.dsn, min_size=1, max_size=1, server_settings={"search_path": schema}
    )
    assert target is not None
    try:
        await migrate(target, MIGRATIONS)
        async with database.pool.acquire() as live:
            own = await eventstore.load_events(live, handlers.stream_of(event_id), PAYLOADS)
        async with target.acquire() as conn, conn.transaction():
            for event in own:
                await projection.AGENDA.apply(conn, event)
            for env, payload in CONSUMED:
                found = projection.HANDLERS.get(env.type)
                if found is not None and getattr(payload, "event_id", None) == event_id:
                    await found(conn, env, payload)
        for table, cols in REBUILT.items():
            for a, b in (("public", schema), (schema, "public")):
                extra = await database.pool.fetch(
                    f"SELECT {cols} FROM {a}.{table} WHERE event_id = $1 EXCEPT ALL"
                    f" SELECT {cols} FROM {b}.{table} WHERE event_id = $1",
                    event_id,
                )
                assert not extra, f"{table}: only in {a}: {[dict(r) for r in extra[:3]]}"
    finally:
        await target.close()
        await database.pool.execute(f"DROP SCHEMA {schema} CASCADE")


async def command(pool: asyncpg.Pool, run: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    async with pool.acquire() as conn, conn.transaction():
        try:
            return await run(conn)
        except RuleViolation as exc:
            assert exc.status == 409, exc  # refused: published, or not placed
            return None
        except NotFound:
            return None  # a lock racing the accept that makes the meeting


class Scenario:
    def __init__(self, pool: asyncpg.Pool, spec: dict[str, Any]) -> None:
        self.pool = pool
        self.spec = spec
        self.event_id = f"ev-{uuid.uuid4().hex[:12]}"
        self.people = [f"{self.event_id}-p{i}" for i in range(8)]
        self.meetings: list[tuple[str, str, str]] = []  # every accepted (id, a, b)
        self.locked: dict[str, Place] = {}
        self.published = False

    async def setup(self) -> None:
        e = self.event_id
        await consume(
            self.pool, f.event(e, "org", tables=self.spec["tables"], cap=self.spec["cap"]), e
        )
        morning = (datetime(2031, 6, 2, 9, tzinfo=BERLIN), datetime(2031, 6, 2, 12, tzinfo=BERLIN))
        for i, pid in enumerate(self.people):
            avail = (morning,) if self.spec["morning_only"][i] else ()
            await consume(
                self.pool,
                f.registered(
                    e, pid, f"digest-{pid}", remote=self.spec["remote"][i], availability=avail
                ),
                e,
            )
            await consume(self.pool, f.approved(e, pid), e)

    async def run(self, op: Op) -> None:
        e, pool = self.event_id, self.pool
        kind = op[0]
        if kind == "accept":
            i, j = op[1], (op[1] + 1 + op[2]) % len(self.people)
            a, b = self.people[i], self.people[j]
            mid = f"{e}-m{len(self.meetings)}"
            self.meetings.append((mid, a, b))
            remote = (self.spec["remote"][i], self.spec["remote"][j])
            await consume(pool, f.accepted(e, mid, a, b, remote=remote), e)
        elif kind in ("cancel", "lock", "unlock") and self.meetings:
            mid, a, b = self.meetings[op[3] % len(self.meetings)]
            if kind == "cancel":
                await consume(pool, f.cancelled(e, mid, a, b), e)
            else:
                await command(pool, lambda c: handlers.set_locked(c, ADMIN, e, mid, kind == "lock"))
        elif kind == "withdraw":
            await consume(pool, f.withdrawn(e, self.people[op[1]]), e)
        elif kind == "reoptimise":
            await command(pool, lambda c: handlers.reoptimise(c, ADMIN, e, 0.3, None))
        elif kind == "publish":
            await command(pool, lambda c: handlers.publish(c, ADMIN, e, None))

    async def verify(self) -> None:
        async with self.pool.acquire() as conn:
            grid = await handlers.load_grid(conn, self.event_id)
            assert grid is not None
            live = await handlers.load_meetings(conn, self.event_id)
            instance = domain.build_instance(
                grid, await handlers.load_attendees(conn, self.event_id), live
            )
            schedule: Schedule = domain.current_schedule(live)
            schedule.unscheduled = [Unscheduled(m.meeting_id, "") for m in live if not m.place]
            report = check(instance, schedule)
            assert report.valid, report.violations
            # Online meetings have no table; with a remote side a meeting is online.
            for m in live:
                remote = any(self.spec["remote"][self.people.index(p)] for p in m.participants)
                assert m.mode == ("online" if remote else "onsite")
            # Locked meetings stay where they were locked (unless cancelled).
            rows = {
                r["meeting_id"]: r
                for r in await conn.fetch(
                    "SELECT * FROM meetings WHERE event_id = $1", self.event_id
                )
            }
            for mid, row in rows.items():
                if row["locked"]:
                    self.locked.setdefault(mid, Place(row["slot_id"], row["table_no"]))
                elif mid in self.locked and row["status"] != "placed":
                    self.locked.pop(mid)
                elif mid in self.locked:
                    self.locked.pop(mid)  # unlocked: free to move from now on
            for mid, where in self.locked.items():
                row = rows[mid]
                assert row["status"] == "placed" and row["locked"]
                assert Place(row["slot_id"], row["table_no"]) == where, mid
            # The events tell the same agenda as the projection.
            folded: dict[str, tuple[datetime, int | None] | None] = {}
            for stored in await eventstore.load(conn, handlers.stream_of(self.event_id)):
                p = PAYLOADS.parse(stored.envelope.type, stored.envelope.data)
                if p.event_name == "SlotAssigned":
                    folded[p.meeting_id] = (p.slot_start, p.table)  # type: ignore[attr-defined]
                elif p.event_name in ("SlotReleased", "MeetingUnschedulable"):
                    folded[p.meeting_id] = None  # type: ignore[attr-defined]
            placed = {
                mid: (r["slot_start"], r["table_no"])
                for mid, r in rows.items()
                if r["status"] == "placed"
            }
            assert {k: v for k, v in folded.items() if v is not None} == placed


@pytest.fixture
async def scheduling_db(database: FreshDatabase) -> FreshDatabase:
    await migrate(database.pool, MIGRATIONS)
    return database


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=scenarios)
async def test_agenda_stays_valid_under_random_concurrent_changes(
    scheduling_db: FreshDatabase, spec: dict[str, Any]
) -> None:
    scenario = Scenario(scheduling_db.pool, spec)
    await scenario.setup()
    for group in spec["groups"]:
        # Accepts get their ids in order before running concurrently with the rest.
        await asyncio.gather(*(scenario.run(op) for op in group))
        await scenario.verify()
    await rebuilt_equals_live(scheduling_db, scenario.event_id)
