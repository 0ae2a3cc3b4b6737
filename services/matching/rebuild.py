"""`python -m services.matching.rebuild [--switch]`: matching's projections (participants,
meeting requests, access) rebuilt from its event store and registration's events, and
the recommendation lists computed again from them.

The lists are not a fold of events but a function of the approved participants, their
stored sentence vectors (`participant_vectors`, kept with the texts they were computed
from, not a projection: the model is not run again), the event's meeting types and the
open meeting requests: every event's lists are computed from scratch on the rebuilt
tables (`recommendations.handlers.rebuild_event`). The live lists are kept
incrementally, and the scoring makes that exact (`recommend.scoring._exact`: the same
scores and order, ties included), so the two compare row by row. They differ while live
is catching up: vectors landed but not yet brought into the lists by the embedding worker
(which the rebuild's locks do not hold back), or requests whose events the pair
subscription on `matching.events` has not applied yet.
"""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from services.matching import projection
from services.matching.recommendations import handlers as recommendation_handlers
from shared.access import projection as access_projection
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import combine
from shared.rebuild import ACCESS_TABLES, Plan, run
from shared.rebuild_own import payload_only
from shared.settings import MatchingSettings, database_url


async def _lists(conn: asyncpg.Connection) -> None:
    """Every event's recommendation lists from the rebuilt tables and the live vectors."""
    await conn.execute("INSERT INTO participant_vectors SELECT * FROM public.participant_vectors")
    for event_id in await conn.fetch("SELECT event_id FROM brokerage_events ORDER BY event_id"):
        await recommendation_handlers.rebuild_event(conn, event_id["event_id"])


@payload_only
async def _own(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await projection.apply(conn, event)


PLAN = Plan(
    service="matching",
    migrations=Path(__file__).parent / "migrations",
    tables=(
        "brokerage_events",
        "participants",
        "meeting_requests",
        "recommendation_lists",
        *ACCESS_TABLES,
    ),
    own=_own,
    topics=("registration.events",),
    consumer="matching",
    consumed=combine(access_projection.HANDLERS, projection.HANDLERS),
    finish=_lists,
)


def main() -> int:
    settings = MatchingSettings()
    return run(PLAN, registry(), sys.argv[1:], settings, database_url(settings, PLAN.service))


if __name__ == "__main__":
    sys.exit(main())
