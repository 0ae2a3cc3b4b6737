"""Events of the notification service, in its event store and (all but the decisions to
send, `NotificationQueued`) on `notification.events`.

A delivery's stream (`delivery-<id>`) starts with the decision to write to someone
(`NotificationQueued`: the notice's frozen facts, its recipient, channel and dedupe
key's identities, when it is due) and ends with its outcome: sent, failed for good
after its last attempt, skipped on purpose (nothing could or should be sent:
personal data erased, unsubscribed, kind muted, stale reminder) or cancelled (a
reminder whose meeting moved). A failed attempt that will be retried is an event
too (`NotificationAttemptFailed`), so the delivery log is a fold of the stream.
A recipient's preferences (`preferences-<registration id>`) are events as well.
No payload carries contact details: the recipient is a registration id (email), a
co-organiser id or a webhook endpoint id.

An organiser's webhook endpoint (`webhook-<endpoint id>`) is registered and removed by
events too. Its URL and signing secret travel sealed (`shared.crypto`) with a key of the
endpoint's own that only notification holds and that removal destroys: other consumers
see who registered which kinds for which event, when, never where or with what secret
(an incoming-webhook URL is often a credential itself).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from shared.contracts.base import EventPayload


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class _DeliveryEvent(EventPayload):
    producer: ClassVar[str] = "notification"

    delivery_id: str
    event_id: str  # the brokerage event
    recipient_id: str  # registration id (email) or webhook endpoint id
    channel: Channel
    kind: str  # the message kind, e.g. "meeting.placed"
    cause_id: str  # what it is about: the domain event's `source#id` (or a reminder's)


class NotificationQueued(_DeliveryEvent):
    """The decision to send a message: made once per dedupe key (cause, recipient,
    channel, kind), in the transaction that consumed its cause.

    Kept in notification's event store only, not published (`published`): no other
    service acts on it, a participant's pending messages are notification's delivery
    log (`GET /api/registrations/{id}/notifications`), and what became of each is an
    outcome event on the topic. Published, it was over half of notification's records
    (some two fifths of the platform's in a bremen-sized event), each one relayed, stored by
    Kafka and consumed by reporting into its history."""

    event_name: ClassVar[str] = "NotificationQueued"
    published: ClassVar[bool] = False
    meeting_id: str | None = None
    context: dict[str, Any]  # the notice's facts, frozen (and the causing trace)
    message_id: str  # the email's Message-ID, or the webhook-id
    digest: bool = False  # held for the recipient's daily digest
    due: datetime | None = None  # a timer (a reminder, a digest); None: at once


class _NotificationEvent(_DeliveryEvent):
    attempts: int


class NotificationSent(_NotificationEvent):
    """The message was handed over: accepted by the SMTP server, or a 2xx from the endpoint."""

    event_name: ClassVar[str] = "NotificationSent"
    message_id: str  # the email's Message-ID, or the webhook-id


class NotificationFailed(_NotificationEvent):
    """Every attempt failed (or the failure is permanent); nothing more will be tried."""

    event_name: ClassVar[str] = "NotificationFailed"
    reason: str


class NotificationAttemptFailed(_NotificationEvent):
    """An attempt failed; the next one is due at `retry_at` (backoff)."""

    event_name: ClassVar[str] = "NotificationAttemptFailed"
    reason: str
    retry_at: datetime


class NotificationSkipped(_DeliveryEvent):
    """Nothing was sent, on purpose (erased, unsubscribed, muted, stale), and nothing will be."""

    event_name: ClassVar[str] = "NotificationSkipped"
    reason: str


class NotificationCancelled(_DeliveryEvent):
    """A timer called off before it fired (a moved or cancelled meeting's reminder)."""

    event_name: ClassVar[str] = "NotificationCancelled"
    reason: str


class PreferencesSet(EventPayload):
    """A recipient's choices, as a whole: muted kinds, daily digest, time zone."""

    producer: ClassVar[str] = "notification"
    event_name: ClassVar[str] = "PreferencesSet"
    registration_id: str
    muted: list[str]
    digest: bool
    time_zone: str | None
    unsubscribed: bool


class RecipientUnsubscribed(EventPayload):
    """The recipient followed the unsubscribe link: no more emails (other choices kept)."""

    producer: ClassVar[str] = "notification"
    event_name: ClassVar[str] = "RecipientUnsubscribed"
    registration_id: str


class WebhookEndpointRegistered(EventPayload):
    """An organiser registered an endpoint for an event's messages of `kinds`."""

    producer: ClassVar[str] = "notification"
    event_name: ClassVar[str] = "WebhookEndpointRegistered"
    endpoint_id: str
    event_id: str
    kinds: list[str]
    sealed: str  # {"url", "secret"}, sealed with the endpoint's key (subject: its id)
    registered_by: str  # the caller's label
    registered_at: datetime


class WebhookEndpointRemoved(EventPayload):
    """The endpoint gets nothing more (pending deliveries to it are skipped); its key is
    destroyed with it, so its sealed URL and secret can no longer be read anywhere."""

    producer: ClassVar[str] = "notification"
    event_name: ClassVar[str] = "WebhookEndpointRemoved"
    endpoint_id: str
    event_id: str
    removed_by: str


DELIVERY_OUTCOMES: tuple[type[EventPayload], ...] = (
    NotificationSent,
    NotificationFailed,
    NotificationSkipped,
    NotificationCancelled,
)
NOTIFICATION_EVENTS: list[type[EventPayload]] = [
    NotificationQueued,
    NotificationSent,
    NotificationFailed,
    NotificationAttemptFailed,
    NotificationSkipped,
    NotificationCancelled,
    PreferencesSet,
    RecipientUnsubscribed,
    WebhookEndpointRegistered,
    WebhookEndpointRemoved,
]
