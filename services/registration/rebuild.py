"""`python -m services.registration.rebuild [--switch]`: registration's projections rebuilt
from its event store and from matching's events (accepted meetings open contacts),
compared with the live ones, and optionally switched in (see `shared.rebuild`)."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg

from services.registration import addresses, contacts, projection
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.rebuild import ACCESS_TABLES, Plan, run
from shared.rebuild_own import payload_only
from shared.settings import RegistrationSettings, database_url

# The live sealing keys, for the index of addresses (`addresses.StoredKeys`).
_KEYS = addresses.StoredKeys()


@payload_only
async def _own(conn: asyncpg.Connection, _: Envelope, event: EventPayload) -> None:
    await projection.apply(conn, event, _KEYS)


PLAN = Plan(
    service="registration",
    migrations=Path(__file__).parent / "migrations",
    tables=(
        "organisers",
        "brokerage_events",
        "registrations",
        "side_programme",
        "co_organisers",
        "meeting_contacts",
        "sign_in_links",
        "registration_addresses",
        *ACCESS_TABLES,
    ),
    own=_own,
    topics=("matching.events",),
    consumer="registration",
    consumed=contacts.HANDLERS,
    inserts=contacts.INSERTS,
    volatile={"co_organisers": ("removed_at",), "sign_in_links": ("used_at",)},
    start=_KEYS.forget,
    preload=_KEYS.load,
)


def main() -> int:
    settings = RegistrationSettings()
    addresses.configure(settings.registration_link_secret)
    return run(PLAN, registry(), sys.argv[1:], settings, database_url(settings, PLAN.service))


if __name__ == "__main__":
    sys.exit(main())
