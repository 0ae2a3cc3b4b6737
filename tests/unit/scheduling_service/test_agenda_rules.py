"""Scheduling's rules, one function each, and the agenda's history folded from its events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.scheduling import domain
from services.scheduling.domain import AgendaHistory, AgendaMeeting, MeetingStatus, Place
from shared.contracts.matching import MeetingMode
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
from shared.errors import Conflict

AT = datetime(2031, 6, 2, 9, tzinfo=UTC)


def _meeting(status: MeetingStatus, locked: bool = False) -> AgendaMeeting:
    place = Place("d1-s1-01", 1) if status == MeetingStatus.PLACED else None
    return AgendaMeeting("m1", ("a", "b"), "onsite", status, place, locked=locked)


def test_the_states_are_the_columns_values() -> None:
    assert [s.value for s in MeetingStatus] == ["pending", "placed", "unscheduled", "cancelled"]
    assert MeetingStatus("placed") is MeetingStatus.PLACED


def test_published_means_nothing_moves() -> None:
    domain.ensure_unpublished(False, "re-optimisation")
    with pytest.raises(Conflict, match="published: re-optimisation"):
        domain.ensure_unpublished(True, "re-optimisation")
    assert domain.moves_by_itself(False) and not domain.moves_by_itself(True)


def test_only_placed_meetings_can_be_locked() -> None:
    domain.ensure_lockable(MeetingStatus.PLACED)
    for status in (MeetingStatus.PENDING, MeetingStatus.UNSCHEDULED, MeetingStatus.CANCELLED):
        with pytest.raises(Conflict, match=f"is {status.value}, not placed"):
            domain.ensure_lockable(status)


def test_a_meeting_that_loses_its_slot_loses_its_lock() -> None:
    assert domain.stays_locked(MeetingStatus.PLACED, True)
    assert not domain.stays_locked(MeetingStatus.PLACED, False)
    assert not domain.stays_locked(MeetingStatus.UNSCHEDULED, True)
    assert domain.auto_unlock("ev1", _meeting(MeetingStatus.PLACED)) == []
    (unlocked,) = domain.auto_unlock("ev1", _meeting(MeetingStatus.PLACED, locked=True))
    assert isinstance(unlocked, MeetingUnlocked) and unlocked.unlocked_by is None


def test_online_when_matching_says_so_or_a_side_is_remote() -> None:
    assert domain.meeting_mode("onsite", ["on_site", "on_site"]) == "onsite"
    assert domain.meeting_mode("onsite", ["on_site", "remote"]) == "online"
    assert domain.meeting_mode("online", []) == "online"


def test_a_cancelled_meeting_leaves_with_a_release_or_a_drop() -> None:
    why = ReleaseReason.MEETING_CANCELLED
    released = domain.leaves("ev1", _meeting(MeetingStatus.PLACED), why)
    assert isinstance(released, SlotReleased) and released.reason is why
    for status in (MeetingStatus.PENDING, MeetingStatus.UNSCHEDULED):
        dropped = domain.leaves("ev1", _meeting(status), why)
        assert isinstance(dropped, MeetingDropped) and dropped.mode is MeetingMode.ONSITE
    assert domain.leaves("ev1", _meeting(MeetingStatus.CANCELLED), why) is None
    assert domain.status_after_release(ReleaseReason.REOPTIMISED) is MeetingStatus.UNSCHEDULED
    assert domain.status_after_release(why) is MeetingStatus.CANCELLED


def test_the_history_folds_placements_locks_and_publication() -> None:
    assigned = SlotAssigned(
        meeting_id="m1",
        slot_start=AT,
        slot_end=AT,
        mode=MeetingMode.ONSITE,
        table=1,
        event_id="ev1",
        participants=["a", "b"],
    )
    history = AgendaHistory()
    for event in (
        assigned,
        MeetingLocked(meeting_id="m1", locked_by="org", event_id="ev1", participants=["a", "b"]),
        SlotAssigned(
            meeting_id="m2",
            slot_start=AT,
            slot_end=AT,
            mode=MeetingMode.ONLINE,
            event_id="ev1",
            participants=["a", "b"],
        ),
        MeetingLocked(meeting_id="m2", locked_by="org", event_id="ev1", participants=["a", "b"]),
        MeetingUnlocked(
            meeting_id="m2", unlocked_by="org", event_id="ev1", participants=["a", "b"]
        ),
        MeetingUnschedulable(
            meeting_id="m3", reason="no slot", event_id="ev1", participants=["a", "b"]
        ),
        SlotReleased(
            meeting_id="m1",
            reason=ReleaseReason.REOPTIMISED,
            detail="caps",
            event_id="ev1",
            participants=["a", "b"],
        ),
        AgendaPublished(event_id="ev1", published_at=AT),
    ):
        history.apply(event)
    assert history.version == 8 and history.published
    assert history.status_of("m1") is MeetingStatus.UNSCHEDULED
    assert history.status_of("m2") is MeetingStatus.PLACED
    assert history.status_of("m3") is MeetingStatus.UNSCHEDULED
    assert history.status_of("m4") is MeetingStatus.PENDING  # known from matching only
    assert history.locked == set()  # m1 lost its lock with its slot, m2 was unlocked
