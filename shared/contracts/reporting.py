"""Events published by the reporting service on `reporting.events`.

What happened at and after a brokerage event, as organisers and participants
report it: who came (`AttendanceRecorded`), which placed meetings did not take
place (`MeetingMarkedNotHeld`), each side's rating of a meeting
(`MeetingFeedbackGiven`) and, months later, what came of it (`OutcomeReported`).
Attendance and not-held marks live in one stream per brokerage event
(`event-report-<event_id>`); feedback and outcomes in one stream per meeting
(`meeting-feedback-<meeting_id>`). The record key is the brokerage event's id.
A meeting is identified by matching's request id, as in `scheduling.events`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from shared.contracts.base import EventPayload


class Rating(StrEnum):
    DID_NOT_TAKE_PLACE = "did_not_take_place"
    NO_INTEREST = "no_interest"
    INFORMATIVE_NO_COOPERATION = "informative_no_cooperation"
    COOPERATION_POSSIBLE = "cooperation_possible"


class Outcome(StrEnum):
    NEGOTIATION_STARTED = "negotiation_started"
    AGREEMENT_REACHED = "agreement_reached"


class AgreementKind(StrEnum):
    JOINT_FUNDING_PROPOSAL = "joint_funding_proposal"
    JOINT_EVENT = "joint_event"
    OTHER = "other"


class _ReportingEvent(EventPayload):
    producer: ClassVar[str] = "reporting"

    event_id: str


class AttendanceRecorded(_ReportingEvent):
    """The organiser records whether a participant came to the event (in person)."""

    event_name: ClassVar[str] = "AttendanceRecorded"
    registration_id: str
    attended: bool
    recorded_by: str  # organiser id or "admin"


class MeetingMarkedNotHeld(_ReportingEvent):
    """The organiser records that a placed meeting did not take place."""

    event_name: ClassVar[str] = "MeetingMarkedNotHeld"
    meeting_id: str
    reason: str | None = None
    recorded_by: str


class MeetingFeedbackGiven(_ReportingEvent):
    """One side of a meeting rates it; a later rating by the same side replaces it."""

    event_name: ClassVar[str] = "MeetingFeedbackGiven"
    meeting_id: str
    registration_id: str  # the side giving the feedback
    rating: Rating
    comment: str | None = None


class OutcomeReported(_ReportingEvent):
    """One side reports what came of a meeting; `kind` only with an agreement."""

    event_name: ClassVar[str] = "OutcomeReported"
    meeting_id: str
    registration_id: str
    outcome: Outcome
    kind: AgreementKind | None = None
    note: str | None = None


class MeetingToRate(BaseModel):
    """A held meeting, as the invited side saw it: with whom, when, where to rate it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meeting_id: str
    partner_id: str
    partner_name: str  # the other side's organisation name, as registered
    slot_start: datetime
    slot_end: datetime
    feedback_url: str  # reporting's endpoint for this meeting's rating (POST, the side's key)


class InvitedParticipant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    registration_id: str
    meetings: list[MeetingToRate]


class FeedbackInvitationsRequested(_ReportingEvent):
    """The organiser asks the participants to rate their meetings: one round of invitations.

    Each request is a new round (`round_id`, `round` counting from 1 per brokerage
    event): a later round is a deliberate reminder. It lists, per participant, the
    held meetings that participant has not rated yet (placed, ended, not cancelled,
    not marked not held), with what a message needs, so a consumer waits for no
    other topic. Participants with nothing left to rate are not listed.
    """

    event_name: ClassVar[str] = "FeedbackInvitationsRequested"
    round_id: str
    round: int
    requested_by: str  # organiser id or "admin"
    event_title: str  # the brokerage event's name
    time_zone: str  # the brokerage event's IANA zone
    participants: list[InvitedParticipant]


REPORTING_EVENTS: list[type[EventPayload]] = [
    AttendanceRecorded,
    MeetingMarkedNotHeld,
    MeetingFeedbackGiven,
    OutcomeReported,
    FeedbackInvitationsRequested,
]
