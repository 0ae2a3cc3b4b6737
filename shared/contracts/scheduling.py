"""Events published by the scheduling service on `scheduling.events`.

A meeting is identified by matching's meeting-request id: `meeting_id` is the
`request_id` of the `MeetingAccepted` that made it. The record key is the
brokerage event's id, so every placement of one event's meetings stays in order.

A move is not an event of its own: **a `SlotAssigned` for a meeting that already
has a slot is a move** to the new slot (and table). Consumers compare it with
the slot they know; the same slot and table again is a repeat and changes
nothing. This keeps one event for "the meeting is now here", whether scheduling
placed it right after acceptance, re-optimised the agenda or an organiser moved
it by hand.

`participants` lists both sides' registration ids (requester first, as in
`MeetingAccepted.participants`), so a consumer needs no other topic to know who
is concerned. Slot times are timezone-aware datetimes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime

from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingMode


class ReleaseReason(StrEnum):
    MEETING_CANCELLED = "meeting_cancelled"  # matching cancelled the meeting (MeetingCancelled)
    PARTICIPANT_UNAVAILABLE = "participant_unavailable"  # withdrew, rejected, availability
    ORGANISER = "organiser"  # the organiser took it off the agenda
    REOPTIMISED = "reoptimised"  # a full re-optimisation found no slot for it any more
    EVENT_CHANGED = "event_changed"  # the organiser changed the grid: its slot or table is gone


class _SchedulingEvent(EventPayload):
    producer: ClassVar[str] = "scheduling"

    meeting_id: str  # matching's request_id
    event_id: str
    participants: list[str]  # registration ids, requester first


class SlotAssigned(_SchedulingEvent):
    """The meeting is placed in this slot (and table, on site); again for a meeting = a move."""

    event_name: ClassVar[str] = "SlotAssigned"
    slot_start: AwareDatetime
    slot_end: AwareDatetime
    table: int | None = None  # None for online meetings
    mode: MeetingMode
    slot_id: str | None = None  # the slot's id in the event's grid (as in the agenda)


class SlotReleased(_SchedulingEvent):
    """The meeting no longer has a slot; `reason` says why."""

    event_name: ClassVar[str] = "SlotReleased"
    reason: ReleaseReason
    detail: str | None = None  # for a re-optimisation: why no slot was left (the solver's)


class MeetingUnschedulable(_SchedulingEvent):
    """No slot could be found for an agreed meeting (no shared free slot, caps, tables)."""

    event_name: ClassVar[str] = "MeetingUnschedulable"
    reason: str
    mode: MeetingMode | None = None  # the mode the meeting would have (None: not said)


class MeetingDropped(_SchedulingEvent):
    """The agenda no longer holds a meeting that had no slot (pending or unschedulable):
    matching cancelled it, or a participant left. (A meeting with a slot gets a
    `SlotReleased` instead.)"""

    event_name: ClassVar[str] = "MeetingDropped"
    reason: ReleaseReason
    mode: MeetingMode


class MeetingLocked(_SchedulingEvent):
    """The organiser locked the placed meeting where it is: re-optimisation leaves it."""

    event_name: ClassVar[str] = "MeetingLocked"
    locked_by: str  # the organiser's (or the admin's) id


class MeetingUnlocked(_SchedulingEvent):
    """The organiser unlocked the meeting: re-optimisation may move it again. (A meeting
    that loses its slot is unlocked with it, without an event of its own.)"""

    event_name: ClassVar[str] = "MeetingUnlocked"
    unlocked_by: str | None = None  # None: scheduling itself (the meeting had to move)


class AgendaPublished(EventPayload):
    """The organiser published the event's agenda; participants may now rely on it."""

    producer: ClassVar[str] = "scheduling"
    event_name: ClassVar[str] = "AgendaPublished"
    event_id: str
    published_at: AwareDatetime


class TimeWindowSet(EventPayload):
    """The organiser's time window for a meeting type: its meetings may take only these
    slots from now on (`allowed_slots` None: any slot again)."""

    producer: ClassVar[str] = "scheduling"
    event_name: ClassVar[str] = "TimeWindowSet"
    event_id: str
    meeting_type: str
    allowed_slots: list[str] | None  # slot ids of the event's grid, in time order
    set_by: str  # the organiser's (or the admin's) id


SCHEDULING_EVENTS: list[type[EventPayload]] = [
    SlotAssigned,
    SlotReleased,
    MeetingUnschedulable,
    AgendaPublished,
    MeetingDropped,
    MeetingLocked,
    MeetingUnlocked,
    TimeWindowSet,
]
