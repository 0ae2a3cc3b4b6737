"""`python -m services.notification.rebuild [--switch]`: notification's projections rebuilt
from its event store (deliveries, preferences, webhook endpoints) and from the four topics
it consumes (recipients, brokerage events, co-organisers, meetings' calendar state, access).

The live consumer's notice handlers are reactions: they decided the deliveries, and
those decisions (`NotificationQueued`) are in the event store, so only the projection
handlers of the consumed events are replayed. Compared row by row except the work
state (see `ledger`): `deliveries.sent_at` and the columns the clock fills by default
(`next_attempt_at`, `created_at`, `updated_at`). The webhook endpoints' keys
(`webhook_keys`) are not a projection: the rebuilt `webhook_endpoints` holds the same
sealed URLs and secrets, opened with the live keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from services.notification import bootstrap, projection
from services.notification.ledger import OWN
from shared.access import projection as access_projection
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import combine
from shared.rebuild import ACCESS_TABLES, Plan, run
from shared.rebuild_own import payload_only
from shared.settings import NotificationSettings, database_url

# The meetings' calendar state, folded in memory as the rebuild replays it.
_MEETINGS = projection.MeetingFold()


@payload_only
async def _own(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await OWN.apply(conn, event)


PLAN = Plan(
    service="notification",
    migrations=Path(__file__).parent / "migrations",
    tables=(
        "deliveries",
        "preferences",
        "webhook_endpoints",
        "recipients",
        "brokerage_events",
        "co_organisers",
        "meetings",
        *ACCESS_TABLES,
    ),
    own=_own,
    topics=bootstrap.TOPICS,
    consumer=bootstrap.NAME,
    consumed=combine(access_projection.HANDLERS, projection.HANDLERS, _MEETINGS.handlers),
    volatile={"deliveries": ("sent_at",)},
    start=_MEETINGS.forget,
)


def main() -> int:
    settings = NotificationSettings()
    return run(PLAN, registry(), sys.argv[1:], settings, database_url(settings, PLAN.service))


if __name__ == "__main__":
    sys.exit(main())
