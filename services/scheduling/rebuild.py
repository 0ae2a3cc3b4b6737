"""`python -m services.scheduling.rebuild [--switch]`: scheduling's projections (event grids,
attendees, meetings, time windows, publications, access) rebuilt from its agenda streams
and from registration's and matching's events, compared with the live ones, and
optionally switched in (see `shared.rebuild`).

Only projection handlers are replayed: placements, moves, releases, locks and
re-optimisations are decisions already recorded as scheduling's own events, so the
solver does not run again."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from services.scheduling import projection
from shared.access import projection as access_projection
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import combine
from shared.rebuild import ACCESS_TABLES, Plan, run
from shared.rebuild_own import payload_only
from shared.settings import SchedulingSettings, database_url


@payload_only
async def _own(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await projection.AGENDA.apply(conn, event)


PLAN = Plan(
    service="scheduling",
    migrations=Path(__file__).parent / "migrations",
    tables=(
        "event_grids",
        "attendees",
        "meetings",
        "slot_rule_changes",
        "agenda_publications",
        *ACCESS_TABLES,
    ),
    own=_own,
    topics=("registration.events", "matching.events"),
    consumer="scheduling",
    consumed=combine(access_projection.HANDLERS, projection.HANDLERS),
    # Placed by the own events, made (accepted) and cancelled by matching's.
    shared_tables=("meetings",),
)


def main() -> int:
    settings = SchedulingSettings()
    return run(PLAN, registry(), sys.argv[1:], settings, database_url(settings, PLAN.service))


if __name__ == "__main__":
    sys.exit(main())
