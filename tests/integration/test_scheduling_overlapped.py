"""A run of accepts placed in chunks, each chunk's writes on the connection while the next
chunk is placed (`bursts.place_overlapped`), against real PostgreSQL: the same events,
versions, places and causes as the accepts one by one; a write is in flight while the
next chunk is decided; and a failure while a write is in flight leaves the connection
free for the rollback."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from services.scheduling import bursts, handlers
from services.scheduling.domain import AgendaMeeting
from services.scheduling.placer import Placer
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingAccepted
from shared.envelope import Envelope
from tests.integration.scheduling_support import agenda_rows, conn, envelope_of
from tests.unit.scheduling_service import factories as f

pytestmark = pytest.mark.integration
__all__ = ["conn"]  # the fixture, used by name
ACCEPTED = MeetingAccepted.ce_type()


async def _event_with_accepts(
    conn: asyncpg.Connection, tag: str
) -> tuple[str, list[tuple[Envelope, EventPayload]]]:
    """A brokerage event (5 slots, 3 tables) with ten participants registered, and
    fifteen accepts among them (some find no place): not applied yet."""
    event_id = str(uuid.uuid4())
    people = [f"{tag}-p{n}" for n in range(10)]
    setup = [
        f.event(event_id, str(uuid.uuid4()), tables=3),
        *(f.registered(event_id, p, "k" * 64) for p in people),
        *(f.approved(event_id, p) for p in people),
    ]
    async with conn.transaction():
        for payload in setup:
            envelope, _ = envelope_of(event_id, payload)
            await handlers.HANDLERS[payload.ce_type()](conn, envelope, payload)
    pairs = [(people[n % 10], people[(n * 3 + 1) % 10]) for n in range(15)]
    accepts = [
        envelope_of(event_id, f.accepted(event_id, f"{tag}-m{n:02d}", a, b))
        for n, (a, b) in enumerate(pairs)
        if a != b
    ]
    return event_id, accepts


async def test_a_run_placed_in_chunks_records_what_the_accepts_one_by_one_do(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bursts, "CHUNK", 4)
    chunked, chunked_accepts = await _event_with_accepts(conn, "c")
    alone, alone_accepts = await _event_with_accepts(conn, "a")

    async with conn.transaction():
        await bursts.BATCH_HANDLERS[ACCEPTED](conn, chunked_accepts)
    for envelope, payload in alone_accepts:
        async with conn.transaction():
            await handlers.HANDLERS[ACCEPTED](conn, envelope, payload)

    causes = {e.id: n for n, (e, _) in enumerate(chunked_accepts)}
    causes.update({e.id: n for n, (e, _) in enumerate(alone_accepts)})
    mine = [(*r[:5], causes[r[5]]) for r in await agenda_rows(conn, chunked, "c")]
    theirs = [(*r[:5], causes[r[5]]) for r in await agenda_rows(conn, alone, "a")]
    assert len(mine) == len(chunked_accepts) > 3 * bursts.CHUNK
    assert mine == theirs
    tables = await conn.fetch(
        "SELECT substr(meeting_id, 2) AS m, status, slot_id, table_no FROM meetings"
        " WHERE event_id = $1 ORDER BY 1",
        chunked,
    )
    assert [tuple(r) for r in tables] == [
        tuple(r)
        for r in await conn.fetch(
            "SELECT substr(meeting_id, 2) AS m, status, slot_id, table_no FROM meetings"
            " WHERE event_id = $1 ORDER BY 1",
            alone,
        )
    ]


async def test_the_next_chunk_is_placed_while_the_writes_before_it_are_on_the_connection(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bursts, "CHUNK", 4)
    _, accepts = await _event_with_accepts(conn, "w")
    log: list[str] = []
    decide_all, send = Placer.decide_all, handlers.AgendaWrite.send

    def logged_decide(
        self: Placer, targets: Sequence[AgendaMeeting], ignore: frozenset[str] = frozenset()
    ) -> list[EventPayload]:
        log.append("decide")
        return decide_all(self, targets, ignore)

    async def logged_send(self: handlers.AgendaWrite, connection: asyncpg.Connection) -> None:
        log.append("write")
        await send(self, connection)
        log.append("written")

    monkeypatch.setattr(Placer, "decide_all", logged_decide)
    monkeypatch.setattr(handlers.AgendaWrite, "send", logged_send)
    async with conn.transaction():
        await bursts.BATCH_HANDLERS[ACCEPTED](conn, accepts)

    assert log.count("decide") == log.count("write") >= 3
    # Each chunk after the first is decided between the write before it starting and
    # ending: the server stores one chunk while this process places the next.
    assert log[:4] == ["decide", "write", "decide", "written"]
    assert log.count("written") == log.count("write")


async def test_a_failure_while_a_write_is_on_the_connection_leaves_it_free_to_roll_back(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bursts, "CHUNK", 4)
    event_id, accepts = await _event_with_accepts(conn, "f")
    decide_all = Placer.decide_all
    calls = 0

    def failing_second(
        self: Placer, targets: Sequence[AgendaMeeting], ignore: frozenset[str] = frozenset()
    ) -> list[EventPayload]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first chunk's writes are on the connection now
            raise RuntimeError("placing failed")
        return decide_all(self, targets, ignore)

    monkeypatch.setattr(Placer, "decide_all", failing_second)
    with pytest.raises(RuntimeError, match="placing failed"):
        async with conn.transaction():
            await bursts.BATCH_HANDLERS[ACCEPTED](conn, accepts)
    # Rolled back whole (no "another operation is in progress"), the connection usable.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1", handlers.stream_of(event_id)
        )
        == 0
    )
    assert await conn.fetchval("SELECT count(*) FROM meetings WHERE event_id = $1", event_id) == 0
