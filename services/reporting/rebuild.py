"""`python -m services.reporting.rebuild [--switch]`: the read side rebuilt from the four
topics it consumes and from its own event store (attendance, feedback, outcomes,
invitation rounds), compared with the live tables (see `shared.rebuild`).

Dead letters are not rebuilt: they come from the dead-letter topics, not the events."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from services.reporting import dashboard_projection, history, projection, records
from shared.access import projection as access_projection
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import combine
from shared.inserts import Insert
from shared.rebuild import ACCESS_TABLES, Plan, run
from shared.settings import ReportingSettings, database_url


async def _own(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
    await records.apply(conn, event)
    await history.remember(conn, envelope)


PLAN = Plan(
    service="reporting",
    migrations=Path(__file__).parent / "migrations",
    tables=(
        "brokerage_events",
        "registrations",
        "meetings",
        "placements",
        "requests",
        "attendance",
        "not_held",
        "feedback",
        "outcomes",
        "side_programme",
        "notification_outcomes",
        "feedback_rounds",
        "history",
        *ACCESS_TABLES,
    ),
    own=_own,
    topics=projection.TOPICS,
    consumer="reporting",
    consumed=combine(
        access_projection.HANDLERS,
        projection.HANDLERS,
        dashboard_projection.HANDLERS,
    ),
    # History's row of each consumed event, straight into the fold (its live handler runs
    # the same statement): most of those events have no other handler here.
    every_record=Insert("history", history.REMEMBER, history.row_of),
    # Notification outcomes, one row per delivery, likewise (72,000 of the bench's 141,003).
    inserts=dashboard_projection.OUTCOME_INSERTS,
)


def main() -> int:
    settings = ReportingSettings()
    return run(PLAN, registry(), sys.argv[1:], settings, database_url(settings, PLAN.service))


if __name__ == "__main__":
    sys.exit(main())
