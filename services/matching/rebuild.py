"""`python -m services.matching.rebuild [--switch]`: matching's projections (participants,
meeting requests, access) rebuilt from its event store and registration's events.

Recommendation lists and sentence vectors are not rebuilt here: they are computed by
the model from the participants, not a fold of events. The rebuilt participants reuse
the stored vectors (`participant_vectors`, kept with the texts they were computed
from): when the embedding worker starts it queues only participants whose current
texts have none and brings approved participants without a list back into the lists
(`recommendations.worker.recover`); nothing is embedded twice."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from services.matching import projection
from shared.access import projection as access_projection
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import combine
from shared.rebuild import ACCESS_TABLES, Plan, run
from shared.settings import MatchingSettings, database_url


async def _own(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await projection.apply(conn, event)


PLAN = Plan(
    service="matching",
    migrations=Path(__file__).parent / "migrations",
    tables=("brokerage_events", "participants", "meeting_requests", *ACCESS_TABLES),
    own=_own,
    topics=("registration.events",),
    consumer="matching",
    consumed=combine(access_projection.HANDLERS, projection.HANDLERS),
)


def main() -> int:
    settings = MatchingSettings()
    return run(PLAN, registry(), sys.argv[1:], settings, database_url(settings, PLAN.service))


if __name__ == "__main__":
    sys.exit(main())
