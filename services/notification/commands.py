"""Notification's commands from its API: preferences and webhook endpoints, as events.

A recipient's preferences are recorded as events in `preferences-<registration id>`,
an organiser's webhook endpoint in `webhook-<endpoint id>` (`endpoints`); both are
projected by `ledger` (`preferences`, `webhook_endpoints`).

The endpoint's events are published on `notification.events` like the others, with the
URL and the signing secret sealed: the history (reporting) can tell who registered or
removed which endpoint and when, while only notification, which holds the endpoint's key,
can read where it points and sign for it. Keeping them unpublished would hide that
history and protect nothing more: the store's copy would have to be sealed all the same
(a database dump, a rebuild schema), and removal destroying the key shreds every copy at
once, on the topic as in the store.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from services.notification import endpoints
from services.notification.ledger import OWN, preferences_stream
from shared import crypto, eventstore
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.notification import PreferencesSet, RecipientUnsubscribed
from shared.db import advisory_lock_id

PAYLOADS = registry()


async def _record(conn: asyncpg.Connection, registration_id: str, event: EventPayload) -> None:
    async with conn.transaction():
        # One writer per recipient at a time: the stream's version is read under this lock.
        key = advisory_lock_id(f"preferences|{registration_id}")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
        await eventstore.record(
            conn,
            preferences_stream(registration_id),
            None,
            [event],
            key=registration_id,
            project=OWN.apply,
        )


async def set_preferences(
    conn: asyncpg.Connection,
    registration_id: str,
    *,
    muted: list[str],
    digest: bool,
    time_zone: str | None,
    unsubscribed: bool,
) -> None:
    event = PreferencesSet(
        registration_id=registration_id,
        muted=sorted(set(muted)),
        digest=digest,
        time_zone=time_zone,
        unsubscribed=unsubscribed,
    )
    await _record(conn, registration_id, event)


async def unsubscribe(conn: asyncpg.Connection, registration_id: str) -> None:
    await _record(conn, registration_id, RecipientUnsubscribed(registration_id=registration_id))


async def register_webhook(
    conn: asyncpg.Connection,
    endpoint_id: str,
    event_id: str,
    url: str,
    kinds: list[str],
    secret: str,
    registered_by: str,
    at: datetime | None = None,
) -> datetime:
    """Record the endpoint's registration: its URL and secret sealed with a key of its own
    (kept beside the events, in `webhook_keys`, not in any event); when it was registered."""
    key = crypto.new_key()
    sealed = crypto.seal(key, {"url": url, "secret": secret}, subject=endpoint_id)
    event = endpoints.register(
        endpoints.Endpoint(),
        endpoint_id=endpoint_id,
        event_id=event_id,
        kinds=kinds,
        sealed=sealed,
        by=registered_by,
        at=at or datetime.now(UTC),
    )
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO webhook_keys (endpoint_id, key) VALUES ($1::uuid, $2)", endpoint_id, key
        )
        await eventstore.record(
            conn, endpoints.stream(endpoint_id), 0, [event], key=event_id, project=OWN.apply
        )
    return event.registered_at


async def remove_webhook(
    conn: asyncpg.Connection, event_id: str, endpoint_id: str, removed_by: str
) -> None:
    """Decided from the endpoint's stream, appended at the version read (a concurrent
    removal makes this one a conflict, answered 409); its key is destroyed with it."""
    async with conn.transaction():
        endpoint = await eventstore.load_into(
            conn, endpoints.stream(endpoint_id), PAYLOADS, endpoints.Endpoint()
        )
        removed = endpoints.remove(
            endpoint, endpoint_id=endpoint_id, event_id=event_id, by=removed_by
        )
        if not removed:
            return
        await conn.execute("DELETE FROM webhook_keys WHERE endpoint_id = $1::uuid", endpoint_id)
        await eventstore.record(
            conn,
            endpoints.stream(endpoint_id),
            endpoint.version,
            removed,
            key=event_id,
            project=OWN.apply,
        )


async def upgrade_legacy_webhooks(conn: asyncpg.Connection) -> int:
    """Endpoints registered before they were events (`webhook_endpoints_legacy`, migration
    004): each recorded as registered (and removed, if it was stopped) with its id, URL,
    secret and time, then the table with the secrets in clear is dropped. How many."""
    async with conn.transaction():
        if await conn.fetchval("SELECT to_regclass('webhook_endpoints_legacy')") is None:
            return 0
        rows = await conn.fetch("SELECT * FROM webhook_endpoints_legacy ORDER BY created_at")
        for row in rows:
            endpoint_id = str(row["endpoint_id"])
            await register_webhook(
                conn,
                endpoint_id,
                row["event_id"],
                row["url"],
                list(row["kinds"]),
                row["secret"],
                row["created_by"],
                at=row["created_at"],
            )
            if not row["active"]:
                await remove_webhook(conn, row["event_id"], endpoint_id, row["created_by"])
        await conn.execute("DROP TABLE webhook_endpoints_legacy")
    return len(rows)
