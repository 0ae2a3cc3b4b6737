"""A burst of registrations that meetings wait for (accepted before their participants'
registrations reached scheduling) is placed as one run (`bursts.registrations`): the
same placements, in the same order, each caused by the same registration, as the
registrations one by one, with the agenda read once instead of once per registration
(real PostgreSQL)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from services.scheduling import bursts, handlers
from shared.contracts.base import EventPayload
from shared.contracts.registration import BusinessRegistered
from shared.envelope import Envelope
from tests.integration.scheduling_support import agenda_rows, conn, envelope_of
from tests.unit.scheduling_service import factories as f

pytestmark = pytest.mark.integration
__all__ = ["conn"]  # the fixture, used by name


async def _one_by_one(conn: asyncpg.Connection, run: list[tuple[Envelope, EventPayload]]) -> None:
    for envelope, payload in run:
        async with conn.transaction():
            await handlers.HANDLERS[payload.ce_type()](conn, envelope, payload)


async def _waiting_event(
    conn: asyncpg.Connection, tag: str
) -> tuple[str, list[tuple[Envelope, EventPayload]]]:
    """An event whose six known participants have meetings placed, and whose meetings
    with four newcomers wait for them; and the burst of registrations (the newcomers',
    and a known participant's again) not applied yet."""
    event_id = str(uuid.uuid4())
    known = [f"{tag}-p{n}" for n in range(6)]
    newcomers = [f"{tag}-n{n}" for n in range(4)]
    await _one_by_one(
        conn,
        [
            envelope_of(event_id, p)
            for p in (
                f.event(event_id, str(uuid.uuid4()), tables=3),
                *(f.registered(event_id, p, "k" * 64) for p in known),
                *(f.approved(event_id, p) for p in known),
            )
        ],
    )
    pairs = [(known[n], known[(n + 1) % 6]) for n in range(6)]
    pairs += [(newcomers[n % 4], known[n % 6]) for n in range(8)]
    pairs += [(newcomers[0], newcomers[1]), (newcomers[2], newcomers[3])]
    await _one_by_one(
        conn,
        [
            envelope_of(event_id, f.accepted(event_id, f"{tag}-m{n:02d}", a, b))
            for n, (a, b) in enumerate(pairs)
        ],
    )
    burst = [f.registered(event_id, n, "k" * 64) for n in (newcomers[1], newcomers[0])]
    burst += [f.registered(event_id, known[2], "k" * 64)]  # known already
    burst += [f.registered(event_id, n, "k" * 64) for n in newcomers[2:]]
    return event_id, [envelope_of(event_id, p) for p in burst]


async def test_a_burst_that_meetings_wait_for_places_them_as_the_registrations_one_by_one(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    batched, batched_burst = await _waiting_event(conn, "b")
    alone, alone_burst = await _waiting_event(conn, "a")
    placed_before = len(await agenda_rows(conn, batched, "b"))

    loads = 0
    load_placer = handlers.load_placer

    async def counted(connection: asyncpg.Connection, grid: Any) -> Any:
        nonlocal loads
        loads += 1
        return await load_placer(connection, grid)

    monkeypatch.setattr(handlers, "load_placer", counted)
    async with conn.transaction():
        await bursts.BATCH_HANDLERS[BusinessRegistered.ce_type()](conn, batched_burst)
    assert loads <= 1  # the agenda read once for the burst (one by one: once each)
    await _one_by_one(conn, alone_burst)

    causes = {e.id: n for n, (e, _) in enumerate(batched_burst)}
    causes.update({e.id: n for n, (e, _) in enumerate(alone_burst)})
    correlations = {e.correlation_id: n for n, (e, _) in enumerate(batched_burst)}
    correlations.update({e.correlation_id: n for n, (e, _) in enumerate(alone_burst)})

    def placements(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(*r[:5], causes.get(r[5]), correlations.get(r[6])) for r in rows[placed_before:]]

    mine = placements(await agenda_rows(conn, batched, "b"))
    theirs = placements(await agenda_rows(conn, alone, "a"))
    assert len(mine) == 10  # every waiting meeting decided
    assert {r[5] for r in mine} == {0, 1, 3, 4}  # not by the known participant's repeat
    assert mine == theirs
    pending = "SELECT count(*) FROM meetings WHERE event_id = $1 AND status = 'pending'"
    assert await conn.fetchval(pending, batched) == 0
