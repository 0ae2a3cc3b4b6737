"""Scheduling's rules around the solver, pure: instances from the projection, changes as events.

The solver (`services.scheduling.solver`) decides where meetings go; this module turns the
service's view of an event (grid, attendees, meetings) into a solver `Instance`, and the
solver's answers into the events the service publishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from services.scheduling.grid import EventGrid, Interval, usable_slots
from services.scheduling.solver import (
    Assignment,
    Fixed,
    Instance,
    Meeting,
    Participant,
    Schedule,
    Session,
    Slot,
    Unscheduled,
)
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingMode, PartOfDay, TimePreference
from shared.contracts.scheduling import (
    AgendaPublished,
    MeetingDropped,
    MeetingLocked,
    MeetingUnlocked,
    MeetingUnschedulable,
    ReleaseReason,
    SlotAssigned,
    SlotReleased,
)
from shared.dispatch import StateChanges
from shared.errors import Conflict, RuleViolation

Mode = Literal["onsite", "online"]


class MeetingStatus(StrEnum):
    """Where a meeting stands on the agenda (the `meetings.status` column holds the values)."""

    PENDING = "pending"  # accepted; the grid or a participant's registration not known yet
    PLACED = "placed"  # has a slot (and a table, on site)
    UNSCHEDULED = "unscheduled"  # no slot could be found
    CANCELLED = "cancelled"  # cancelled by matching, or a participant left


# The meetings a re-optimisation (re)places: the ones with a place or in want of one.
LIVE = (MeetingStatus.PLACED, MeetingStatus.UNSCHEDULED)
# The meetings listed as waiting for a slot.
WAITING = (MeetingStatus.UNSCHEDULED, MeetingStatus.PENDING)


# -- the agenda's history ----------------------------------------------------------------


@dataclass
class AgendaHistory:
    """An event's agenda as its own stream tells it: the write model the organiser's
    commands decide on (`eventstore.load_into`). A meeting the stream has not mentioned
    yet is pending (it is known from matching's MeetingAccepted only)."""

    version: int = 0
    published: bool = False
    status: dict[str, MeetingStatus] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)

    def apply(self, event: EventPayload) -> None:
        self.version += 1
        HISTORY.apply(self, event)

    def status_of(self, meeting_id: str) -> MeetingStatus:
        return self.status.get(meeting_id, MeetingStatus.PENDING)


HISTORY = StateChanges[AgendaHistory]()


@HISTORY.on(SlotAssigned)
def _h_assigned(agenda: AgendaHistory, e: SlotAssigned) -> None:
    agenda.status[e.meeting_id] = MeetingStatus.PLACED


@HISTORY.on(SlotReleased, MeetingUnschedulable, MeetingDropped)
def _h_left(agenda: AgendaHistory, e: SlotReleased | MeetingUnschedulable | MeetingDropped) -> None:
    status = (
        status_after_release(e.reason)
        if isinstance(e, SlotReleased)
        else MeetingStatus.UNSCHEDULED
        if isinstance(e, MeetingUnschedulable)
        else MeetingStatus.CANCELLED
    )
    agenda.status[e.meeting_id] = status
    if not stays_locked(status, True):
        agenda.locked.discard(e.meeting_id)


@HISTORY.on(MeetingLocked)
def _h_locked(agenda: AgendaHistory, e: MeetingLocked) -> None:
    agenda.locked.add(e.meeting_id)


@HISTORY.on(MeetingUnlocked)
def _h_unlocked(agenda: AgendaHistory, e: MeetingUnlocked) -> None:
    agenda.locked.discard(e.meeting_id)


@HISTORY.on(AgendaPublished)
def _h_published(agenda: AgendaHistory, _: AgendaPublished) -> None:
    agenda.published = True


# -- rules -----------------------------------------------------------------------------


def ensure_unpublished(published: bool, what: str) -> None:
    """Published means nothing moves: no re-optimisation, no second publication."""
    if published:
        raise Conflict("event_id", f"the agenda is published: {what} is no longer possible")


def moves_by_itself(published: bool) -> bool:
    """Whether the agenda still moves meetings by itself (e.g. out of a participant's
    side-programme time): only until it is published."""
    return not published


def ensure_lockable(status: MeetingStatus) -> None:
    """Only placed meetings can be locked (a lock keeps a meeting where it is)."""
    if status != MeetingStatus.PLACED:
        raise Conflict("meeting_id", f"the meeting is {status.value}, not placed")


def stays_locked(status: MeetingStatus, locked: bool) -> bool:
    """Auto-unlock: a lock holds while the meeting keeps a place; a meeting that loses
    its slot (released, unschedulable, cancelled) is unlocked with it."""
    return locked and status == MeetingStatus.PLACED


def auto_unlock(event_id: str, meeting: AgendaMeeting) -> list[EventPayload]:
    """A locked meeting that must move by itself (its participant became busy) loses its
    lock first: a MeetingUnlocked by nobody (scheduling itself)."""
    if not meeting.locked:
        return []
    return [
        MeetingUnlocked(
            meeting_id=meeting.meeting_id,
            event_id=event_id,
            participants=list(meeting.participants),
            unlocked_by=None,
        )
    ]


def still_fits(grid: EventGrid, slot_id: str, slot_start: datetime, table_no: int | None) -> bool:
    """Whether a placed meeting's slot and table are still in the event's (changed) grid:
    the slot id names the same time, and the table is within the tables there are."""
    slot = grid.by_id.get(slot_id)
    if slot is None or slot.start != slot_start:
        return False
    return table_no is None or table_no <= grid.tables


def status_after_release(reason: ReleaseReason) -> MeetingStatus:
    """A re-optimisation that finds no slot leaves the meeting unscheduled; any other
    release (cancelled, a participant left or is busy, the organiser) cancels it unless a
    later event says otherwise."""
    if reason == ReleaseReason.REOPTIMISED:
        return MeetingStatus.UNSCHEDULED
    return MeetingStatus.CANCELLED


@dataclass(frozen=True, slots=True)
class Attendee:
    registration_id: str
    attendance: str  # on_site | remote
    availability: tuple[Interval, ...] = ()
    approved: bool = True
    blocked: tuple[Interval, ...] = ()  # side programme items joined


@dataclass(frozen=True, slots=True)
class Place:
    slot_id: str
    table: int | None


@dataclass(frozen=True, slots=True)
class AgendaMeeting:
    """A meeting as the projection holds it."""

    meeting_id: str
    participants: tuple[str, ...]
    mode: Mode
    status: MeetingStatus
    place: Place | None = None
    locked: bool = False
    meeting_type: str | None = None  # matching's (Cluster2Cluster, ...); None if unknown
    reason: str | None = None  # why unscheduled (or cancelled)
    time_preference: TimePreference | None = None  # the requester's, None: any time


# The organiser's time windows: meeting type -> the slot ids its meetings may take.
Windows = Mapping[str, tuple[str, ...]]


def window_slots(grid: EventGrid, slot_ids: Sequence[str]) -> tuple[str, ...]:
    """A window's slots, checked against the grid and put in time order."""
    unknown = [s for s in slot_ids if s not in grid.by_id]
    if unknown:
        raise RuleViolation("allowed_slots", f"unknown slot(s) {', '.join(unknown)}")
    wanted = set(slot_ids)
    return tuple(s.id for s in grid.slots if s.id in wanted)


def preferred_slots(grid: EventGrid, preference: TimePreference) -> frozenset[str]:
    """The slots of the grid a time preference accepts (every criterion given holds;
    morning and afternoon by the slot's start in the event's zone)."""
    days = sorted(grid.days)
    day = days[preference.day - 1] if preference.day and preference.day <= len(days) else None
    wanted = None if preference.slots is None else set(preference.slots)
    out: set[str] = set()
    for s in grid.slots:
        if wanted is not None and s.id not in wanted:
            continue
        if preference.day is not None and s.start.date() != day:
            continue
        if preference.part_of_day == PartOfDay.MORNING and s.start.hour >= 12:
            continue
        if preference.part_of_day == PartOfDay.AFTERNOON and s.start.hour < 12:
            continue
        out.add(s.id)
    return frozenset(out)


def allowed_for(
    meeting: AgendaMeeting, windows: Windows, grid: EventGrid | None = None
) -> frozenset[str] | None:
    """The slots a meeting may take: its type's window (the organiser's rule) and the
    requester's time preference (with `grid`), both where both are set; any slot for a
    locked meeting (it stays where the organiser put it) or one with neither."""
    if meeting.locked:
        return None
    window = None if meeting.meeting_type is None else windows.get(meeting.meeting_type)
    allowed = None if window is None else frozenset(window)
    if meeting.time_preference is not None and grid is not None:
        preferred = preferred_slots(grid, meeting.time_preference)
        allowed = preferred if allowed is None else allowed & preferred
    return allowed


def describe(preference: TimePreference) -> str:
    """A time preference in words, e.g. "morning of day 2"."""
    when = "" if preference.part_of_day is None else preference.part_of_day.value
    if preference.day is not None:
        when = f"{when} of day {preference.day}" if when else f"day {preference.day}"
    if preference.slots is not None:
        listed = f"slots {', '.join(preference.slots)}"
        when = f"{when}, {listed}" if when else listed
    return when


def no_slot_reason(grid: EventGrid, meeting: AgendaMeeting, windows: Windows) -> str | None:
    """Why the requester's time preference leaves the meeting no slot at all (alone, or
    with the organiser's rule for its type); None if it leaves some, or there is none."""
    preference = meeting.time_preference
    if meeting.locked or preference is None:
        return None
    preferred = preferred_slots(grid, preference)
    said = f"the requester's time preference ({describe(preference)})"
    if not preferred:
        if preference.day is not None and preference.day > len(grid.days):
            return f"{said} names a day the event does not have (it has {len(grid.days)})"
        return f"{said} matches no slot of the event"
    window = None if meeting.meeting_type is None else windows.get(meeting.meeting_type)
    if window is not None and not preferred & set(window):
        return (
            f"{said} and the organiser's rule for {meeting.meeting_type} meetings"
            " have no slot in common"
        )
    return None


def explained(
    schedule: Schedule, grid: EventGrid, meetings: Sequence[AgendaMeeting], windows: Windows
) -> Schedule:
    """The schedule with the solver's reason for an unscheduled meeting replaced by the
    requester's preference where that alone leaves it no slot."""
    by_id = {m.meeting_id: m for m in meetings}
    unscheduled = []
    for u in schedule.unscheduled:
        meeting = by_id.get(u.meeting)
        why = None if meeting is None else no_slot_reason(grid, meeting, windows)
        unscheduled.append(u if why is None else Unscheduled(u.meeting, why))
    return Schedule(list(schedule.assignments), unscheduled)


def meeting_mode(mode: str, attendances: Sequence[str]) -> Mode:
    """The online/on-site choice: online when matching says so or any side attends
    remotely; else on site."""
    if mode == MeetingMode.ONLINE.value or any(a == "remote" for a in attendances):
        return "online"
    return "onsite"


def build_instance(
    grid: EventGrid,
    attendees: Mapping[str, Attendee],
    meetings: Sequence[AgendaMeeting],
    windows: Windows | None = None,
    max_idle_spread: int | None = None,
) -> Instance:
    """The solver's instance: the event's grid, the meetings' participants and the meetings.

    A locked meeting is fixed where it is; an unknown attendee is available throughout;
    a meeting whose type has a window (`windows`) may take only its slots.
    """
    windows = windows or {}
    sessions = tuple(
        Session(sid, tuple(Slot(s.id, s.start.isoformat(), s.end.isoformat()) for s in slots))
        for sid, slots in grid.sessions_of_slots()
    )
    ids: dict[str, None] = {}
    for m in meetings:
        for pid in m.participants:
            ids.setdefault(pid, None)
    participants = tuple(
        Participant(
            pid,
            usable_slots(grid, attendees[pid].availability, attendees[pid].blocked)
            if pid in attendees
            else None,
            grid.max_meetings,
        )
        for pid in ids
    )
    return Instance(
        name=grid.event_id,
        tables=grid.tables,
        sessions=sessions,
        participants=participants,
        meetings=tuple(
            Meeting(
                m.meeting_id,
                m.participants,
                m.mode,
                fixed=Fixed(m.place.slot_id, m.place.table) if m.locked and m.place else None,
                allowed_slots=allowed_for(m, windows, grid),
            )
            for m in meetings
        ),
        max_idle_spread=max_idle_spread,
    )


def current_schedule(meetings: Sequence[AgendaMeeting]) -> Schedule:
    """The placed meetings as a solver schedule."""
    return Schedule(
        [Assignment(m.meeting_id, m.place.slot_id, m.place.table) for m in meetings if m.place]
    )


# -- changes ---------------------------------------------------------------------------

ChangeKind = Literal["assigned", "moved", "released", "unscheduled"]


@dataclass(frozen=True, slots=True)
class Change:
    """What a re-optimisation does to one meeting.

    assigned: had no place, has one now; moved: another slot or table; released: had a place,
    has none now; unscheduled: had none and still has none (the reason may differ).
    """

    meeting_id: str
    kind: ChangeKind
    place: Place | None = None
    reason: str | None = None


def diff(before: Mapping[str, Place | None], after: Schedule) -> list[Change]:
    """The changes from `before` (every meeting's place, or None) to the schedule `after`.

    Meetings that stay where they are produce no change.
    """
    changes: list[Change] = []
    for a in after.assignments:
        new = Place(a.slot, a.table)
        old = before.get(a.meeting)
        if old is None:
            changes.append(Change(a.meeting, "assigned", new))
        elif old != new:
            changes.append(Change(a.meeting, "moved", new))
    for u in after.unscheduled:
        kind: ChangeKind = "released" if before.get(u.meeting) is not None else "unscheduled"
        changes.append(Change(u.meeting, kind, reason=u.reason))
    return changes


# -- events ----------------------------------------------------------------------------


def slot_assigned(grid: EventGrid, meeting: AgendaMeeting, place: Place) -> SlotAssigned:
    slot = grid.by_id[place.slot_id]
    return SlotAssigned(
        meeting_id=meeting.meeting_id,
        event_id=grid.event_id,
        participants=list(meeting.participants),
        slot_start=slot.start,
        slot_end=slot.end,
        table=place.table,
        mode=MeetingMode(meeting.mode),
        slot_id=place.slot_id,
    )


def slot_released(
    event_id: str, meeting: AgendaMeeting, reason: ReleaseReason, detail: str | None = None
) -> SlotReleased:
    return SlotReleased(
        meeting_id=meeting.meeting_id,
        event_id=event_id,
        participants=list(meeting.participants),
        reason=reason,
        detail=detail,
    )


def leaves(event_id: str, meeting: AgendaMeeting, reason: ReleaseReason) -> EventPayload | None:
    """A cancelled meeting (matching cancelled it, a participant left) leaves the agenda:
    a SlotReleased if it had a slot, else a MeetingDropped; nothing if it is gone already."""
    if meeting.status == MeetingStatus.CANCELLED:
        return None
    if meeting.status == MeetingStatus.PLACED:
        return slot_released(event_id, meeting, reason)
    return MeetingDropped(
        meeting_id=meeting.meeting_id,
        event_id=event_id,
        participants=list(meeting.participants),
        reason=reason,
        mode=MeetingMode(meeting.mode),
    )


def unschedulable(grid: EventGrid, meeting: AgendaMeeting, reason: str) -> MeetingUnschedulable:
    return MeetingUnschedulable(
        meeting_id=meeting.meeting_id,
        event_id=grid.event_id,
        participants=list(meeting.participants),
        reason=reason,
        mode=MeetingMode(meeting.mode),
    )


def events_of(
    grid: EventGrid, meetings: Mapping[str, AgendaMeeting], changes: Sequence[Change]
) -> list[EventPayload]:
    """The events recording a re-optimisation's changes (for a still-unscheduled meeting,
    one only when its reason changed)."""
    out: list[EventPayload] = []
    for c in changes:
        meeting = meetings[c.meeting_id]
        if c.kind in ("assigned", "moved"):
            assert c.place is not None
            out.append(slot_assigned(grid, meeting, c.place))
        elif c.kind == "released":
            out.append(slot_released(grid.event_id, meeting, ReleaseReason.REOPTIMISED, c.reason))
        elif c.reason != meeting.reason:
            out.append(unschedulable(grid, meeting, c.reason or ""))
    return out
