"""The projection of notification's own events: the delivery log, the preferences and
the webhook endpoints (each the fold of `webhook-<endpoint id>`; URL and secret stay
sealed here, opened with `webhook_keys` when sending or listing).

Each delivery row is the fold of its stream (`delivery-<id>`): queued → (attempt
failed)* → sent | failed | skipped | cancelled. Each recipient's preferences row is the
fold of `preferences-<registration id>`. Applied in the transaction that records the
event (`shared.eventstore.record(..., project=OWN.apply)`) and again by the rebuild.

Work state, not in any event and left out of the rebuild's comparison: the row lock a
sender holds while it sends (claiming), `next_attempt_at` for a row due at once or
released early from a digest (the clock), `sent_at` and `updated_at` (the clock).
"""

from __future__ import annotations

import asyncpg

from services.notification import domain
from shared import json_codec
from shared.contracts.notification import (
    NotificationAttemptFailed,
    NotificationCancelled,
    NotificationFailed,
    NotificationQueued,
    NotificationSent,
    NotificationSkipped,
    PreferencesSet,
    RecipientUnsubscribed,
    WebhookEndpointRegistered,
    WebhookEndpointRemoved,
)
from shared.dispatch import Projection

OWN = Projection()


def delivery_stream(delivery_id: str) -> str:
    return f"delivery-{delivery_id}"


def preferences_stream(registration_id: str) -> str:
    return f"preferences-{registration_id}"


@OWN.on(NotificationQueued)
async def _queued(conn: asyncpg.Connection, e: NotificationQueued) -> None:
    await conn.execute(
        "INSERT INTO deliveries (delivery_id, cause_id, recipient, channel, template, event_id,"
        " meeting_id, context, message_id, digest, next_attempt_at, urgent)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, coalesce($11, now()), $12)"
        " ON CONFLICT DO NOTHING",
        e.delivery_id,
        e.cause_id,
        e.recipient_id,
        e.channel.value,
        e.kind,
        e.event_id,
        e.meeting_id,
        json_codec.dumps(e.context),
        e.message_id,
        e.digest,
        e.due,
        domain.urgent(e.kind),
    )


# `_queued` for many events at once, in SQL: the delivery rows of the `NotificationQueued`
# payloads in column `data` (jsonb) of `{source}` (a CTE of the caller's statement), with
# `{urgent}` the kinds `domain.urgent` names (a text[] parameter). The live queue writes
# with it (`queue._enqueue`), the rebuild replays `_queued`: the same row from the same
# event, column by column (`test_notification_queue.py` compares the two).
QUEUED_ROWS = (
    "INSERT INTO deliveries (delivery_id, cause_id, recipient, channel, template, event_id,"
    " meeting_id, context, message_id, digest, next_attempt_at, urgent)"
    " SELECT (data->>'delivery_id')::uuid, data->>'cause_id', data->>'recipient_id',"
    " data->>'channel', data->>'kind', data->>'event_id', data->>'meeting_id',"
    " data->'context', data->>'message_id', (data->>'digest')::boolean,"
    " coalesce((data->>'due')::timestamptz, now()), data->>'kind' = ANY({urgent}::text[])"
    " FROM {source}"
)


@OWN.on(NotificationSent)
async def _sent(conn: asyncpg.Connection, e: NotificationSent) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', attempts = $2, sent_at = now(),"
        " message_id = $3, last_error = NULL, updated_at = now() WHERE delivery_id = $1",
        e.delivery_id,
        e.attempts,
        e.message_id,
    )


@OWN.on(NotificationFailed)
async def _failed(conn: asyncpg.Connection, e: NotificationFailed) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', attempts = $2, last_error = $3,"
        " updated_at = now() WHERE delivery_id = $1",
        e.delivery_id,
        e.attempts,
        e.reason,
    )


@OWN.on(NotificationAttemptFailed)
async def _attempt_failed(conn: asyncpg.Connection, e: NotificationAttemptFailed) -> None:
    await conn.execute(
        "UPDATE deliveries SET attempts = $2, last_error = $3, next_attempt_at = $4,"
        " updated_at = now() WHERE delivery_id = $1",
        e.delivery_id,
        e.attempts,
        e.reason,
        e.retry_at,
    )


@OWN.on(NotificationSkipped, NotificationCancelled)
async def _ended(conn: asyncpg.Connection, e: NotificationSkipped | NotificationCancelled) -> None:
    status = "skipped" if isinstance(e, NotificationSkipped) else "cancelled"
    await conn.execute(
        "UPDATE deliveries SET status = $2, last_error = $3, updated_at = now()"
        " WHERE delivery_id = $1",
        e.delivery_id,
        status,
        e.reason,
    )


@OWN.on(PreferencesSet)
async def _preferences(conn: asyncpg.Connection, e: PreferencesSet) -> None:
    if not e.digest:
        # Messages held for a digest that is no longer wanted go now, together (one
        # digest email), instead of waiting for the digest hour.
        await conn.execute(
            "UPDATE deliveries SET next_attempt_at = now(), updated_at = now()"
            " WHERE recipient = $1 AND digest AND status = 'pending'"
            " AND next_attempt_at > now()",
            e.registration_id,
        )
    await conn.execute(
        "INSERT INTO preferences (registration_id, muted, digest, time_zone, unsubscribed)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (registration_id) DO UPDATE"
        " SET muted = EXCLUDED.muted, digest = EXCLUDED.digest,"
        " time_zone = EXCLUDED.time_zone, unsubscribed = EXCLUDED.unsubscribed,"
        " updated_at = now()",
        e.registration_id,
        e.muted,
        e.digest,
        e.time_zone,
        e.unsubscribed,
    )


@OWN.on(RecipientUnsubscribed)
async def _unsubscribed(conn: asyncpg.Connection, e: RecipientUnsubscribed) -> None:
    await conn.execute(
        "INSERT INTO preferences (registration_id, unsubscribed) VALUES ($1, true)"
        " ON CONFLICT (registration_id) DO UPDATE SET unsubscribed = true, updated_at = now()",
        e.registration_id,
    )


@OWN.on(WebhookEndpointRegistered)
async def _endpoint_registered(conn: asyncpg.Connection, e: WebhookEndpointRegistered) -> None:
    await conn.execute(
        "INSERT INTO webhook_endpoints (endpoint_id, event_id, kinds, sealed, created_by,"
        " created_at) VALUES ($1::uuid, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        e.endpoint_id,
        e.event_id,
        e.kinds,
        e.sealed,
        e.registered_by,
        e.registered_at,
    )


@OWN.on(WebhookEndpointRemoved)
async def _endpoint_removed(conn: asyncpg.Connection, e: WebhookEndpointRemoved) -> None:
    await conn.execute(
        "UPDATE webhook_endpoints SET active = false WHERE endpoint_id = $1::uuid", e.endpoint_id
    )
