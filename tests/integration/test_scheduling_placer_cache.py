"""The placer a run of accepts leaves behind (`bursts.placer_for`) is used by the next run
only while the tables are as it left them: a rolled-back run, another writer of the
agenda and a change to an attendee's times each make the next run read the agenda afresh;
a newcomer's registration only makes it read the attendees again (real PostgreSQL).
Each meeting is placed once, with no clashes, throughout."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.scheduling import bursts, handlers
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted
from shared.contracts.registration import ProfileUpdated
from tests.integration.scheduling_support import conn, envelope_of
from tests.unit.scheduling_service import factories as f

pytestmark = pytest.mark.integration
__all__ = ["conn"]  # the fixture, used by name
ACCEPTED = MeetingAccepted.ce_type()


async def _one_by_one(conn: asyncpg.Connection, event_id: str, *events: EventPayload) -> None:
    async with conn.transaction():
        for payload in events:
            envelope, _ = envelope_of(event_id, payload)
            await handlers.HANDLERS[payload.ce_type()](conn, envelope, payload)


async def _accept_run(conn: asyncpg.Connection, event_id: str, *accepts: MeetingAccepted) -> None:
    async with conn.transaction():
        await bursts.BATCH_HANDLERS[ACCEPTED](conn, [envelope_of(event_id, a) for a in accepts])


def _kept(event_id: str) -> object:
    return bursts._PLACERS[event_id][1]


async def _check(conn: asyncpg.Connection, event_id: str) -> set[str]:
    """The placed meetings: no participant twice in a slot, no table twice, one placement
    event each, and the kept placer agrees with the tables."""
    placed = {
        r["meeting_id"]
        for r in await conn.fetch("SELECT meeting_id FROM meetings WHERE status = 'placed'")
    }
    clashes = await conn.fetchval(
        "SELECT count(*) FROM (SELECT p, slot_id FROM meetings, unnest(participants) p"
        " WHERE status = 'placed' GROUP BY 1, 2 HAVING count(*) > 1) c"
    )
    tables = await conn.fetchval(
        "SELECT count(*) FROM (SELECT slot_id, table_no FROM meetings WHERE status = 'placed'"
        " AND table_no IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) c"
    )
    assigned = await conn.fetch(
        "SELECT data->>'meeting_id' AS m, count(*) FROM events"
        " WHERE event_type LIKE '%SlotAssigned%' GROUP BY 1"
    )
    assert (clashes, tables) == (0, 0)
    assert all(r["count"] == 1 for r in assigned), assigned
    assert {r["m"] for r in assigned} >= placed
    assert set(bursts._PLACERS[event_id][1].placed) == placed
    return placed


async def test_the_kept_placer_serves_while_the_tables_are_as_it_left_them(
    conn: asyncpg.Connection,
) -> None:
    event_id, organiser = str(uuid.uuid4()), str(uuid.uuid4())
    people = [str(uuid.uuid4()) for _ in range(8)]
    await _one_by_one(
        conn,
        event_id,
        f.event(event_id, organiser, tables=4),
        *(f.registered(event_id, p, "k" * 64) for p in people),
        *(f.approved(event_id, p) for p in people),
    )
    # Each person in three meetings at most: all fit (5 slots, 4 tables).
    pairs = [(people[n % 8], people[(n + 3) % 8]) for n in range(12)]
    meetings = [f.accepted(event_id, f"m{n:02d}", a, b) for n, (a, b) in enumerate(pairs)]

    await _accept_run(conn, event_id, *meetings[:3])
    first = _kept(event_id)
    await _accept_run(conn, event_id, *meetings[3:5])
    assert _kept(event_id) is first  # nothing else changed: kept and grown
    assert len(await _check(conn, event_id)) == 5

    # A run that rolls back: its placements are not in the tables, so not in the next run.
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await bursts.BATCH_HANDLERS[ACCEPTED](
                conn, [envelope_of(event_id, m) for m in meetings[5:8]]
            )
            raise RuntimeError("the batch fails after placing")
    await _accept_run(conn, event_id, *meetings[5:8])
    after_rollback = _kept(event_id)
    assert after_rollback is not first
    assert len(await _check(conn, event_id)) == 8

    # Another writer of the agenda (a cancelled meeting gives its slot up).
    a, b = pairs[0]
    await _one_by_one(conn, event_id, f.cancelled(event_id, "m00", a, b))
    await _accept_run(conn, event_id, meetings[8])
    assert _kept(event_id) is not after_rollback
    placed = await _check(conn, event_id)
    assert "m00" not in placed and "m08" in placed

    # A newcomer registers (the attendees' rows change, no one's times): the kept placer
    # serves, with the attendees read again (it knows the newcomer).
    before = _kept(event_id)
    newcomer = str(uuid.uuid4())
    await _one_by_one(
        conn, event_id, f.registered(event_id, newcomer, "k" * 64), f.approved(event_id, newcomer)
    )
    await _accept_run(
        conn,
        event_id,
        f.accepted(event_id, "m-new", newcomer, people[7]),
        meetings[8],  # a repeat: placed already, nothing happens
        meetings[9],
    )
    assert _kept(event_id) is before
    assert newcomer in bursts._PLACERS[event_id][1].attendees
    assert {"m-new", "m09"} <= await _check(conn, event_id)

    # A known attendee's times change (now remote: online meetings only, no table):
    # the compiled agenda holds the old ones, so the agenda is read afresh.
    remote = f.registered(event_id, people[1], "k" * 64, remote=True).profile
    await _one_by_one(
        conn, event_id, ProfileUpdated(registration_id=people[1], event_id=event_id, profile=remote)
    )
    await _accept_run(conn, event_id, meetings[10])
    assert _kept(event_id) is not before
    assert bursts._PLACERS[event_id][1].attendees[people[1]].attendance == "remote"
    assert "m10" in await _check(conn, event_id)
