"""What matching's commands and its decisions' reactions cost in statements, and that
the reactions of a run of departures, taken together, are those of one after the other
(real PostgreSQL; the helpers of `test_matching_expiry`)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from services.matching import bootstrap, handlers
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    DECISIONS,
    REGISTERED_BY_TYPE,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWithdrawn,
)
from shared.db import migrate
from shared.envelope import Envelope
from shared.runtime import with_access_projection
from tests.integration.support import FreshDatabase
from tests.integration.test_matching_expiry import (
    MATCHING_MIGRATIONS,
    ask,
    command,
    new_event,
    org,
    statuses,
    stored,
)

pytestmark = pytest.mark.integration
INTROSPECTION = re.compile(r"'jit'|typeinfo_tree|pg_catalog\.pg_type")


@pytest.fixture
async def matching_db(database: FreshDatabase) -> FreshDatabase:
    await migrate(database.pool, MATCHING_MIGRATIONS)
    return database


async def counted(
    pool: asyncpg.Pool, run: Callable[[asyncpg.Connection], Awaitable[Any]]
) -> list[str]:
    """The statements `run` sends, in one transaction (BEGIN and COMMIT left out)."""
    sent: list[str] = []

    def note(logged: LoggedQuery) -> None:
        sent.append(logged.query)

    async with pool.acquire() as conn:
        conn.add_query_logger(note)
        try:
            async with conn.transaction():
                await run(conn)
        finally:
            conn.remove_query_logger(note)
    # asyncpg's own look-ups of a type it meets on a connection for the first time aside
    return [
        q
        for q in sent
        if q.strip().upper() not in ("BEGIN;", "COMMIT;") and not INTROSPECTION.search(q)
    ]


def wrapped(*events: EventPayload) -> list[tuple[Envelope, EventPayload]]:
    return [(Envelope.wrap(e, key="k", actor=f"organiser:{n}"), e) for n, e in enumerate(events)]


def test_registrations_and_decisions_share_one_run() -> None:
    """A deadline's burst interleaves registrations and rounds of approvals: one batch
    handler object for all of them (the inbox cuts a run where it changes), in the
    service's subscription as the runtime builds it (access projection first)."""
    kinds = [t.ce_type() for t in (*REGISTERED_BY_TYPE.values(), *DECISIONS)]
    runs = bootstrap.registration_runs()
    assert len({id(runs[k]) for k in kinds}) == 1
    live = with_access_projection(bootstrap.build_app().state.subscriptions[0])
    assert len({id(live.batch_handlers[k]) for k in kinds}) == 1


async def test_a_run_of_departures_with_nothing_open_costs_two_statements(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, ids = await new_event(pool, 6)
    run = wrapped(
        *(RegistrationRejected(registration_id=rid, event_id=event_id) for rid in ids[:3]),
        RegistrationApproved(registration_id=ids[3], event_id=event_id),
        *(RegistrationWithdrawn(registration_id=rid, event_id=event_id) for rid in ids[4:]),
    )
    sent = await counted(pool, lambda conn: handlers.on_departures(conn, run))
    assert len(sent) == 2, sent  # the participants' locks, their open requests


async def test_departures_in_a_run_cancel_as_one_after_the_other(
    matching_db: FreshDatabase,
) -> None:
    """A request between two participants who both leave in the run is cancelled once,
    by the first of them, under that event's actor; every other open request of theirs
    by its own participant's departure; requests of others stay."""
    pool = matching_db.pool
    event_id, (a, b, c, d, e) = await new_event(pool, 5)
    between = await ask(pool, event_id, a, b)
    a_c = await ask(pool, event_id, a, c)
    met = await ask(pool, event_id, c, b)
    await command(pool, lambda conn: handlers.accept(conn, org(b), met["request_id"], None))
    others = await ask(pool, event_id, d, e)
    run = wrapped(
        RegistrationApproved(registration_id=e, event_id=event_id),
        RegistrationWithdrawn(registration_id=b, event_id=event_id),
        RegistrationRejected(registration_id=a, event_id=event_id),
    )
    async with pool.acquire() as conn, conn.transaction():
        await handlers.on_departures(conn, run)
    assert await statuses(pool, event_id) == {
        between["request_id"]: "cancelled",
        a_c["request_id"]: "cancelled",
        met["request_id"]: "cancelled",
        others["request_id"]: "pending",
    }
    reasons = {
        c["data"]["request_id"]: c["data"]["reason"] for c in await stored(pool, "MeetingCancelled")
    }
    assert reasons == {
        between["request_id"]: f"{b} withdrew from the event",
        met["request_id"]: f"{b} withdrew from the event",
        a_c["request_id"]: f"{a} was rejected from the event",
    }
    actors = await pool.fetch(
        "SELECT data->>'request_id' AS request_id, metadata->>'actor' AS actor FROM events"
        " WHERE event_type = 'eu.matchmaking.matching.MeetingCancelled.v1'"
    )
    assert {r["request_id"]: r["actor"] for r in actors} == {
        between["request_id"]: "organiser:1",
        met["request_id"]: "organiser:1",
        a_c["request_id"]: "organiser:2",
    }


async def test_an_accept_reads_the_event_the_pair_and_their_meetings_in_one_statement(
    matching_db: FreshDatabase,
) -> None:
    pool = matching_db.pool
    event_id, (a, b) = await new_event(pool, 2)
    made = await ask(pool, event_id, a, b)
    sent = await counted(pool, lambda conn: handlers.accept(conn, org(b), made["request_id"], None))
    reads = [q for q in sent if "brokerage_events" in q or "FROM participants" in q]
    assert len(reads) == 1, reads
    # the request's parties, their locks, its row lock, its stream, those inputs, the
    # event with its outbox row and projection, the answer's row
    assert len(sent) <= 8, sent


async def test_an_accept_told_the_parties_does_not_read_them_again(
    matching_db: FreshDatabase,
) -> None:
    """The API passes the parties its guard read (`RowTarget`, `target_of`)."""
    pool = matching_db.pool
    event_id, (a, b) = await new_event(pool, 2)
    made = await ask(pool, event_id, a, b)
    sent = await counted(
        pool,
        lambda conn: handlers.accept(conn, org(b), made["request_id"], None, parties=(a, b)),
    )
    assert not [q for q in sent if q.startswith("SELECT requester_id, recipient_id")], sent
    assert len(sent) <= 7, sent
    assert (await statuses(pool, event_id))[made["request_id"]] == "accepted"
