"""Notification's commands from its API: preferences as events, webhook endpoints.

A recipient's preferences are recorded as events in `preferences-<registration id>`
(projected into `preferences` by `ledger`). Webhook endpoints stay a plain table: an
endpoint's signing secret would otherwise be in an event on `notification.events`.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.notification.ledger import OWN, preferences_stream
from shared import eventstore
from shared.contracts.base import EventPayload
from shared.contracts.notification import PreferencesSet, RecipientUnsubscribed
from shared.db import advisory_lock_id


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


async def create_webhook(
    conn: asyncpg.Connection,
    endpoint_id: str,
    event_id: str,
    url: str,
    kinds: list[str],
    secret: str,
    created_by: str,
) -> datetime:
    created: datetime = await conn.fetchval(
        "INSERT INTO webhook_endpoints (endpoint_id, event_id, url, kinds, secret, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
        endpoint_id,
        event_id,
        url,
        kinds,
        secret,
        created_by,
    )
    return created


async def stop_webhook(conn: asyncpg.Connection, endpoint_id: str) -> None:
    await conn.execute(
        "UPDATE webhook_endpoints SET active = false WHERE endpoint_id = $1::uuid", endpoint_id
    )
