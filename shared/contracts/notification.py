"""Events published by the notification service on `notification.events`.

One event per delivery when it ends: sent, or failed for good after its last
attempt. Deliveries that were never attempted because nobody could be written
to (personal data erased, unsubscribed, message kind muted) end as `skipped` in
the delivery log and publish nothing. No payload carries contact details: the
recipient is a registration id (email) or a webhook endpoint id.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from shared.contracts.base import EventPayload


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class _NotificationEvent(EventPayload):
    producer: ClassVar[str] = "notification"

    delivery_id: str
    event_id: str  # the brokerage event
    recipient_id: str  # registration id (email) or webhook endpoint id
    channel: Channel
    kind: str  # the message kind, e.g. "meeting.placed"
    cause_id: str  # what it is about: the domain event's `source#id` (or a reminder's)
    attempts: int


class NotificationSent(_NotificationEvent):
    """The message was handed over: accepted by the SMTP server, or a 2xx from the endpoint."""

    event_name: ClassVar[str] = "NotificationSent"
    message_id: str  # the email's Message-ID, or the webhook-id


class NotificationFailed(_NotificationEvent):
    """Every attempt failed (or the failure is permanent); nothing more will be tried."""

    event_name: ClassVar[str] = "NotificationFailed"
    reason: str


NOTIFICATION_EVENTS: list[type[EventPayload]] = [NotificationSent, NotificationFailed]
