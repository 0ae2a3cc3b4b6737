"""`SELECT pg_notify(...)` in a recorded run (`shared.batching`): a lane of its own, so
that a handler which notifies after each event (reporting's dashboard) no longer sends
every other lane before it, one event at a time."""

from __future__ import annotations

from typing import cast

import asyncpg

from shared.batching import NOTIFICATIONS, Catalog, record_run
from shared.contracts.base import EventPayload
from shared.envelope import Envelope

INSERT = "INSERT INTO things (thing_id, name) VALUES ($1, $2)"
NOTIFY = "SELECT pg_notify($1, $2)"


async def _handler(conn: asyncpg.Connection, envelope: Envelope, _: EventPayload) -> None:
    await conn.execute(INSERT, envelope.id, envelope.key)
    await conn.execute(NOTIFY, "dashboard", envelope.key)


def test_a_notification_touches_no_table_but_its_own_lane() -> None:
    catalog = Catalog()
    assert catalog.statement(NOTIFY).tables == NOTIFICATIONS
    assert catalog.statement("select  PG_NOTIFY( $1 , $2 );").tables == NOTIFICATIONS
    # Anything more than the call is not taken for one.
    assert catalog.statement("SELECT pg_notify($1, $2), count(*) FROM things").tables != (
        NOTIFICATIONS
    )


async def test_notifications_between_inserts_leave_the_inserts_one_run() -> None:
    run = [
        (Envelope(id=f"e{i}", source="/s", type="t", key=f"ev{i % 2}", data={}), None)
        for i in range(4)
    ]
    recorded = await record_run(Catalog(), _handler, cast(list[tuple[Envelope, EventPayload]], run))
    assert recorded.rest == ()
    sent = [
        (query, rows)
        for levels in recorded.levels
        for level in levels
        for query, rows in level.items()
    ]
    assert sent == [
        (INSERT, [("e0", "ev0"), ("e1", "ev1"), ("e2", "ev0"), ("e3", "ev1")]),
        (
            NOTIFY,
            [
                ("dashboard", "ev0"),
                ("dashboard", "ev1"),
                ("dashboard", "ev0"),
                ("dashboard", "ev1"),
            ],
        ),
    ]


class _Sent:
    """Stands in for a connection: what `send_many` executes."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, tuple[object, ...]]] = []

    async def execute(self, query: str, *args: object) -> str:
        self.executed.append((query, args))
        return "SELECT 1"


async def test_a_run_of_identical_notifications_goes_as_one() -> None:
    # PostgreSQL would fold them into one at commit anyway: a batch of one brokerage
    # event's events (reporting notifies after each) costs one statement, not one each.
    from shared.batching import send_many

    conn = _Sent()
    await send_many(cast(asyncpg.Connection, conn), NOTIFY, [("dashboard", "ev0")] * 50)
    assert conn.executed == [(NOTIFY, ("dashboard", "ev0"))]
