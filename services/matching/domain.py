"""Meeting requests' rules, pure: no I/O, no clock (callers pass `now`).

A meeting request is an aggregate rebuilt from its events (`MeetingRequest.apply`).
The decisions below check the rules against that state, the brokerage event's
settings, both participants and the facts the handler read under lock (any
open request between the pair, each side's count of accepted meetings), and
return the events to append, or raise `RuleViolation` naming the field at fault.

Meeting type from the two organisation types (`meeting_type_for`):

    cluster  + cluster                          -> Cluster2Cluster
    cluster  + business | research | other      -> Business2Cluster
    business | research | other, both sides     -> Business2Business

i.e. a cluster meets a cluster in a Cluster2Cluster meeting; any other
organisation (a company, a research body, anything else) meeting a cluster is
on the "business" side of a Business2Cluster meeting; two non-clusters hold a
Business2Business meeting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    CancelledBy,
    MeetingAccepted,
    MeetingCancelled,
    MeetingDeclined,
    MeetingMode,
    MeetingParty,
    MeetingRequested,
    MeetingRequestExpired,
    RequestMessage,
    TimePreference,
)
from shared.contracts.registration import Attendance, MeetingType, OrganisationType
from shared.dispatch import StateChanges
from shared.errors import Conflict, NotAllowed, RuleViolation


class Status(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# A pair has at most one open request or meeting at a time.
OPEN = frozenset({Status.PENDING, Status.ACCEPTED})
OPEN_STATUSES = sorted(OPEN)  # for queries: `status = ANY($n::text[])`
# The same as SQL text, for queries that must use the partial index on open pairs
# (`meeting_requests_one_open_per_pair`): PostgreSQL uses a partial index only when
# it can prove the query implies its predicate, which it cannot from a parameter
# once the statement runs on a generic plan (a scan of the event's requests:
# 12 ms at 20,000 requests, against 0.02 ms through the index).
OPEN_STATUSES_SQL = "(" + ", ".join(f"'{status.value}'" for status in OPEN_STATUSES) + ")"

# The status each event leaves a request in: the aggregate and the projection both use it.
STATUS_AFTER: dict[type[EventPayload], Status] = {
    MeetingRequested: Status.PENDING,
    MeetingAccepted: Status.ACCEPTED,
    MeetingDeclined: Status.DECLINED,
    MeetingCancelled: Status.CANCELLED,
    MeetingRequestExpired: Status.EXPIRED,
}

APPROVED = "approved"  # the participant status that lets one meet others


@dataclass(frozen=True)
class EventRules:
    """What matching knows of a brokerage event's settings."""

    event_id: str
    organiser_id: str | None
    meeting_types: frozenset[MeetingType]
    max_meetings_per_participant: int | None
    request_expiry_hours: int


@dataclass(frozen=True)
class Participant:
    registration_id: str
    event_id: str
    name: str
    organisation_type: OrganisationType
    attendance: Attendance
    status: str

    def party(self) -> MeetingParty:
        return MeetingParty(
            registration_id=self.registration_id,
            name=self.name,
            organisation_type=self.organisation_type,
            attendance=self.attendance,
        )


@dataclass(frozen=True)
class Actor:
    """Who acts on a request: a participant (registration id), an organiser, admin, system."""

    role: CancelledBy
    id: str


@dataclass
class MeetingRequest:
    request_id: str = ""
    event_id: str = ""
    requester_id: str = ""
    recipient_id: str = ""
    meeting_type: MeetingType | None = None
    status: Status | None = None
    expires_at: datetime | None = None
    time_preference: TimePreference | None = None  # the requester's, for scheduling
    version: int = 0
    history: list[str] = field(default_factory=list)

    def apply(self, event: EventPayload) -> None:
        self.version += 1
        self.history.append(event.event_name)
        CHANGES.apply(self, event)

    @property
    def parties(self) -> tuple[str, str]:
        return self.requester_id, self.recipient_id

    def involves(self, registration_id: str) -> bool:
        return registration_id in self.parties


CHANGES = StateChanges[MeetingRequest]()


@CHANGES.on(MeetingRequested, MeetingAccepted)
def _opened(request: MeetingRequest, event: MeetingRequested | MeetingAccepted) -> None:
    # A request's first event is MeetingRequested, or MeetingAccepted when an organiser
    # arranged the meeting (or on its own when accepted): both name the pair.
    request.request_id = event.request_id
    request.event_id = event.event_id
    request.requester_id = event.requester_id
    request.recipient_id = event.recipient_id
    request.meeting_type = event.meeting_type
    request.status = STATUS_AFTER[type(event)]
    if isinstance(event, MeetingRequested):
        request.expires_at = event.expires_at
        request.time_preference = event.time_preference


@CHANGES.on(MeetingDeclined, MeetingCancelled, MeetingRequestExpired)
def _closed(request: MeetingRequest, event: EventPayload) -> None:
    request.status = STATUS_AFTER[type(event)]


@dataclass(frozen=True)
class Decision:
    """Events to append to the stream of `request_id`, after `expected_version`."""

    request_id: str
    expected_version: int
    events: list[EventPayload]


# -- derived facts --------------------------------------------------------------


def meeting_type_for(a: OrganisationType, b: OrganisationType) -> MeetingType:
    clusters = [a, b].count(OrganisationType.CLUSTER)
    if clusters == 2:
        return MeetingType.CLUSTER2CLUSTER
    if clusters == 1:
        return MeetingType.BUSINESS2CLUSTER
    return MeetingType.BUSINESS2BUSINESS


def mode_for(a: Attendance, b: Attendance) -> MeetingMode:
    if a == Attendance.ON_SITE and b == Attendance.ON_SITE:
        return MeetingMode.ONSITE
    return MeetingMode.ONLINE


def expiry_of(event: EventRules, now: datetime) -> datetime:
    return now + timedelta(hours=event.request_expiry_hours)


# -- rules ------------------------------------------------------------------------


def _check_pair(
    event: EventRules, first: Participant, second: Participant, *, fields: tuple[str, str]
) -> MeetingType:
    """Both approved for this event, two different organisations, a type the event allows."""
    for who, name in zip((first, second), fields, strict=True):
        if who.event_id != event.event_id:
            raise RuleViolation(name, "is not registered for this brokerage event")
        if who.status != APPROVED:
            raise Conflict(name, f"the registration is {who.status}, not approved for the event")
    if first.registration_id == second.registration_id:
        raise RuleViolation(fields[1], "a participant cannot meet itself")
    meeting_type = meeting_type_for(first.organisation_type, second.organisation_type)
    if meeting_type not in event.meeting_types:
        allowed = ", ".join(sorted(event.meeting_types))
        raise RuleViolation(
            "meeting_type", f"{meeting_type} meetings are not offered by this event ({allowed})"
        )
    return meeting_type


def _check_caps(
    event: EventRules, parties: tuple[Participant, Participant], accepted: Mapping[str, int]
) -> None:
    cap = event.max_meetings_per_participant
    if cap is None:
        return
    for party in parties:
        if accepted.get(party.registration_id, 0) >= cap:
            raise Conflict(
                "max_meetings_per_participant",
                f"{party.registration_id} already has {cap} accepted meetings, the event's cap",
            )


def _check_no_open(open_request: MeetingRequest | None) -> None:
    if open_request is None:
        return
    if open_request.status == Status.ACCEPTED:
        raise Conflict(
            "recipient_id",
            f"these two already have an accepted meeting ({open_request.request_id})",
        )
    raise Conflict(
        "recipient_id",
        f"a request between these two is already pending ({open_request.request_id})",
    )


def _accepted(
    request: MeetingRequest,
    event: EventRules,
    requester: Participant,
    recipient: Participant,
    *,
    accepted_by: str,
    arranged_by_organiser: bool = False,
    mutual: bool = False,
    time_preference: TimePreference | None = None,
) -> MeetingAccepted:
    assert request.meeting_type is not None
    return MeetingAccepted(
        request_id=request.request_id,
        event_id=event.event_id,
        requester_id=requester.registration_id,
        recipient_id=recipient.registration_id,
        meeting_type=request.meeting_type,
        mode=mode_for(requester.attendance, recipient.attendance),
        participants=[requester.party(), recipient.party()],
        accepted_by=accepted_by,
        arranged_by_organiser=arranged_by_organiser,
        mutual=mutual,
        time_preference=request.time_preference or time_preference,
    )


def _check_pending(request: MeetingRequest, now: datetime, action: str) -> None:
    if request.status != Status.PENDING:
        raise Conflict("status", f"a {request.status} request cannot be {action}")
    if request.expires_at is not None and now >= request.expires_at:
        raise Conflict("expires_at", f"the request expired at {request.expires_at.isoformat()}")


# -- decisions --------------------------------------------------------------------


def request_meeting(
    event: EventRules,
    requester: Participant,
    recipient: Participant,
    *,
    request_id: str,
    message: str | None,
    open_request: MeetingRequest | None,
    language: str | None = None,
    time_preference: TimePreference | None = None,
    accepted: Mapping[str, int],
    now: datetime,
) -> Decision:
    """A new pending request, or, when the recipient's request to the requester is
    pending, that request accepted: two requests in opposite directions are one meeting
    (with the standing request's time preference, else this one's)."""
    if time_preference is not None and time_preference.is_empty():
        time_preference = None
    meeting_type = _check_pair(event, requester, recipient, fields=("requester_id", "recipient_id"))
    if (
        open_request is not None
        and open_request.status == Status.PENDING
        and open_request.requester_id == recipient.registration_id
        and (open_request.expires_at is None or now < open_request.expires_at)
    ):
        _check_caps(event, (recipient, requester), accepted)
        # The recipient's request stands, and the requester (its recipient) accepts it.
        meeting = _accepted(
            open_request,
            event,
            recipient,
            requester,
            accepted_by=requester.registration_id,
            mutual=True,
            time_preference=time_preference,
        )
        return Decision(open_request.request_id, open_request.version, [meeting])
    _check_no_open(open_request)
    _check_caps(event, (requester, recipient), accepted)
    requested = MeetingRequested(
        request_id=request_id,
        event_id=event.event_id,
        requester_id=requester.registration_id,
        recipient_id=recipient.registration_id,
        meeting_type=meeting_type,
        message=None if message is None else RequestMessage(text=message, language=language),
        expires_at=expiry_of(event, now),
        time_preference=time_preference,
    )
    return Decision(request_id, 0, [requested])


def accept(
    request: MeetingRequest,
    event: EventRules,
    requester: Participant,
    recipient: Participant,
    *,
    by: str,
    accepted: Mapping[str, int],
    now: datetime,
) -> MeetingAccepted:
    if by != request.recipient_id:
        raise NotAllowed("recipient_id", "only the recipient accepts a request")
    _check_pending(request, now, "accepted")
    _check_pair(event, requester, recipient, fields=("requester_id", "recipient_id"))
    _check_caps(event, (requester, recipient), accepted)
    return _accepted(request, event, requester, recipient, accepted_by=by)


def decline(
    request: MeetingRequest, *, by: str, reason: str | None, now: datetime
) -> MeetingDeclined:
    if by != request.recipient_id:
        raise NotAllowed("recipient_id", "only the recipient declines a request")
    _check_pending(request, now, "declined")
    return MeetingDeclined(
        request_id=request.request_id,
        event_id=request.event_id,
        requester_id=request.requester_id,
        recipient_id=request.recipient_id,
        reason=reason,
    )


def cancel(
    request: MeetingRequest,
    *,
    by: Actor,
    organiser_id: str | None,
    reason: str | None,
) -> MeetingCancelled:
    """Either side cancels a pending request or an accepted meeting; so may the event's
    organiser, the admin, and matching itself (a participant left the event)."""
    allowed = (
        (by.role == CancelledBy.PARTICIPANT and request.involves(by.id))
        or (by.role == CancelledBy.ORGANISER and by.id == organiser_id)
        or by.role in (CancelledBy.ADMIN, CancelledBy.SYSTEM)
    )
    if not allowed:
        raise NotAllowed("request_id", "only one of the two participants or the organiser cancels")
    if request.status not in OPEN:
        raise Conflict("status", f"a {request.status} request cannot be cancelled")
    return MeetingCancelled(
        request_id=request.request_id,
        event_id=request.event_id,
        requester_id=request.requester_id,
        recipient_id=request.recipient_id,
        cancelled_by=by.id,
        cancelled_by_role=by.role,
        reason=reason,
        was_accepted=request.status == Status.ACCEPTED,
    )


def expire(request: MeetingRequest, now: datetime) -> MeetingRequestExpired | None:
    """The expiry of a pending request that is due, else None (answered or not yet due)."""
    if request.status != Status.PENDING or request.expires_at is None:
        return None
    if now < request.expires_at:
        return None
    return MeetingRequestExpired(
        request_id=request.request_id,
        event_id=request.event_id,
        requester_id=request.requester_id,
        recipient_id=request.recipient_id,
        expired_at=now,
    )


def arrange(
    event: EventRules,
    first: Participant,
    second: Participant,
    *,
    organiser_id: str,
    request_id: str,
    open_request: MeetingRequest | None,
    accepted: Mapping[str, int],
) -> Decision:
    """An organiser's meeting between two participants, accepted at once. A pending
    request between them (either direction) is accepted rather than duplicated."""
    meeting_type = _check_pair(event, first, second, fields=("participants[0]", "participants[1]"))
    if open_request is not None and open_request.status == Status.PENDING:
        forward = open_request.requester_id == first.registration_id
        requester, recipient = (first, second) if forward else (second, first)
        _check_caps(event, (requester, recipient), accepted)
        meeting = _accepted(
            open_request,
            event,
            requester,
            recipient,
            accepted_by=organiser_id,
            arranged_by_organiser=True,
        )
        return Decision(open_request.request_id, open_request.version, [meeting])
    if open_request is not None:
        raise Conflict(
            "participants",
            f"these two already have an accepted meeting ({open_request.request_id})",
        )
    _check_caps(event, (first, second), accepted)
    fresh = MeetingRequest(
        request_id=request_id,
        event_id=event.event_id,
        requester_id=first.registration_id,
        recipient_id=second.registration_id,
        meeting_type=meeting_type,
    )
    meeting = _accepted(
        fresh, event, first, second, accepted_by=organiser_id, arranged_by_organiser=True
    )
    return Decision(request_id, 0, [meeting])
