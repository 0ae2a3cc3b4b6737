"""Consumer handlers: a domain event → its notice → delivery rows, in the inbox transaction.

They run after the projection handlers of the same event (see `bootstrap`), in
one transaction with the inbox row: the deliveries exist exactly when the event
counts as consumed. One email delivery per recipient, one webhook delivery per
subscribed endpoint, and for a placed or moved meeting one reminder per
participant, due `reminder_lead_minutes` before it starts. A round of feedback
invitations (reporting.events) is one notice per invited participant. A
participant assigned to a support office as it registers is announced to the
office's active co-organisers (one email each).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from services.notification import domain, projection, views
from services.notification.domain import IMMEDIATE_KINDS, Kind, Notice
from services.notification.queue import NewDelivery, cancel_pending, enqueue
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingCancelled
from shared.contracts.notification import Channel
from shared.contracts.registration import ParticipantAssignedToSupportOffice
from shared.contracts.reporting import FeedbackInvitationsRequested
from shared.contracts.scheduling import AgendaPublished, SlotAssigned, SlotReleased
from shared.envelope import Envelope
from shared.inbox import Handler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    mail_domain: str
    reminder_lead_minutes: float
    digest_hour: int
    digest_minute: int = 0
    stale_after: timedelta = timedelta(hours=72)


def cause_of(envelope: Envelope) -> str:
    return f"{envelope.source}#{envelope.id}"


async def _event_zone(conn: asyncpg.Connection, event_id: str) -> str:
    zone: str | None = await conn.fetchval(
        "SELECT time_zone FROM brokerage_events WHERE event_id = $1", event_id
    )
    return zone or "UTC"


async def _emails(
    conn: asyncpg.Connection, config: Config, cause: str, notice: Notice
) -> list[NewDelivery]:
    digesters = {
        r["registration_id"]: r["time_zone"]
        for r in await conn.fetch(
            "SELECT registration_id, time_zone FROM preferences"
            " WHERE registration_id = ANY($1::text[]) AND digest",
            list(notice.recipients),
        )
    }
    event_zone = await _event_zone(conn, notice.event_id) if digesters else "UTC"
    rows = []
    for recipient in dict.fromkeys(notice.recipients):
        key = domain.dedupe_key(cause, recipient, Channel.EMAIL, notice.kind)
        digest = recipient in digesters and notice.kind not in IMMEDIATE_KINDS
        due = None
        if digest:
            zone = digesters[recipient] or event_zone
            due = domain.next_digest_at(
                datetime.now(UTC), zone, config.digest_hour, config.digest_minute
            )
        rows.append(
            NewDelivery(
                delivery_id=domain.delivery_id(key),
                cause_id=cause,
                recipient=recipient,
                channel=Channel.EMAIL,
                template=notice.kind.value,
                event_id=notice.event_id,
                meeting_id=notice.meeting_id,
                context=notice.context(),
                message_id=domain.message_id(key, config.mail_domain),
                digest=digest,
                due=due,
            )
        )
    return rows


async def _webhooks(
    conn: asyncpg.Connection, cause: str, notice: Notice, envelope: Envelope
) -> list[NewDelivery]:
    endpoints = await conn.fetch(
        "SELECT endpoint_id FROM webhook_endpoints"
        " WHERE event_id = $1 AND active AND $2 = ANY(kinds)",
        notice.event_id,
        notice.kind.value,
    )
    rows = []
    for endpoint in endpoints:
        recipient = str(endpoint["endpoint_id"])
        key = domain.dedupe_key(cause, recipient, Channel.WEBHOOK, notice.kind)
        ident = domain.delivery_id(key)
        rows.append(
            NewDelivery(
                delivery_id=ident,
                cause_id=cause,
                recipient=recipient,
                channel=Channel.WEBHOOK,
                template=notice.kind.value,
                event_id=notice.event_id,
                meeting_id=notice.meeting_id,
                context={**notice.context(), "occurred_at": envelope.time.isoformat()},
                message_id=f"msg_{ident}",
            )
        )
    return rows


async def _reminders(config: Config, cause: str, notice: Notice) -> list[NewDelivery]:
    assert notice.calendar is not None and notice.meeting_id is not None
    reminder = Notice(
        Kind.MEETING_REMINDER,
        notice.event_id,
        notice.recipients,
        {k: v for k, v in notice.facts.items() if k != "previous"},
        notice.meeting_id,
    )
    due = domain.reminder_due(notice.calendar.start, config.reminder_lead_minutes)
    rows = []
    for recipient in dict.fromkeys(notice.recipients):
        timer = domain.reminder_cause(cause)
        key = domain.dedupe_key(timer, recipient, Channel.EMAIL, Kind.MEETING_REMINDER)
        rows.append(
            NewDelivery(
                delivery_id=domain.delivery_id(key),
                cause_id=timer,
                recipient=recipient,
                channel=Channel.EMAIL,
                template=Kind.MEETING_REMINDER.value,
                event_id=notice.event_id,
                meeting_id=notice.meeting_id,
                context=reminder.context(),
                message_id=domain.message_id(key, config.mail_domain),
                due=due,
            )
        )
    return rows


async def deliver(
    conn: asyncpg.Connection, config: Config, envelope: Envelope, notice: Notice | None
) -> None:
    """Queue the notice's messages (and, for a placed or moved meeting, its reminders)."""
    if notice is None:
        return
    cause = cause_of(envelope)
    rows: list[NewDelivery] = []
    if datetime.now(UTC) - envelope.time <= config.stale_after:
        rows += await _emails(conn, config, cause, notice)
        rows += await _webhooks(conn, cause, notice, envelope)
    else:
        log.info("%s: %s is too old to announce", cause, notice.kind.value)
    if notice.meeting_id is not None and notice.calendar is not None:
        # Any calendar message changes the meeting's time: earlier reminders are void.
        reason = f"superseded by {notice.kind.value}"
        await cancel_pending(conn, notice.meeting_id, Kind.MEETING_REMINDER.value, reason)
        if notice.kind in (Kind.MEETING_PLACED, Kind.MEETING_MOVED):
            rows += await _reminders(config, cause, notice)
    await enqueue(conn, rows, envelope)


def build(config: Config) -> dict[str, Handler]:
    """Handlers by CloudEvents type, for every event that may lead to a message."""

    async def stateless(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        await deliver(conn, config, envelope, domain.notice_for(e))

    async def slot_assigned(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        assert isinstance(e, SlotAssigned)
        meeting, notice = domain.slot_assigned(
            await projection.load_meeting(conn, e.meeting_id), e, envelope.time
        )
        await projection.save_meeting(conn, meeting)
        await deliver(conn, config, envelope, notice)

    async def slot_released(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        assert isinstance(e, SlotReleased)
        meeting, notice = domain.slot_released(
            await projection.load_meeting(conn, e.meeting_id), e, envelope.time
        )
        await projection.save_meeting(conn, meeting)
        await cancel_pending(conn, e.meeting_id, Kind.MEETING_REMINDER.value, "slot released")
        await deliver(conn, config, envelope, notice)

    async def cancelled(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        assert isinstance(e, MeetingCancelled)
        meeting, notice = domain.meeting_cancelled(
            await projection.load_meeting(conn, e.request_id), e, envelope.time
        )
        await projection.save_meeting(conn, meeting)
        await cancel_pending(conn, e.request_id, Kind.MEETING_REMINDER.value, "meeting cancelled")
        await deliver(conn, config, envelope, notice)

    async def agenda(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        assert isinstance(e, AgendaPublished)
        approved = await conn.fetch(
            "SELECT registration_id FROM recipients WHERE event_id = $1 AND status = 'approved'"
            " ORDER BY registration_id",
            e.event_id,
        )
        ids = tuple(r["registration_id"] for r in approved)
        await deliver(conn, config, envelope, domain.agenda_published(e, ids))

    async def feedback(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        assert isinstance(e, FeedbackInvitationsRequested)
        for notice in domain.feedback_invitations(e):
            await deliver(conn, config, envelope, notice)

    async def office(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
        assert isinstance(e, ParticipantAssignedToSupportOffice)
        co_organisers = await projection.office_co_organisers(conn, e.event_id, e.office_id)
        organisation = (await views.names(conn, [e.registration_id])).get(e.registration_id)
        notice = domain.office_registration(e, organisation, co_organisers)
        await deliver(conn, config, envelope, notice)

    handlers: dict[str, Handler] = {t.ce_type(): stateless for t in domain.STATELESS}
    handlers[SlotAssigned.ce_type()] = slot_assigned
    handlers[SlotReleased.ce_type()] = slot_released
    handlers[MeetingCancelled.ce_type()] = cancelled
    handlers[AgendaPublished.ce_type()] = agenda
    handlers[FeedbackInvitationsRequested.ce_type()] = feedback
    handlers[ParticipantAssignedToSupportOffice.ce_type()] = office
    return handlers
