"""Projections only the dashboard reads: the event's slot grid, its support offices and
notification outcomes.

The grid handler runs after `projection.on_event_created` in the same transaction
(`shared.inbox.combine`), which inserts the row it completes. Notification outcomes
are keyed by delivery, so a repeated event changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

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
from shared.inserts import Insert


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


_SENT = NotificationSent.ce_type()


def _outcome_row(envelope: Envelope) -> tuple[Any, ...]:
    delivery = envelope.data
    return (
        delivery["delivery_id"],
        delivery["event_id"],
        delivery["channel"],
        delivery["kind"],
        "sent" if envelope.type == _SENT else "failed",
    )


# One row per delivery that ended (sent or failed), from the envelope alone: the live
# handler and the rebuild's fold run this one statement (`shared.inserts.Insert`).
OUTCOMES = Insert(
    "notification_outcomes",
    "INSERT INTO notification_outcomes (delivery_id, event_id, channel, kind, outcome)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id) DO NOTHING",
    _outcome_row,
)
OUTCOME_INSERTS = {_SENT: OUTCOMES, NotificationFailed.ce_type(): OUTCOMES}


HANDLERS: dict[str, Handler] = {
    BrokerageEventCreated.ce_type(): on_event_created,
    EventSettingsChanged.ce_type(): on_settings_changed,
    **{ce_type: insert.handler for ce_type, insert in OUTCOME_INSERTS.items()},
    ParticipantAssignedToSupportOffice.ce_type(): on_assigned,
}
