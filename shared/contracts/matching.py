"""Events published by the matching service on `matching.events`.

One stream per meeting request (`meeting-request-<request_id>`); the record key
is the brokerage event's id. Every event names the request, the brokerage event
and both participants (registration ids), so a consumer needs no other topic to
know who is concerned. `MeetingAccepted` is the one event that says "these two
meet": it also carries what scheduling needs (each side's attendance and
organisation type, the meeting type and whether it is held on site or online),
whether the participants agreed or an organiser arranged it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.base import EventPayload
from shared.contracts.registration import Attendance, MeetingType, OrganisationType
from shared.contracts.registry import Upcaster


class MeetingMode(StrEnum):
    ONSITE = "onsite"  # both participants attend on site: a table is needed
    ONLINE = "online"  # at least one attends remotely


class CancelledBy(StrEnum):
    PARTICIPANT = "participant"  # one of the two sides
    ORGANISER = "organiser"  # the event's organiser
    ADMIN = "admin"  # the platform admin
    SYSTEM = "system"  # matching itself, e.g. a participant withdrew or was rejected


class MeetingParty(BaseModel):
    """One side of an agreed meeting, as scheduling needs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registration_id: str
    name: str
    organisation_type: OrganisationType
    attendance: Attendance


class _MatchingEvent(EventPayload):
    producer: ClassVar[str] = "matching"

    request_id: str
    event_id: str
    requester_id: str
    recipient_id: str


class RequestMessage(BaseModel):
    """What the requester writes, and the language it proposes for the meeting."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str
    language: str | None = None  # ISO 639-1, e.g. "de"; None: no preference


class PartOfDay(StrEnum):
    MORNING = "morning"  # slots starting before noon, in the event's time zone
    AFTERNOON = "afternoon"  # slots starting at noon or later


class TimePreference(BaseModel):
    """When the requester would like the meeting: every criterion given must hold (a
    morning of day 2; or some slots of the event's grid). Scheduling intersects it with
    the organiser's rule for the meeting type; a meeting left with no slot is reported
    unschedulable, saying why. Matching does not know the grid: day numbers and slot ids
    are checked by scheduling."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    part_of_day: PartOfDay | None = None
    day: int | None = Field(default=None, ge=1, le=366)  # the event's first day is 1
    slots: list[str] | None = None  # slot ids of scheduling's grid, e.g. "d1-s1-03"

    def is_empty(self) -> bool:
        return self.part_of_day is None and self.day is None and self.slots is None


class MeetingRequestedV1(_MatchingEvent):
    """Version 1, superseded (read through `upcast_meeting_requested_v1`): the message was
    plain text, with no language."""

    event_name: ClassVar[str] = "MeetingRequested"
    meeting_type: MeetingType
    message: str | None = None
    expires_at: datetime


class MeetingRequested(_MatchingEvent):
    """A participant asks another for a meeting; it expires unanswered at `expires_at`.

    Version 2: the message carries the language the requester proposes for the meeting.
    `time_preference` (optional, None when absent) was added to version 2 without a new
    version: events written before it read as having none, so no upcaster is needed; a
    consumer older than the field would reject a record carrying one, but it would
    reject a version 3 just the same, and the services are deployed together."""

    event_name: ClassVar[str] = "MeetingRequested"
    event_version: ClassVar[int] = 2
    meeting_type: MeetingType
    message: RequestMessage | None = None
    expires_at: datetime
    time_preference: TimePreference | None = None


def upcast_meeting_requested_v1(data: dict[str, Any]) -> dict[str, Any]:
    text = data.get("message")
    return {**data, "message": None if text is None else {"text": text, "language": None}}


class MeetingAccepted(_MatchingEvent):
    """The two participants will meet: accepted by the recipient, or arranged by an organiser.

    `participants` lists both sides, requester first. `mode` is `onsite` when both
    attend on site, else `online`. `mutual` marks a request accepted because the
    recipient asked for the same meeting; `arranged_by_organiser` one created (or
    confirmed) by the event's organiser, whose id is then `accepted_by`.
    """

    event_name: ClassVar[str] = "MeetingAccepted"
    meeting_type: MeetingType
    mode: MeetingMode
    participants: list[MeetingParty]
    accepted_by: str
    arranged_by_organiser: bool = False
    mutual: bool = False
    # the request's preference, for scheduling (optional: older events have none)
    time_preference: TimePreference | None = None


class MeetingDeclined(_MatchingEvent):
    """The recipient declined the request."""

    event_name: ClassVar[str] = "MeetingDeclined"
    reason: str | None = None


class MeetingCancelled(_MatchingEvent):
    """A pending request withdrawn, or an agreed meeting called off (`was_accepted`)."""

    event_name: ClassVar[str] = "MeetingCancelled"
    cancelled_by: str  # registration id, organiser id, "admin" or "matching"
    cancelled_by_role: CancelledBy
    reason: str | None = None
    was_accepted: bool


class MeetingRequestExpired(_MatchingEvent):
    """The request stayed unanswered past the event's `request_expiry_hours`."""

    event_name: ClassVar[str] = "MeetingRequestExpired"
    expired_at: datetime


# Old versions still found in streams and topics: (old model, new model, upcaster).
MATCHING_UPCASTERS: list[tuple[type[EventPayload], type[EventPayload], Upcaster]] = [
    (MeetingRequestedV1, MeetingRequested, upcast_meeting_requested_v1),
]

MATCHING_EVENTS: list[type[EventPayload]] = [
    MeetingRequested,
    MeetingAccepted,
    MeetingDeclined,
    MeetingCancelled,
    MeetingRequestExpired,
]
