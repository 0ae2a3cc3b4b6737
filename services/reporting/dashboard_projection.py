"""Projections only the dashboard reads: the event's slot grid, its support offices and
notification outcomes.

The grid handler runs after `projection.on_event_created` in the same transaction
(`shared.inbox.combine`), which inserts the row it completes. Notification outcomes
are keyed by delivery, so a repeated event changes nothing.
"""

from __future__ import annotations

import json

import asyncpg

from shared.contracts.base import EventPayload
from shared.contracts.notification import NotificationFailed, NotificationSent
from shared.contracts.registration import (
    BrokerageEventCreated,
    EventSettingsChanged,
    ParticipantAssignedToSupportOffice,
)
from shared.envelope import Envelope
from shared.inbox import Handler


async def on_event_created(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, BrokerageEventCreated)
    await conn.execute(
        "UPDATE brokerage_events SET sessions = $2::jsonb, slot_minutes = $3, tables = $4,"
        " support_offices = $5::jsonb WHERE event_id = $1",
        e.event_id,
        json.dumps([{"start": s.start.isoformat(), "end": s.end.isoformat()} for s in e.sessions]),
        e.slot_minutes,
        e.tables,
        json.dumps([o.model_dump(mode="json") for o in e.support_offices]),
    )


async def on_settings_changed(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    """The grid the dashboard measures occupancy against, as the organiser changed it."""
    assert isinstance(e, EventSettingsChanged)
    await conn.execute(
        "UPDATE brokerage_events SET sessions = $2::jsonb, slot_minutes = $3, tables = $4"
        " WHERE event_id = $1",
        e.event_id,
        json.dumps([{"start": s.start.isoformat(), "end": s.end.isoformat()} for s in e.sessions]),
        e.slot_minutes,
        e.tables,
    )


async def on_assigned(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    """Nothing to store (the access projection keeps the office): the handler is here so
    the event's dashboards are woken (`live.notifying`) when a participant changes office."""
    assert isinstance(e, ParticipantAssignedToSupportOffice)


async def on_notification(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, NotificationSent | NotificationFailed)
    await conn.execute(
        "INSERT INTO notification_outcomes (delivery_id, event_id, channel, kind, outcome)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id) DO NOTHING",
        e.delivery_id,
        e.event_id,
        e.channel.value,
        e.kind,
        "sent" if isinstance(e, NotificationSent) else "failed",
    )


HANDLERS: dict[str, Handler] = {
    BrokerageEventCreated.ce_type(): on_event_created,
    EventSettingsChanged.ce_type(): on_settings_changed,
    NotificationSent.ce_type(): on_notification,
    NotificationFailed.ce_type(): on_notification,
    ParticipantAssignedToSupportOffice.ce_type(): on_assigned,
}
