"""Registration's command handlers: load, decide (domain), append + project in one transaction.

Each handler runs on a connection already inside a transaction (see
`shared.idempotency.run_once`), so events, outbox rows, projection rows and
the idempotency record commit together.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.registration import domain, projection
from services.registration.domain import Registration
from shared import crypto, eventstore
from shared.access.policy import Grant, Principal, Relation
from shared.auth import new_api_key
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    BrokerageEventCreated,
    OrganisationProfile,
    OrganiserRegistered,
)
from shared.envelope import Envelope
from shared.errors import Conflict, Forbidden, NotFound, RuleViolation
from shared.statements import Together

PAYLOADS = registry()

Decision = domain.Decision


def _stream(kind: str, ident: str) -> str:
    return f"{kind}-{ident}"


async def record(
    conn: asyncpg.Connection,
    stream: str,
    expected: int,
    events: list[EventPayload],
    *,
    key: str,
    correlation_id: str | None,
) -> None:
    await eventstore.record(
        conn,
        stream,
        expected,
        events,
        key=key,
        correlation_id=correlation_id,
        project=projection.apply,
    )


async def load_event(conn: asyncpg.Connection, event_id: str) -> BrokerageEventCreated:
    """The event with its current settings."""
    return (await _load_event_stream(conn, event_id))[0]


# Brokerage events' current settings and the stream version they stand at, least
# recently used dropped first. A read still asks for the events after that version (an
# organiser's change, made by any process, comes in with it), but the events before are
# not parsed again. Kept only from reads outside a transaction: what they see is
# committed, so nothing kept can be rolled back.
_SETTINGS: OrderedDict[str, tuple[BrokerageEventCreated, int]] = OrderedDict()
SETTINGS_KEPT = 1024


def _kept_settings(event_id: str) -> tuple[BrokerageEventCreated, int] | None:
    """An event's settings kept from an earlier read, and their version (None: not kept)."""
    kept = _SETTINGS.get(event_id)
    if kept is not None:
        _SETTINGS.move_to_end(event_id)
    return kept


async def _load_event_stream(
    conn: asyncpg.Connection, event_id: str
) -> tuple[BrokerageEventCreated, int]:
    kept = _SETTINGS.get(event_id)
    known = kept[1] if kept is not None else 0
    stream = _stream("brokerage-event", event_id)
    events = await eventstore.load_events(conn, stream, PAYLOADS, after=known)
    if kept is not None and not events:
        _SETTINGS.move_to_end(event_id)
        return kept
    if not events:
        raise NotFound("brokerage event", event_id)
    current = (
        domain.current_settings([kept[0], *events] if kept else events),
        known + len(events),
    )
    if not conn.is_in_transaction():
        _SETTINGS[event_id] = current
        _SETTINGS.move_to_end(event_id)
        if len(_SETTINGS) > SETTINGS_KEPT:
            _SETTINGS.popitem(last=False)
    return current


async def load_co_organiser(conn: asyncpg.Connection, co_organiser_id: str) -> domain.CoOrganiser:
    stream = _stream("co-organiser", co_organiser_id)
    co_organiser = await eventstore.load_into(conn, stream, PAYLOADS, domain.CoOrganiser())
    if co_organiser.added is None:
        raise NotFound("co-organiser", co_organiser_id)
    return co_organiser


async def load_registration(conn: asyncpg.Connection, registration_id: str) -> Registration:
    stream = _stream("registration", registration_id)
    registration = await eventstore.load_into(conn, stream, PAYLOADS, Registration())
    if not registration.version:
        raise NotFound("registration", registration_id)
    return registration


# -- commands -----------------------------------------------------------------


async def register_organiser(
    conn: asyncpg.Connection, name: str, correlation_id: str | None
) -> dict[str, Any]:
    if not name.strip():
        raise RuleViolation("name", "must not be empty")
    organiser_id = str(uuid.uuid4())
    api_key, digest = new_api_key("org")
    event = OrganiserRegistered(organiser_id=organiser_id, name=name.strip(), api_key_digest=digest)
    await record(
        conn,
        _stream("organiser", organiser_id),
        0,
        [event],
        key=organiser_id,
        correlation_id=correlation_id,
    )
    return {"organiser_id": organiser_id, "name": event.name, "api_key": api_key}


async def create_event(
    conn: asyncpg.Connection,
    principal: Principal,
    definition: dict[str, Any],
    correlation_id: str | None,
) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    created = domain.check_new_event(
        BrokerageEventCreated(event_id=event_id, organiser_id=principal.id, **definition)
    )
    await record(
        conn,
        _stream("brokerage-event", event_id),
        0,
        [created],
        key=event_id,
        correlation_id=correlation_id,
    )
    return created.model_dump(mode="json")


async def change_event_settings(
    conn: asyncpg.Connection,
    event_id: str,
    changes: dict[str, Any],
    correlation_id: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    event, version = await _load_event_stream(conn, event_id)
    changed = domain.change_settings(event, changes, now=now or datetime.now(UTC))
    try:
        await record(
            conn,
            _stream("brokerage-event", event_id),
            version,
            [changed],
            key=event_id,
            correlation_id=correlation_id,
        )
    except eventstore.ConcurrencyConflict as exc:
        raise Conflict("event_id", "the event was changed meanwhile; reload and try again") from exc
    current = domain.current_settings([event, changed])
    return {**current.model_dump(mode="json"), "changed": changed.changed}


async def register_organisation(
    conn: asyncpg.Connection,
    event_id: str,
    profile: dict[str, Any],
    representatives: list[dict[str, Any]],
    correlation_id: str | None,
    now: datetime | None = None,
    grant: Grant | None = None,
    support_office: str | None = None,
) -> dict[str, Any]:
    kept = None if conn.is_in_transaction() else _kept_settings(event_id)
    if kept is not None:
        # Decided on the settings kept, recorded only if the event still stands at their
        # version (`eventstore.STILL_AT`, in the same statement): no read first.
        event, version = kept
        try:
            return await register_prepared(
                conn,
                event,
                profile,
                representatives,
                correlation_id,
                grant,
                support_office,
                now,
                still_at=(_stream("brokerage-event", event_id), version),
            )
        except asyncpg.PostgresError as exc:
            if not eventstore.stream_moved(exc):
                raise
            _SETTINGS.pop(event_id, None)  # an organiser changed it: read it and decide again
    event = await load_event(conn, event_id)
    return await register_prepared(
        conn, event, profile, representatives, correlation_id, grant, support_office, now
    )


@dataclass(frozen=True)
class NewRegistration:
    """A registration decided but not yet recorded: its events, sealing key and answer."""

    registration_id: str
    key: bytes
    events: list[EventPayload]
    answer: dict[str, Any]
    representatives: list[dict[str, Any]]  # as sealed in the events


def prepare_registration(
    event: BrokerageEventCreated,
    profile: dict[str, Any],
    representatives: list[dict[str, Any]],
    grant: Grant | None,
    support_office: str | None,
    now: datetime | None = None,
) -> NewRegistration:
    """Decide a registration for an event already loaded (no I/O: the import's many rows)."""
    # The event's organisers (or the admin) may register organisations after the deadline.
    by_organiser = grant is not None and grant.relation in (
        Relation.ADMIN,
        Relation.LEAD_ORGANISER,
        Relation.CO_ORGANISER,
    )
    registration_id = str(uuid.uuid4())
    key = crypto.new_key()
    sealed = crypto.seal(key, representatives, subject=registration_id)
    api_key, digest = new_api_key("reg")
    registered = domain.register(
        event,
        registration_id=registration_id,
        profile=OrganisationProfile(
            **profile,
            representatives_encrypted=sealed,
            representative_count=len(representatives),
        ),
        api_key_digest=digest,
        now=now or datetime.now(UTC),
        by_organiser=by_organiser,
    )
    # A co-organiser registering a participant registers it for its own office.
    if grant is not None and grant.relation is Relation.CO_ORGANISER:
        support_office = grant.office
    assigned = domain.office_for(event, registration_id, profile["country"], support_office)
    return NewRegistration(
        registration_id,
        key,
        [registered] if assigned is None else [registered, assigned],
        {
            "registration_id": registration_id,
            "event_id": event.event_id,
            "status": "pending",
            "support_office": assigned.office_id if assigned else None,
            "api_key": api_key,
        },
        representatives,
    )


async def record_registrations(
    conn: asyncpg.Connection,
    event_id: str,
    made: list[NewRegistration],
    correlation_id: str | None,
    still_at: tuple[str, int] | None = None,
) -> None:
    """Record new registrations: keys, events (one batch), outbox rows, projection.

    One registration (the API's command) is written in one statement where the
    projection allows (`shared.statements`): its key, events, outbox rows and rows of
    the projections are all new rows. `still_at` (stream, version), for one
    registration: written only if that stream still stands at that version (else
    `eventstore.stream_moved` is true of what is raised)."""
    together = Together(conn) if len(made) == 1 else None
    if still_at is not None and together is None:
        raise ValueError("still_at is checked in the statement of a single registration")
    writer = together.connection() if together is not None else conn
    await writer.executemany(
        "INSERT INTO subject_keys (subject_id, key) VALUES ($1, $2)",
        [(m.registration_id, m.key) for m in made],
    )
    streams = [
        (
            _stream("registration", m.registration_id),
            [
                Envelope.wrap(
                    e,
                    key=event_id,
                    subject=_stream("registration", m.registration_id),
                    correlation_id=correlation_id,
                )
                for e in m.events
            ],
        )
        for m in made
    ]
    try:
        # No savepoint needed: the refusal rolls the whole command back.
        await eventstore.append_new_streams(writer, streams)
        keys = {m.registration_id: m.key for m in made}

        async def made_keys(_: asyncpg.Connection, registration_id: str) -> bytes | None:
            return keys[registration_id]  # written above, maybe not sent yet

        opened = {m.registration_id: m.representatives for m in made}
        for m in made:
            for event in m.events:
                await projection.apply(writer, event, made_keys, opened)
        if together is not None:
            if still_at is not None:
                # Last: the statement's main query, which runs (a CTE that only reads
                # would not); it reads no table the parts write.
                await writer.execute(eventstore.STILL_AT, *still_at)
            await together.flush()
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("name", "this organisation is already registered for the event") from exc


async def register_prepared(
    conn: asyncpg.Connection,
    event: BrokerageEventCreated,
    profile: dict[str, Any],
    representatives: list[dict[str, Any]],
    correlation_id: str | None,
    grant: Grant | None,
    support_office: str | None,
    now: datetime | None = None,
    *,
    still_at: tuple[str, int] | None = None,
) -> dict[str, Any]:
    made = prepare_registration(event, profile, representatives, grant, support_office, now)
    await record_registrations(conn, event.event_id, [made], correlation_id, still_at)
    return made.answer


async def decide(
    conn: asyncpg.Connection,
    registration_id: str,
    decision: Decision,
    reason: str | None,
    correlation_id: str | None,
) -> dict[str, Any]:
    registration = await load_registration(conn, registration_id)
    event = domain.decide(registration, decision, reason)
    await record(
        conn,
        _stream("registration", registration_id),
        registration.version,
        [event],
        key=registration.event_id,
        correlation_id=correlation_id,
    )
    return {"registration_id": registration_id, "status": decision.status_after}


async def update_profile(
    conn: asyncpg.Connection,
    registration_id: str,
    profile: dict[str, Any],
    representatives: list[dict[str, Any]],
    correlation_id: str | None,
) -> dict[str, Any]:
    registration = await load_registration(conn, registration_id)
    event = await load_event(conn, registration.event_id)
    key = await _subject_key(conn, registration_id)
    if key is None:
        raise Conflict("registration", "personal data was erased")
    updated = domain.update_profile(
        registration,
        OrganisationProfile(
            **profile,
            representatives_encrypted=crypto.seal(key, representatives, subject=registration_id),
            representative_count=len(representatives),
        ),
        event,
    )
    await record(
        conn,
        _stream("registration", registration_id),
        registration.version,
        [updated],
        key=registration.event_id,
        correlation_id=correlation_id,
    )
    return {"registration_id": registration_id, "status": registration.status}


async def erase_personal_data(
    conn: asyncpg.Connection,
    registration_id: str,
    correlation_id: str | None,
) -> dict[str, Any]:
    registration = await load_registration(conn, registration_id)
    erased = domain.erase(registration)
    await conn.execute("DELETE FROM subject_keys WHERE subject_id = $1", registration_id)
    await record(
        conn,
        _stream("registration", registration_id),
        registration.version,
        [erased],
        key=registration.event_id,
        correlation_id=correlation_id,
    )
    return {"registration_id": registration_id, "erased": True}


async def _subject_key(conn: asyncpg.Connection, registration_id: str) -> bytes | None:
    key: bytes | None = await conn.fetchval(
        "SELECT key FROM subject_keys WHERE subject_id = $1", registration_id
    )
    return key


async def representatives_of(
    conn: asyncpg.Connection, registration_id: str, sealed: str
) -> list[dict[str, Any]] | None:
    """The decrypted contact details, or None once erased."""
    return opened_representatives(
        await _subject_key(conn, registration_id), registration_id, sealed
    )


def opened_representatives(
    key: bytes | None, registration_id: str, sealed: str
) -> list[dict[str, Any]] | None:
    """The contact details sealed with the registration's `key`, or None once erased."""
    try:
        value: list[dict[str, Any]] = crypto.open_sealed(key, sealed, subject=registration_id)
    except crypto.KeyErased:
        return None
    return value


# -- side programme -------------------------------------------------------------


async def add_side_programme_item(
    conn: asyncpg.Connection,
    event_id: str,
    definition: dict[str, Any],
    correlation_id: str | None,
) -> dict[str, Any]:
    event = await load_event(conn, event_id)
    item_id = str(uuid.uuid4())
    added = domain.add_side_programme_item(event, item_id=item_id, **definition)
    await record(
        conn,
        _stream("side-programme", item_id),
        0,
        [added],
        key=event_id,
        correlation_id=correlation_id,
    )
    return added.model_dump(mode="json")


async def join_side_programme(
    conn: asyncpg.Connection,
    grant: Grant,
    event_id: str,
    item_id: str,
    registration_id: str,
    correlation_id: str | None,
) -> dict[str, Any]:
    stream = _stream("side-programme", item_id)
    item = await eventstore.load_into(conn, stream, PAYLOADS, domain.SideProgrammeItem())
    if item.added is None or item.added.event_id != event_id:
        raise NotFound("side programme item", item_id)
    registration = await load_registration(conn, registration_id)
    if not grant.may_see(registration_id, registration.office_id):
        raise Forbidden("this key may not act for this registration")
    joined = domain.join_side_programme(item, registration)
    try:
        await record(
            conn,
            _stream("side-programme", item_id),
            item.version,
            [joined],
            key=event_id,
            correlation_id=correlation_id,
        )
    except eventstore.ConcurrencyConflict as exc:
        raise Conflict("item_id", "joined by someone else meanwhile; try again") from exc
    return joined.model_dump(mode="json")


# -- co-organisers and support offices ----------------------------------------------


async def add_co_organiser(
    conn: asyncpg.Connection,
    event_id: str,
    office_id: str,
    name: str,
    email: str | None,
    correlation_id: str | None,
) -> dict[str, Any]:
    event = await load_event(conn, event_id)
    co_organiser_id = str(uuid.uuid4())
    api_key, digest = new_api_key("coorg")
    added = domain.add_co_organiser(
        event,
        co_organiser_id=co_organiser_id,
        office_id=office_id,
        name=name,
        email=email,
        api_key_digest=digest,
    )
    await record(
        conn,
        _stream("co-organiser", co_organiser_id),
        0,
        [added],
        key=event_id,
        correlation_id=correlation_id,
    )
    return {
        "co_organiser_id": co_organiser_id,
        "event_id": event_id,
        "office_id": office_id,
        "name": added.name,
        "api_key": api_key,
    }


async def remove_co_organiser(
    conn: asyncpg.Connection, event_id: str, co_organiser_id: str, correlation_id: str | None
) -> dict[str, Any]:
    co_organiser = await load_co_organiser(conn, co_organiser_id)
    assert co_organiser.added is not None
    if co_organiser.added.event_id != event_id:
        raise NotFound("co-organiser", co_organiser_id)
    removed = domain.remove_co_organiser(co_organiser)
    await record(
        conn,
        _stream("co-organiser", co_organiser_id),
        co_organiser.version,
        [removed],
        key=event_id,
        correlation_id=correlation_id,
    )
    return {"co_organiser_id": co_organiser_id, "removed": True}


async def reassign_office(
    conn: asyncpg.Connection, registration_id: str, office_id: str, correlation_id: str | None
) -> dict[str, Any]:
    registration = await load_registration(conn, registration_id)
    event = await load_event(conn, registration.event_id)
    assigned = domain.reassign_office(event, registration, office_id)
    await record(
        conn,
        _stream("registration", registration_id),
        registration.version,
        [assigned],
        key=registration.event_id,
        correlation_id=correlation_id,
    )
    return {"registration_id": registration_id, "support_office": office_id}
