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
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from services.notification import domain, projection, views
from services.notification.domain import IMMEDIATE_KINDS, Kind, Notice
from services.notification.queue import (
    NewDelivery,
    Writer,
    cancel_pending,
    cancel_pending_many,
)
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingCancelled
from shared.contracts.notification import Channel
from shared.contracts.registration import ParticipantAssignedToSupportOffice
from shared.contracts.reporting import FeedbackInvitationsRequested
from shared.contracts.scheduling import AgendaPublished, SlotAssigned, SlotReleased
from shared.envelope import Envelope
from shared.inbox import BatchHandler, Handler

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


@dataclass(frozen=True)
class Lookups:
    """What a run of notices reads to become deliveries, asked once for the run: who
    takes digests (and in which zone), the events' zones, the events' webhook endpoints."""

    digesters: dict[str, str | None]
    zones: dict[str, str]
    endpoints: dict[str, list[tuple[str, list[str]]]]  # event -> (endpoint id, kinds)

    @classmethod
    async def read(cls, conn: asyncpg.Connection, notices: Sequence[Notice]) -> Lookups:
        """In one statement (`_LOOKUPS`): each round trip of the consumer's transaction
        waits for the server and then for the event loop."""
        recipients = list(dict.fromkeys(r for n in notices for r in n.recipients))
        event_ids = list(dict.fromkeys(n.event_id for n in notices))
        digesters: dict[str, str | None] = {}
        zones: dict[str, str] = {}
        endpoints: dict[str, list[tuple[str, list[str]]]] = {}
        for r in await conn.fetch(_LOOKUPS, recipients, event_ids):
            if r["part"] == 1:
                digesters[r["id"]] = r["zone"]
            elif r["part"] == 2:
                if r["zone"]:
                    zones[r["id"]] = r["zone"]
            else:
                endpoints.setdefault(r["id"], []).append((r["endpoint"], list(r["kinds"])))
        return cls(digesters, zones, endpoints)


# `Lookups`' reads: 1, the recipients who take digests (and their time zone); 2, the
# events' time zones (read only when a recipient takes digests); 3, the events' active
# webhook endpoints, in the order of their ids (a uuid's text sorts as its bytes).
_LOOKUPS = (
    "SELECT 1 AS part, registration_id AS id, time_zone AS zone, NULL AS endpoint,"
    " NULL::text[] AS kinds FROM preferences WHERE registration_id = ANY($1::text[]) AND digest"
    " UNION ALL SELECT 2, event_id, time_zone, NULL, NULL FROM brokerage_events"
    " WHERE event_id = ANY($2::text[]) AND EXISTS (SELECT FROM preferences"
    " WHERE registration_id = ANY($1::text[]) AND digest)"
    ' UNION ALL SELECT 3, event_id, NULL, endpoint_id::text COLLATE "C", kinds'
    " FROM webhook_endpoints"
    " WHERE event_id = ANY($2::text[]) AND active"
    " ORDER BY part, endpoint"
)


def _emails(config: Config, cause: str, notice: Notice, look: Lookups) -> list[NewDelivery]:
    rows = []
    context = notice.context()  # the same for every recipient (none is named in it)
    for recipient in dict.fromkeys(notice.recipients):
        key = domain.dedupe_key(cause, recipient, Channel.EMAIL, notice.kind)
        digest = recipient in look.digesters and notice.kind not in IMMEDIATE_KINDS
        due = None
        if digest:
            zone = look.digesters[recipient] or look.zones.get(notice.event_id, "UTC")
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
                context=context,
                message_id=domain.message_id(key, config.mail_domain),
                digest=digest,
                due=due,
            )
        )
    return rows


def _webhooks(cause: str, notice: Notice, envelope: Envelope, look: Lookups) -> list[NewDelivery]:
    rows = []
    for recipient, kinds in look.endpoints.get(notice.event_id, []):
        if notice.kind.value not in kinds:
            continue
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
                context={**notice.webhook_context(), "occurred_at": envelope.time.isoformat()},
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
    context = reminder.context()
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
                context=context,
                message_id=domain.message_id(key, config.mail_domain),
                due=due,
            )
        )
    return rows


async def deliver(
    conn: asyncpg.Connection, config: Config, envelope: Envelope, notice: Notice | None
) -> None:
    """Queue the notice's messages (and, for a placed or moved meeting, its reminders)."""
    await deliver_run(conn, config, [(envelope, notice)])


async def deliver_run(
    conn: asyncpg.Connection,
    config: Config,
    run: Sequence[tuple[Envelope, Notice | None]],
    unannounced: Collection[str] = (),
) -> None:
    """`deliver` for a run of consumed events: the reads, the cancelled reminders and the
    queued deliveries once per stretch of the run, each delivery with its own cause.

    One by one, a calendar notice cancels its meeting's pending reminders before it
    queues new ones, so a second notice of the same meeting cancels the first one's. A
    stretch therefore ends before a meeting's second calendar notice: within a stretch,
    cancelling first and queueing after is the same as event by event.

    `unannounced`: meetings of which no calendar notice was handled before this run (no
    row in `meetings`), so none of their reminders can be pending: their first calendar
    notice in the run calls nothing off, without reading the queue for it (a round trip
    of the consumer's transaction, and a wait for the chunk in flight, per placement run)."""
    notices = [(envelope, notice) for envelope, notice in run if notice is not None]
    if not notices:
        return
    now = datetime.now(UTC)
    fresh = [(e, n) for e, n in notices if now - e.time <= config.stale_after]
    look = await Lookups.read(conn, [n for _, n in fresh])
    async with Writer(conn) as writer:
        rows: list[tuple[NewDelivery, Envelope | None]] = []
        superseded: dict[str, str | None] = {}  # None: nothing of it can be pending
        announced: set[str] = set()
        for envelope, notice in notices:
            calendar = notice.meeting_id is not None and notice.calendar is not None
            if calendar and notice.meeting_id in superseded:
                await _queue(writer, superseded, rows)
                rows, superseded = [], {}
            cause = cause_of(envelope)
            found: list[NewDelivery] = []
            if now - envelope.time <= config.stale_after:
                found += _emails(config, cause, notice, look)
                found += _webhooks(cause, notice, envelope, look)
            else:
                log.info("%s: %s is too old to announce", cause, notice.kind.value)
            if calendar:
                assert notice.meeting_id is not None
                # Any calendar message changes the meeting's time: earlier reminders are void.
                meeting = notice.meeting_id
                first = meeting in unannounced and meeting not in announced
                superseded[meeting] = None if first else f"superseded by {notice.kind.value}"
                announced.add(meeting)
                if notice.kind in (Kind.MEETING_PLACED, Kind.MEETING_MOVED):
                    found += await _reminders(config, cause, notice)
            rows += [(r, envelope) for r in found]
            if len(rows) >= writer.chunk:
                # Queued now, while the next rows are made. The meetings superseded so far
                # are called off first; one seen again after this is called off again, at
                # its next chunk: after these rows, as event by event.
                await _queue(writer, superseded, rows)
                rows, superseded = [], {}
        await _queue(writer, superseded, rows)


async def _queue(
    writer: Writer,
    superseded: dict[str, str | None],
    rows: Sequence[tuple[NewDelivery, Envelope | None]],
) -> None:
    """Call off the superseded meetings' reminders, then queue `rows` (left in flight)."""
    reasons = {meeting: reason for meeting, reason in superseded.items() if reason is not None}
    if reasons:
        await writer.settled()
        await cancel_pending_many(writer.connection, reasons, Kind.MEETING_REMINDER.value)
    await writer.enqueue(rows)


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


def build_runs(config: Config) -> dict[str, BatchHandler]:
    """Batch handlers for the reactions that come in bursts (requests, answers, decisions,
    placements): the same deliveries as `build`'s handlers event by event, with the
    run's reads and writes asked once (`deliver_run`)."""

    async def stateless(
        conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
    ) -> None:
        await deliver_run(conn, config, [(env, domain.notice_for(e)) for env, e in run])

    async def slots_assigned(
        conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
    ) -> None:
        assigned = [(env, e) for env, e in run if isinstance(e, SlotAssigned)]
        assert len(assigned) == len(run)
        meetings = await projection.load_meetings(conn, [e.meeting_id for _, e in assigned])
        unannounced = {e.meeting_id for _, e in assigned} - set(meetings)
        notices: list[tuple[Envelope, Notice | None]] = []
        for env, e in assigned:  # in order: a meeting placed, then moved, in one run
            meeting, notice = domain.slot_assigned(meetings.get(e.meeting_id), e, env.time)
            meetings[e.meeting_id] = meeting
            notices.append((env, notice))
        changed = dict.fromkeys(e.meeting_id for _, e in assigned)
        await projection.save_meetings(conn, [meetings[m] for m in changed])
        await deliver_run(conn, config, notices, unannounced)

    runs: dict[str, BatchHandler] = {t.ce_type(): stateless for t in domain.STATELESS}
    runs[SlotAssigned.ce_type()] = slots_assigned
    return runs
