"""A registration is written in one statement (`shared.statements.Together`): its key,
event, outbox row and projection rows; a second event that changes a row the first
wrote (the support office's assignment) follows in a statement of its own."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from asyncpg.connection import LoggedQuery

from services.registration import handlers
from services.registration.bodies import Profile, Representative
from shared.access.policy import Principal, Role
from shared.contracts.registration import OrganisationType
from shared.db import migrate
from shared.errors import Conflict, RuleViolation
from tests.integration.support import FreshDatabase

pytestmark = pytest.mark.integration

MIGRATIONS = Path(handlers.__file__).parent / "migrations"
PEOPLE = [Representative(name="Ada", email="ada@example.org")]


async def _event(database: FreshDatabase) -> str:
    await migrate(database.pool, MIGRATIONS)
    day = date.today() + timedelta(days=30)
    async with database.pool.acquire() as conn, conn.transaction():
        organiser = await handlers.register_organiser(conn, "Org", None)
        created = await handlers.create_event(
            conn,
            Principal(Role.ORGANISER, organiser["organiser_id"]),
            {
                "name": "Fair",
                "venue": "Hall",
                "time_zone": "Europe/Berlin",
                "days": [day],
                "sessions": [{"start": "09:00", "end": "12:00"}],
                "slot_minutes": 30,
                "tables": 10,
                "meeting_types": ["Business2Business"],
                "registration_deadline": datetime.now(UTC) + timedelta(days=10),
                "support_offices": [{"office_id": "office-de", "name": "DE", "countries": ["DE"]}],
            },
            None,
        )
    return str(created["event_id"])


async def _register(
    database: FreshDatabase,
    event_id: str,
    name: str,
    country: str,
    statements: list[str],
    transaction: bool = True,
) -> str:
    body = Profile(
        organisation_type=OrganisationType.BUSINESS,
        sectors=["biotech"],
        name=name,
        country=country,
        representatives=PEOPLE,
    )
    profile, representatives = body.split()

    def note(logged: LoggedQuery) -> None:
        statements.append(logged.query)

    async with database.pool.acquire() as conn:
        conn.add_query_logger(note)
        try:
            async with conn.transaction() if transaction else contextlib.nullcontext():
                answer = await handlers.register_organisation(
                    conn, event_id, profile, representatives, None
                )
        finally:
            conn.remove_query_logger(note)
    return str(answer["registration_id"])


def _writes(statements: list[str]) -> list[str]:
    return [s for s in statements if not s.startswith(("SELECT", "BEGIN", "COMMIT"))]


async def test_a_registration_is_one_statement_and_every_row_is_there(
    database: FreshDatabase,
) -> None:
    event_id = await _event(database)
    statements: list[str] = []
    registration_id = await _register(database, event_id, "Acme", "FR", statements)
    assert len(_writes(statements)) == 1, statements
    async with database.pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM subject_keys WHERE subject_id = $1", registration_id
        )
        stream = f"registration-{registration_id}"
        assert await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream) == 1
        assert await conn.fetchval(
            "SELECT count(*) FROM outbox o JOIN events e ON o.event_id = e.event_id::text"
            " WHERE e.stream_id = $1",
            stream,
        )
        row = await conn.fetchrow(
            "SELECT r.name, r.status, a.organisation_name, a.office_id, k.role"
            " FROM registrations r JOIN access_registrations a USING (registration_id)"
            " JOIN api_keys k ON k.subject_id = r.registration_id WHERE registration_id = $1",
            registration_id,
        )
    assert row is not None
    assert dict(row) == {
        "name": "Acme",
        "status": "pending",
        "organisation_name": "Acme",
        "office_id": None,
        "role": "organisation",
    }


async def test_a_support_office_assignment_sees_the_row_it_changes(
    database: FreshDatabase,
) -> None:
    event_id = await _event(database)
    statements: list[str] = []
    registration_id = await _register(database, event_id, "Bayer", "DE", statements)
    assert len(_writes(statements)) == 2, statements  # the office's update after the rest
    async with database.pool.acquire() as conn:
        office = await conn.fetchval(
            "SELECT office_id FROM access_registrations WHERE registration_id = $1",
            registration_id,
        )
        events = await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1", f"registration-{registration_id}"
        )
    assert (office, events) == ("office-de", 2)


async def test_a_second_registration_of_the_same_name_writes_nothing(
    database: FreshDatabase,
) -> None:
    event_id = await _event(database)
    await _register(database, event_id, "Acme", "FR", [])
    async with database.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM events")
    with pytest.raises(Conflict):
        await _register(database, event_id, "Acme", "FR", [])
    async with database.pool.acquire() as conn:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events) AS events,"
            " (SELECT count(*) FROM subject_keys) AS keys,"
            " (SELECT count(*) FROM access_registrations) AS access"
        )
    assert counts is not None
    assert dict(counts) == {"events": before, "keys": 1, "access": 1}


async def test_outside_a_transaction_one_statement_needs_none_and_two_open_one(
    database: FreshDatabase,
) -> None:
    """The API runs a registration outside a transaction (`run_command(atomic=True)`)."""
    event_id = await _event(database)
    alone: list[str] = []
    await _register(database, event_id, "Acme", "FR", alone, transaction=False)
    assert [s.split()[0] for s in alone] == ["SELECT", "WITH"]
    assigned: list[str] = []
    registration_id = await _register(database, event_id, "Bayer", "DE", assigned, False)
    # The event's settings are kept since the first read: no read, and the check that
    # the event is unchanged joins the office's update.
    assert [s.split()[0].rstrip(";") for s in assigned] == ["BEGIN", "WITH", "WITH", "COMMIT"]
    assert "UPDATE" in assigned[2] and "stream_still_at" in assigned[2]
    async with database.pool.acquire() as conn:
        office = await conn.fetchval(
            "SELECT office_id FROM access_registrations WHERE registration_id = $1",
            registration_id,
        )
    assert office == "office-de"


async def test_settings_kept_save_the_read_and_a_change_since_is_seen(
    database: FreshDatabase,
) -> None:
    """Outside a transaction a registration decides on the event's settings kept from an
    earlier read, and its statement checks that the event has had no event since
    (`eventstore.STILL_AT`); when it has, nothing is written and the command reads the
    event and decides again."""
    event_id = await _event(database)
    first: list[str] = []
    await _register(database, event_id, "Acme", "FR", first, transaction=False)
    assert [s.split()[0] for s in first] == ["SELECT", "WITH"]  # read, then kept
    kept: list[str] = []
    await _register(database, event_id, "Bolt", "FR", kept, transaction=False)
    assert [s.split()[0] for s in kept] == ["WITH"], kept
    assert "stream_still_at" in kept[0]

    # An organiser closes registration, in a transaction (as another process would: this
    # process's kept settings do not learn of it).
    async with database.pool.acquire() as conn, conn.transaction():
        await handlers.change_event_settings(
            conn,
            event_id,
            {"registration_deadline": datetime.now(UTC) - timedelta(hours=1)},
            None,
        )
    async with database.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM events")
    after_change: list[str] = []
    with pytest.raises(RuleViolation) as refused:
        await _register(database, event_id, "Crux", "FR", after_change, transaction=False)
    assert refused.value.field == "registration_deadline"
    # The statement on the kept settings failed (nothing written), then the read.
    assert [s.split()[0] for s in after_change] == ["WITH", "SELECT"], after_change
    async with database.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == before
        assert await conn.fetchval("SELECT count(*) FROM registrations") == 2


async def test_in_a_transaction_the_event_is_read_as_before(database: FreshDatabase) -> None:
    """With an Idempotency-Key the command runs in a transaction: a failed statement would
    abort it, so the settings are read first, as they always were."""
    event_id = await _event(database)
    await _register(database, event_id, "Acme", "FR", [], transaction=False)  # kept now
    inside: list[str] = []
    await _register(database, event_id, "Bolt", "FR", inside, transaction=True)
    assert [s.split()[0] for s in inside if s.split()[0] in ("SELECT", "WITH")] == [
        "SELECT",
        "WITH",
    ]
    assert not any("stream_still_at" in s for s in inside)
