"""Notification's rules, pure: which messages a domain event produces, for whom, about what.

Each kind of domain event has one small mapping function from its payload (and,
for meetings, the meeting's calendar state) to at most one `Notice`: the message
kind, the registrations to write to, and the facts to render. The facts are
frozen when the notice is made, so a retried or resent message says what it
said the first time.

Identities derived here, never stored as random values:
- a delivery's id and an email's Message-ID come from the delivery's dedupe key
  (what caused it, recipient, channel, kind), so a resend keeps its Message-ID;
- a meeting's iCalendar UID comes from the meeting id, and its SEQUENCE rises by
  one with every calendar message (placed, moved, released, cancelled), so a
  client updates or removes the entry instead of adding another.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    CancelledBy,
    MeetingAccepted,
    MeetingCancelled,
    MeetingDeclined,
    MeetingRequested,
    MeetingRequestExpired,
)
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    AssignedBy,
    ParticipantAssignedToSupportOffice,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    SignInLinkRequested,
)
from shared.contracts.reporting import FeedbackInvitationsRequested
from shared.contracts.scheduling import (
    AgendaPublished,
    MeetingUnschedulable,
    ReleaseReason,
    SlotAssigned,
    SlotReleased,
)


class Kind(StrEnum):
    """What a message is about; also the template's name and the webhook event type."""

    APPLICATION_RECEIVED = "application.received"
    APPLICATION_APPROVED = "application.approved"
    APPLICATION_REJECTED = "application.rejected"
    APPLICATION_WAITLISTED = "application.waitlisted"
    REQUEST_RECEIVED = "meeting_request.received"
    REQUEST_ACCEPTED = "meeting_request.accepted"
    REQUEST_DECLINED = "meeting_request.declined"
    REQUEST_CANCELLED = "meeting_request.cancelled"  # a pending request withdrawn
    REQUEST_EXPIRED = "meeting_request.expired"
    MEETING_CANCELLED = "meeting.cancelled"  # an agreed meeting called off
    MEETING_PLACED = "meeting.placed"
    MEETING_MOVED = "meeting.moved"
    MEETING_RELEASED = "meeting.released"
    MEETING_UNSCHEDULABLE = "meeting.unschedulable"
    AGENDA_PUBLISHED = "agenda.published"
    MEETING_REMINDER = "meeting.reminder"
    FEEDBACK_INVITATION = "feedback.invitation"
    OFFICE_REGISTRATION = "office.participant_registered"  # to a support office's co-organiser
    SIGN_IN_LINK = "sign_in.link"  # asked for on the portal: to the address that asked


# Kinds a webhook endpoint may subscribe to: everything that is a fact about the
# event. A reminder is only a timer of ours; a feedback invitation is one message
# per participant with facts of its own (the organiser's request behind it is on
# reporting.events for whoever wants it); an office's notice is for its co-organisers
# (an application.received hook already tells of every registration).
WEBHOOK_KINDS = frozenset(Kind) - {
    Kind.MEETING_REMINDER,
    Kind.FEEDBACK_INVITATION,
    Kind.OFFICE_REGISTRATION,
    Kind.SIGN_IN_LINK,
}
# Kinds never held back for the daily digest: a calendar entry or a reminder that
# arrives the next morning is worse than useless. For the same reason (and because
# someone is waiting for a sign-in link) they go ahead of a backlog of the others:
# the sender claims them first (`urgent`).
IMMEDIATE_KINDS = frozenset(
    {
        Kind.MEETING_PLACED,
        Kind.MEETING_MOVED,
        Kind.MEETING_RELEASED,
        Kind.MEETING_CANCELLED,
        Kind.MEETING_REMINDER,
        Kind.SIGN_IN_LINK,
    }
)


def urgent(kind: str) -> bool:
    """Sent before the other due messages: a burst of requests and answers at a deadline
    must not hold up a calendar update, a reminder or a sign-in link."""
    return kind in IMMEDIATE_KINDS


UID_DOMAIN = "meetings.matchmaking"


class Method(StrEnum):
    REQUEST = "REQUEST"  # add or update the entry
    CANCEL = "CANCEL"  # remove it


@dataclass(frozen=True)
class CalendarEntry:
    """The iCalendar entry a meeting message carries, as it stood when the message was made."""

    uid: str
    sequence: int
    method: Method
    start: datetime
    end: datetime
    table: int | None
    mode: str
    stamp: datetime  # when this version was made: the causing domain event's time

    def to_json(self) -> dict[str, Any]:
        return {
            "stamp": self.stamp.isoformat(),
            "uid": self.uid,
            "sequence": self.sequence,
            "method": self.method.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "table": self.table,
            "mode": self.mode,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CalendarEntry:
        return cls(
            uid=data["uid"],
            sequence=data["sequence"],
            method=Method(data["method"]),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            table=data["table"],
            mode=data["mode"],
            stamp=datetime.fromisoformat(data["stamp"]),
        )


@dataclass(frozen=True)
class Notice:
    """One message kind for some registrations, about one domain event."""

    kind: Kind
    event_id: str
    recipients: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)  # JSON-ready, no personal data
    meeting_id: str | None = None
    calendar: CalendarEntry | None = None

    def context(self) -> dict[str, Any]:
        """What a delivery stores to render (or post) the message later.

        Not the recipients: an e-mail delivery has its one recipient, and the list
        copied into each of a notice's deliveries grew with the square of its size
        (an agenda published to 3,500 participants: 3,500 copies of 3,500 ids, in
        the deliveries, their events, the outbox and reporting's history). A webhook,
        one per endpoint, is told them (`webhook_context`).
        """
        return {
            "kind": self.kind.value,
            "event_id": self.event_id,
            "meeting_id": self.meeting_id,
            "facts": self.facts,
            "calendar": self.calendar.to_json() if self.calendar else None,
        }

    def webhook_context(self) -> dict[str, Any]:
        """`context`, and whom the notice is for: an endpoint's body names them."""
        return {**self.context(), "recipients": list(self.recipients)}


# -- stateless events: one small function each ---------------------------------


def _registered(e: EventPayload) -> Notice:
    assert isinstance(e, RegisteredBase)
    return Notice(
        Kind.APPLICATION_RECEIVED,
        e.event_id,
        (e.registration_id,),
        {"registration_id": e.registration_id, "organisation": e.profile.name},
    )


def _decision(kind: Kind) -> Callable[[EventPayload], Notice]:
    def notice(e: EventPayload) -> Notice:
        assert isinstance(e, RegistrationApproved | RegistrationRejected | RegistrationWaitlisted)
        return Notice(
            kind,
            e.event_id,
            (e.registration_id,),
            {"registration_id": e.registration_id, "reason": e.reason},
        )

    return notice


def _request_facts(e: MeetingRequested | MeetingAccepted | MeetingDeclined) -> dict[str, Any]:
    return {
        "request_id": e.request_id,
        "requester_id": e.requester_id,
        "recipient_id": e.recipient_id,
    }


def _requested(e: EventPayload) -> Notice:
    assert isinstance(e, MeetingRequested)
    facts = {
        **_request_facts(e),
        "meeting_type": e.meeting_type.value,
        "message": e.message.text if e.message else None,
        "language": e.message.language if e.message else None,
        "expires_at": e.expires_at.isoformat(),
    }
    return Notice(Kind.REQUEST_RECEIVED, e.event_id, (e.recipient_id,), facts, e.request_id)


def _accepted(e: EventPayload) -> Notice:
    assert isinstance(e, MeetingAccepted)
    # The requester learns the answer; when an organiser arranged it or both had
    # asked, neither side has heard of it yet, so both are told.
    both = e.arranged_by_organiser or e.mutual
    recipients = (e.requester_id, e.recipient_id) if both else (e.requester_id,)
    facts = {
        **_request_facts(e),
        "meeting_type": e.meeting_type.value,
        "mode": e.mode.value,
        "arranged_by_organiser": e.arranged_by_organiser,
        "mutual": e.mutual,
    }
    return Notice(Kind.REQUEST_ACCEPTED, e.event_id, recipients, facts, e.request_id)


def _declined(e: EventPayload) -> Notice:
    assert isinstance(e, MeetingDeclined)
    facts = {**_request_facts(e), "reason": e.reason}
    return Notice(Kind.REQUEST_DECLINED, e.event_id, (e.requester_id,), facts, e.request_id)


def _expired(e: EventPayload) -> Notice:
    assert isinstance(e, MeetingRequestExpired)
    facts = {
        "request_id": e.request_id,
        "requester_id": e.requester_id,
        "recipient_id": e.recipient_id,
        "expired_at": e.expired_at.isoformat(),
    }
    return Notice(Kind.REQUEST_EXPIRED, e.event_id, (e.requester_id,), facts, e.request_id)


def _unschedulable(e: EventPayload) -> Notice:
    assert isinstance(e, MeetingUnschedulable)
    facts = {"participants": list(e.participants), "reason": e.reason}
    return Notice(
        Kind.MEETING_UNSCHEDULABLE, e.event_id, tuple(e.participants), facts, e.meeting_id
    )


def _sign_in_link(e: EventPayload) -> Notice:
    """The link itself is not in the notice: the sender asks registration for it (and for
    the address) when it sends, so no copy of it is stored here."""
    assert isinstance(e, SignInLinkRequested)
    facts = {"link_id": e.link_id, "expires_at": e.expires_at.isoformat()}
    return Notice(Kind.SIGN_IN_LINK, e.event_id, (e.registration_id,), facts)


STATELESS: dict[type[EventPayload], Callable[[EventPayload], Notice]] = {
    SignInLinkRequested: _sign_in_link,
    **{t: _registered for t in REGISTERED_BY_TYPE.values()},
    RegistrationApproved: _decision(Kind.APPLICATION_APPROVED),
    RegistrationRejected: _decision(Kind.APPLICATION_REJECTED),
    RegistrationWaitlisted: _decision(Kind.APPLICATION_WAITLISTED),
    MeetingRequested: _requested,
    MeetingAccepted: _accepted,
    MeetingDeclined: _declined,
    MeetingRequestExpired: _expired,
    MeetingUnschedulable: _unschedulable,
}


def notice_for(event: EventPayload) -> Notice | None:
    """The notice of an event that needs no state (registrations, requests)."""
    mapper = STATELESS.get(type(event))
    return mapper(event) if mapper else None


def office_registration(
    e: ParticipantAssignedToSupportOffice, organisation: str | None, co_organisers: tuple[str, ...]
) -> Notice | None:
    """A support office's active co-organisers hear of a participant of theirs registering.

    Only an assignment made as the participant registers (its own choice, or the
    event's country rule) is a registration; an organiser's later reassignment is not.
    """
    if e.assigned_by is AssignedBy.ORGANISER or not co_organisers:
        return None
    facts = {
        "registration_id": e.registration_id,
        "organisation": organisation,
        "office_id": e.office_id,
        "assigned_by": e.assigned_by.value,
    }
    return Notice(Kind.OFFICE_REGISTRATION, e.event_id, co_organisers, facts)


def agenda_published(e: AgendaPublished, approved: tuple[str, ...]) -> Notice:
    """Every approved participant hears that the agenda is out (it is rendered per person)."""
    return Notice(
        Kind.AGENDA_PUBLISHED, e.event_id, approved, {"published_at": e.published_at.isoformat()}
    )


def feedback_invitations(e: FeedbackInvitationsRequested) -> list[Notice]:
    """One invitation per listed participant, naming that participant's meetings to rate.

    The recipient's dedupe key carries the round's domain event, so a redelivered
    round sends nothing twice and a later round (a reminder) is new.
    """
    return [
        Notice(
            Kind.FEEDBACK_INVITATION,
            e.event_id,
            (p.registration_id,),
            {
                "round_id": e.round_id,
                "round": e.round,
                "event_title": e.event_title,
                "time_zone": e.time_zone,
                "meetings": [
                    {
                        "meeting_id": m.meeting_id,
                        "partner_id": m.partner_id,
                        "partner_name": m.partner_name,
                        "start": m.slot_start.isoformat(),
                        "end": m.slot_end.isoformat(),
                        "feedback_url": m.feedback_url,
                    }
                    for m in p.meetings
                ],
            },
        )
        for p in e.participants
        if p.meetings
    ]


# -- meetings and their calendar entries ---------------------------------------


@dataclass(frozen=True)
class Placement:
    start: datetime
    end: datetime
    table: int | None
    mode: str


@dataclass(frozen=True)
class Meeting:
    """What notification knows of a meeting, for its calendar entry.

    `placement` is where the participants' calendar entry puts the meeting (kept
    after a release, so a later cancellation can still name it); `placed` says
    whether scheduling currently has it in a slot. `sequence` is the SEQUENCE of
    the last calendar message (-1: none yet); `live` says whether calendars hold
    the entry (a REQUEST was sent and no CANCEL after it). `cancelled` is final:
    matching called the meeting off.

    Matching's cancellation and scheduling's events about the meeting come on two
    topics, in either order (scheduling's own come in order: one partition per
    brokerage event). The row is the same whichever came first: `placement` and
    `placed` follow scheduling's events only, cancelled or not (a reader wants `placed
    and not cancelled`); `cancelled` follows matching's only; and once cancelled no
    calendar message follows, so `sequence` and `live` are cleared (-1, false) rather
    than left at whatever was sent before the cancellation arrived.
    """

    meeting_id: str
    event_id: str
    participants: tuple[str, ...]
    placement: Placement | None = None
    placed: bool = False
    sequence: int = -1
    live: bool = False
    cancelled: bool = False


def meeting_uid(meeting_id: str) -> str:
    return f"meeting-{meeting_id}@{UID_DOMAIN}"


def _entry(meeting: Meeting, method: Method, placement: Placement, at: datetime) -> CalendarEntry:
    return CalendarEntry(
        stamp=at,
        uid=meeting_uid(meeting.meeting_id),
        sequence=meeting.sequence + 1,
        method=method,
        start=placement.start,
        end=placement.end,
        table=placement.table,
        mode=placement.mode,
    )


def _placement_facts(p: Placement) -> dict[str, Any]:
    return {
        "start": p.start.isoformat(),
        "end": p.end.isoformat(),
        "table": p.table,
        "mode": p.mode,
    }


def slot_assigned(
    meeting: Meeting | None, e: SlotAssigned, at: datetime
) -> tuple[Meeting, Notice | None]:
    """Placed the first time, moved when the slot or table differs, nothing on a repeat."""
    current = meeting or Meeting(e.meeting_id, e.event_id, tuple(e.participants))
    placement = Placement(e.slot_start, e.slot_end, e.table, e.mode.value)
    if current.cancelled:
        # Scheduling placed it before it heard of the cancellation: no message, and
        # scheduling's facts kept as if they had come first (see `Meeting`).
        placed = replace(
            current, participants=tuple(e.participants), placement=placement, placed=True
        )
        return placed, None
    if current.placed and current.live and current.placement == placement:
        return current, None
    entry = _entry(current, Method.REQUEST, placement, at)
    facts = {"participants": list(e.participants), **_placement_facts(placement)}
    kind = Kind.MEETING_PLACED
    if current.live and current.placement is not None:
        kind = Kind.MEETING_MOVED
        facts["previous"] = _placement_facts(current.placement)
    updated = replace(
        current,
        participants=tuple(e.participants),
        placement=placement,
        placed=True,
        sequence=entry.sequence,
        live=True,
    )
    notice = Notice(kind, e.event_id, tuple(e.participants), facts, e.meeting_id, entry)
    return updated, notice


def slot_released(
    meeting: Meeting | None, e: SlotReleased, at: datetime
) -> tuple[Meeting, Notice | None]:
    """A CANCEL for the entry; when matching cancelled the meeting, its message carries it."""
    current = meeting or Meeting(e.meeting_id, e.event_id, tuple(e.participants))
    released = replace(current, placed=False)
    cause_is_cancel = e.reason is ReleaseReason.MEETING_CANCELLED
    if cause_is_cancel or current.cancelled or not current.live or current.placement is None:
        return released, None
    entry = _entry(current, Method.CANCEL, current.placement, at)
    facts = {
        "participants": list(e.participants),
        "reason": e.reason.value,
        **_placement_facts(current.placement),
    }
    updated = replace(released, sequence=entry.sequence, live=False)
    notice = Notice(
        Kind.MEETING_RELEASED, e.event_id, tuple(e.participants), facts, e.meeting_id, entry
    )
    return updated, notice


def meeting_cancelled(
    meeting: Meeting | None, e: MeetingCancelled, at: datetime
) -> tuple[Meeting, Notice]:
    """The request or meeting is off; a live calendar entry gets its CANCEL here."""
    participants: tuple[str, ...] = (e.requester_id, e.recipient_id)
    current = meeting or Meeting(e.request_id, e.event_id, participants)
    if e.was_accepted:
        kind = Kind.MEETING_CANCELLED
        recipients = participants
    else:
        kind = Kind.REQUEST_CANCELLED
        other = tuple(p for p in participants if p != e.cancelled_by)
        by_a_side = e.cancelled_by_role is CancelledBy.PARTICIPANT and len(other) == 1
        recipients = other if by_a_side else participants
    facts: dict[str, Any] = {
        "request_id": e.request_id,
        "requester_id": e.requester_id,
        "recipient_id": e.recipient_id,
        "cancelled_by": e.cancelled_by,
        "cancelled_by_role": e.cancelled_by_role.value,
        "reason": e.reason,
    }
    entry = None
    if current.live and current.placement is not None:
        entry = _entry(current, Method.CANCEL, current.placement, at)
        facts.update(_placement_facts(current.placement))
    # Final: no calendar message follows, whatever scheduling still says (see `Meeting`).
    updated = replace(current, cancelled=True, live=False, sequence=-1)
    return updated, Notice(kind, e.event_id, recipients, facts, e.request_id, entry)


# -- delivery identities -------------------------------------------------------


def dedupe_key(cause_id: str, recipient: str, channel: str, kind: str) -> str:
    return "|".join((cause_id, recipient, channel, kind))


_NAMESPACE = uuid.UUID("6f1c9a52-3d0e-4b8e-9a57-1f0c2b7d4e11")


def delivery_id(key: str) -> str:
    """The delivery's id, the same for the same dedupe key: `str(uuid.uuid5(_NAMESPACE,
    key))`, computed without the two `UUID` objects (a backlog makes tens of thousands)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE.bytes + key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def message_id(key: str, domain: str) -> str:
    """RFC 5322 Message-ID derived from what the message is about."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def digest_message_id(recipient: str, due: datetime, domain: str) -> str:
    return message_id(f"digest|{recipient}|{due.isoformat()}", domain)


def reminder_cause(slot_assigned_cause: str) -> str:
    return f"reminder:{slot_assigned_cause}"


def reminder_due(start: datetime, lead_minutes: float) -> datetime:
    return start - timedelta(minutes=lead_minutes)


def backoff(attempts: int, base_seconds: float, cap_seconds: float = 3600.0) -> float:
    """Delay before the next attempt after `attempts` failed ones: base, 2·base, 4·base, …"""
    return float(min(cap_seconds, base_seconds * 2 ** max(attempts - 1, 0)))


def next_digest_at(now: datetime, zone: str, hour: int, minute: int = 0) -> datetime:
    """The next `hour`:`minute` in `zone` strictly after `now`."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), time(hour, minute), tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), tz)
    return candidate


def wants(kind: Kind, muted: frozenset[str], unsubscribed: bool) -> bool:
    """Whether a recipient's preferences let this kind of message through (a sign-in link
    was asked for just now: preferences do not hold it back)."""
    if kind is Kind.SIGN_IN_LINK:
        return True
    return not unsubscribed and kind.value not in muted
