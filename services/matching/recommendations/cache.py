"""The participants an event's last change left, kept in this process by state token,
and the per-event lock that serialises changes (`recommendation_state`)."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Sequence

import asyncpg

from services.matching.recommend.profiles import Participant
from services.matching.recommend.scoring import Ranker
from services.matching.recommendations import store


class States:
    """The last few events' participants as this process left them, by state token.

    Every change to an event's lists writes a new random token in
    `recommendation_state` (in the same transaction) and keeps the participants
    here under it. A later change that reads the same token from the database
    uses them instead of loading thousands of rows again; any other token (a
    rolled-back transaction, another instance's change) means load afresh.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._by_event: OrderedDict[str, tuple[str, dict[str, Participant], Ranker | None]] = (
            OrderedDict()
        )

    def get(self, event_id: str, token: str | None) -> dict[str, Participant] | None:
        found = self._by_event.get(event_id)
        if found is None or token is None or found[0] != token:
            return None
        self._by_event.move_to_end(event_id)
        return dict(found[1])

    def ranker(self, event_id: str, token: str | None) -> Ranker | None:
        """The ranker the change that wrote `token` used, if it kept one."""
        found = self._by_event.get(event_id)
        if found is None or token is None or found[0] != token:
            return None
        return found[2]

    def put(
        self,
        event_id: str,
        token: str,
        participants: dict[str, Participant],
        ranker: Ranker | None = None,
    ) -> None:
        self._by_event[event_id] = (token, participants, ranker)
        self._by_event.move_to_end(event_id)
        while len(self._by_event) > self.size:
            self._by_event.popitem(last=False)

    def clear(self) -> None:
        self._by_event.clear()


states = States()


async def lock(conn: asyncpg.Connection, event_id: str) -> str | None:
    """Lock the event's recommendation state row (serialises its changes); its token."""
    await conn.execute(
        "INSERT INTO recommendation_state (event_id, token) VALUES ($1, NULL)"
        " ON CONFLICT (event_id) DO NOTHING",
        event_id,
    )
    token: str | None = await conn.fetchval(
        "SELECT token FROM recommendation_state WHERE event_id = $1 FOR UPDATE", event_id
    )
    return token


async def participants_of(
    conn: asyncpg.Connection, event_id: str, token: str | None
) -> dict[str, Participant]:
    cached = states.get(event_id, token)
    if cached is not None:
        return cached
    return await store.load_participants(conn, event_id, in_lists_only=True)


async def ranker_for(
    conn: asyncpg.Connection,
    event_id: str,
    token: str | None,
    participants: dict[str, Participant],
    among: Sequence[str] | None = None,
) -> Ranker:
    """The event's ranker over `participants`, reusing the arrays of the one the last
    change kept under `token` when it was made from the same participants (a run of
    meeting requests changes only who is engaged with whom). `among`: only these
    participants' lists will be asked of it (`store.ranker_of`)."""
    return await store.ranker_of(
        conn, event_id, participants, states.ranker(event_id, token), among
    )


async def save(
    conn: asyncpg.Connection,
    event_id: str,
    participants: dict[str, Participant],
    ranker: Ranker | None = None,
) -> None:
    token = uuid.uuid4().hex
    await conn.execute(
        "UPDATE recommendation_state SET token = $2, changed_at = now() WHERE event_id = $1",
        event_id,
        token,
    )
    states.put(event_id, token, participants, ranker)


async def warm_up(pool: asyncpg.Pool) -> list[str]:
    """Make the first change after a start as fast as the later ones.

    Runs the sentence model once (its first call allocates its buffers) and loads
    the participants of the events whose lists changed most recently into `states`
    under their current tokens; returns those events' ids. A change made meanwhile
    by another process writes a new token, so a stale preload is never used.
    """
    await asyncio.to_thread(store.text_encoder(), ["warm up"])
    rows = await pool.fetch(
        "SELECT event_id FROM recommendation_state WHERE token IS NOT NULL"
        " ORDER BY changed_at DESC LIMIT $1",
        states.size,
    )
    for row in reversed(rows):  # the most recent last, so it stays longest
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            token = await conn.fetchval(
                "SELECT token FROM recommendation_state WHERE event_id = $1", row["event_id"]
            )
            participants = await store.load_participants(conn, row["event_id"], in_lists_only=True)
        states.put(row["event_id"], token, participants)
    return [r["event_id"] for r in rows]


# -- applying changes -------------------------------------------------------------
