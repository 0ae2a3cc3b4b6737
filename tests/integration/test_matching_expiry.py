"""Meeting-request handlers and the expiry sweeper on a fresh database (real PostgreSQL).

The clock is injected: requests are made at `T0` and swept at later instants,
so nothing waits for hours. The running service's sweeper is the same
`run_sweeper` loop with the wall clock (`expiry.sweeper`, started by the
runtime's background hook; the end-to-end tests check it is running).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.matching import bootstrap, expiry, handlers, projection
from shared.access.policy import Role
from shared.auth import Principal
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    Attendance,
    BrokerageEventCreated,
    BusinessRegistered,
    ClusterRegistered,
    MeetingType,
    OrganisationProfile,
    OrganisationType,
    RegistrationApproved,
    RegistrationWithdrawn,
    Session,
)
from shared.db import migrate
from shared.envelope import Envelope
from shared.errors import RuleViolation
from shared.inbox import combine
from tests.integration.support import FreshDatabase, wait_until

pytestmark = pytest.mark.integration

MATCHING_MIGRATIONS = Path(handlers.__file__).parent / "migrations"
T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
HOURS = 48
ON_REGISTRATION = combine(projection.HANDLERS, handlers.ON_REGISTRATION_EVENTS)


async def feed(conn: asyncpg.Connection, payload: EventPayload) -> None:
    """Apply a registration event as matching's consumer would."""
    envelope = Envelope.wrap(payload, key="k")
    async with conn.transaction():
        await ON_REGISTRATION[payload.ce_type()](conn, envelope, payload)


def profile(
    name: str, organisation_type: OrganisationType = OrganisationType.CLUSTER
) -> OrganisationProfile:
    return OrganisationProfile(
        organisation_type=organisation_type,
        name=name,
        country="DE",
        sectors=[],
        technologies=[],
        value_chain_position=None,
        markets=[],
        offers=[],
        requests=[],
        attendance=Attendance.ON_SITE,
        availability=[],
        representatives_encrypted="x",
        representative_count=1,
    )


@pytest.fixture
async def matching_db(database: FreshDatabase) -> FreshDatabase:
    await migrate(database.pool, MATCHING_MIGRATIONS)
    return database


async def new_event(pool: asyncpg.Pool, size: int, **changes: Any) -> tuple[str, list[str]]:
    """A brokerage event with `size` approved clusters (plus one business if asked)."""
    event_id = str(uuid.uuid4())
    async with pool.acquire() as conn:
        await feed(
            conn,
            BrokerageEventCreated(
                event_id=event_id,
                organiser_id="org-1",
                name="Expiry test",
                venue="Hannover",
                time_zone="Europe/Berlin",
                days=[date(2030, 4, 1)],
                sessions=[Session(start=time(10), end=time(12))],
                slot_minutes=30,
                tables=10,
                meeting_types=[MeetingType.CLUSTER2CLUSTER],
                registration_deadline=T0,
                request_expiry_hours=HOURS,
                **changes,
            ),
        )
        ids = []
        for n in range(size):
            rid = str(uuid.uuid4())
            await feed(
                conn,
                ClusterRegistered(
                    registration_id=rid,
                    event_id=event_id,
                    profile=profile(f"Cluster {n}"),
                    api_key_digest=uuid.uuid4().hex,
                ),
            )
            await feed(conn, RegistrationApproved(registration_id=rid, event_id=event_id))
            ids.append(rid)
    return event_id, ids


def org(registration_id: str) -> Principal:
    return Principal(Role.ORGANISATION, registration_id)


async def command(pool: asyncpg.Pool, run: Any) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        result: dict[str, Any] = await run(conn)
        return result


async def ask(
    pool: asyncpg.Pool, event_id: str, requester: str, recipient: str, at: datetime = T0
) -> dict[str, Any]:
    return await command(
        pool,
        lambda conn: handlers.request_meeting(
            conn, org(requester), event_id, recipient, None, None, now=at
        ),
    )


async def statuses(pool: asyncpg.Pool, event_id: str) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT request_id, status FROM meeting_requests WHERE event_id = $1", event_id
    )
    return {r["request_id"]: r["status"] for r in rows}


async def stored(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT e.stream_id, e.data, o.topic, o.key FROM events e"
        " JOIN outbox o ON o.event_id = e.event_id::text"
        " WHERE e.event_type = $1 ORDER BY e.stream_id",
        f"eu.matchmaking.matching.{event_type}.v1",
    )
    return [{**dict(r), "data": json.loads(r["data"])} for r in rows]


async def test_due_pending_requests_expire_once_and_are_published(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, (a, b, c, d) = await new_event(pool, 4)
    first = await ask(pool, event_id, a, b)
    second = await ask(pool, event_id, a, c, at=T0 + timedelta(hours=1))
    answered = await ask(pool, event_id, c, d)
    await command(pool, lambda conn: handlers.accept(conn, org(d), answered["request_id"], None))
    assert first["expires_at"] == (T0 + timedelta(hours=HOURS)).isoformat()

    assert await expiry.sweep(pool, T0 + timedelta(hours=HOURS) - timedelta(seconds=1)) == 0
    assert await expiry.sweep(pool, T0 + timedelta(hours=HOURS)) == 1
    assert await expiry.sweep(pool, T0 + timedelta(hours=HOURS + 5)) == 1
    assert await expiry.sweep(pool, T0 + timedelta(days=30)) == 0
    assert await statuses(pool, event_id) == {
        first["request_id"]: "expired",
        second["request_id"]: "expired",
        answered["request_id"]: "accepted",
    }
    expired = await stored(pool, "MeetingRequestExpired")
    assert [e["stream_id"] for e in expired] == sorted(
        f"meeting-request-{r['request_id']}" for r in (first, second)
    )
    assert {(e["topic"], e["key"]) for e in expired} == {("matching.events", event_id)}
    assert {e["data"]["requester_id"] for e in expired} == {a}

    # Expired requests no longer block the pair, and can no longer be accepted.
    with pytest.raises(RuleViolation) as refused:
        await command(pool, lambda conn: handlers.accept(conn, org(b), first["request_id"], None))
    assert refused.value.field == "status"
    again = await ask(pool, event_id, a, b, at=T0 + timedelta(days=3))
    assert again["status"] == "pending"


async def test_concurrent_sweepers_expire_each_request_exactly_once(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, ids = await new_event(pool, 11)
    hub, others = ids[0], ids[1:]
    for other in others:
        await ask(pool, event_id, other, hub)
    later = T0 + timedelta(hours=HOURS)
    counts = await asyncio.gather(*[expiry.sweep(pool, later, batch_size=3) for _ in range(4)])
    assert sum(counts) == len(others)
    assert set((await statuses(pool, event_id)).values()) == {"expired"}
    assert len(await stored(pool, "MeetingRequestExpired")) == len(others)


async def test_a_sweep_skips_a_request_being_answered_and_never_waits(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, (a, b, c) = await new_event(pool, 3)
    busy = await ask(pool, event_id, a, b)
    idle = await ask(pool, event_id, a, c)
    later = T0 + timedelta(hours=HOURS)
    async with pool.acquire() as conn, conn.transaction():
        # An accept (or anything else) holds the row lock of `busy`.
        await conn.execute(
            "SELECT 1 FROM meeting_requests WHERE request_id = $1 FOR UPDATE", busy["request_id"]
        )
        assert await asyncio.wait_for(expiry.sweep(pool, later), 5) == 1
    assert (await statuses(pool, event_id))[busy["request_id"]] == "pending"
    assert (await statuses(pool, event_id))[idle["request_id"]] == "expired"
    assert await expiry.sweep(pool, later) == 1


async def test_the_sweeper_loop_expires_requests_with_its_clock(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, (a, b) = await new_event(pool, 2)
    made = await ask(pool, event_id, a, b)
    clock = [T0]
    loop = asyncio.create_task(expiry.run_sweeper(pool, 0.05, clock=lambda: clock[0]))
    try:
        await asyncio.sleep(0.2)
        assert (await statuses(pool, event_id))[made["request_id"]] == "pending"
        clock[0] = T0 + timedelta(hours=HOURS, minutes=1)

        async def expired() -> bool:
            return (await statuses(pool, event_id))[made["request_id"]] == "expired"

        await wait_until(expired, limit=10, what="the sweeper to expire the request")
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def test_a_due_request_does_not_block_the_pair_before_the_sweep(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, (a, b) = await new_event(pool, 2)
    old = await ask(pool, event_id, a, b)
    # b asks a after a's request fell due but before any sweep: a's expires, b's is new.
    new = await ask(pool, event_id, b, a, at=T0 + timedelta(hours=HOURS + 1))
    assert new["request_id"] != old["request_id"] and new["status"] == "pending"
    assert (await statuses(pool, event_id))[old["request_id"]] == "expired"


async def test_a_participant_who_leaves_has_open_requests_and_meetings_cancelled(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, (a, b, c, d) = await new_event(pool, 4)
    pending = await ask(pool, event_id, a, b)
    met = await ask(pool, event_id, c, a)
    await command(pool, lambda conn: handlers.accept(conn, org(a), met["request_id"], None))
    unrelated = await ask(pool, event_id, c, d)
    async with pool.acquire() as conn:
        await feed(conn, RegistrationWithdrawn(registration_id=a, event_id=event_id))
    assert await statuses(pool, event_id) == {
        pending["request_id"]: "cancelled",
        met["request_id"]: "cancelled",
        unrelated["request_id"]: "pending",
    }
    cancelled = {e["data"]["request_id"]: e["data"] for e in await stored(pool, "MeetingCancelled")}
    assert cancelled[met["request_id"]]["was_accepted"] is True
    assert cancelled[pending["request_id"]]["cancelled_by_role"] == "system"


async def test_a_departure_amid_a_run_of_decisions_is_reacted_to_in_the_run(
    matching_db: FreshDatabase,
) -> None:
    """The consumer's batch handler for decisions (`bootstrap.registration_runs`): a
    withdrawal among approvals no longer goes one by one; its reaction still runs, in
    the run, under the actor of the event it reacts to."""
    pool = matching_db.pool
    event_id, (a, b, c) = await new_event(pool, 3)
    pending = await ask(pool, event_id, a, b)
    unrelated = await ask(pool, event_id, b, c)
    late = [str(uuid.uuid4()) for _ in range(2)]
    for n, rid in enumerate(late):
        async with pool.acquire() as conn:
            await feed(
                conn,
                ClusterRegistered(
                    registration_id=rid,
                    event_id=event_id,
                    profile=profile(f"Late {n}"),
                    api_key_digest=uuid.uuid4().hex,
                ),
            )
    decisions: list[EventPayload] = [
        RegistrationApproved(registration_id=late[0], event_id=event_id),
        RegistrationWithdrawn(registration_id=a, event_id=event_id),
        RegistrationApproved(registration_id=late[1], event_id=event_id),
    ]
    runs = bootstrap.registration_runs()
    handler = runs[decisions[0].ce_type()]
    assert all(runs[d.ce_type()] is handler for d in decisions), "one run"
    run = [(Envelope.wrap(d, key="k", actor="organiser:org-1"), d) for d in decisions]
    async with pool.acquire() as conn, conn.transaction():
        await handler(conn, run)
    assert await statuses(pool, event_id) == {
        pending["request_id"]: "cancelled",
        unrelated["request_id"]: "pending",
    }
    rows = await pool.fetch(
        "SELECT registration_id, status FROM participants WHERE registration_id = ANY($1)",
        [a, *late],
    )
    assert {r["registration_id"]: r["status"] for r in rows} == {
        a: "withdrawn",
        late[0]: "approved",
        late[1]: "approved",
    }
    actors = await pool.fetch(
        "SELECT metadata->>'actor' AS actor FROM events"
        " WHERE event_type = 'eu.matchmaking.matching.MeetingCancelled.v1'"
    )
    assert [r["actor"] for r in actors] == ["organiser:org-1"]


async def test_the_meeting_type_comes_from_the_projection_and_the_event_decides(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, (a,) = await new_event(pool, 1)
    business = str(uuid.uuid4())
    async with pool.acquire() as conn:
        await feed(
            conn,
            BusinessRegistered(
                registration_id=business,
                event_id=event_id,
                profile=profile("Acme", OrganisationType.BUSINESS),
                api_key_digest=uuid.uuid4().hex,
            ),
        )
        await feed(conn, RegistrationApproved(registration_id=business, event_id=event_id))
    with pytest.raises(RuleViolation) as refused:
        await ask(pool, event_id, business, a)
    assert refused.value.field == "meeting_type"
    assert await statuses(pool, event_id) == {}
