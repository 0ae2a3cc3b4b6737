"""A requester's time preference in scheduling: the slots it accepts, combined with the
organiser's rule for the meeting type, and the reason when nothing is left."""

from __future__ import annotations

from datetime import date, time

from services.scheduling import domain
from services.scheduling.domain import AgendaMeeting, MeetingStatus, Place
from services.scheduling.grid import EventGrid
from services.scheduling.solver import Schedule, Unscheduled, check, place
from shared.contracts.matching import MeetingAccepted, MeetingRequested, PartOfDay, TimePreference

# Two days, a morning session (09:00-10:30: 3 slots) and an afternoon one (14:00-15:00: 2).
GRID = EventGrid(
    event_id="ev1",
    organiser_id="org1",
    time_zone="Europe/Paris",
    days=(date(2026, 3, 10), date(2026, 3, 11)),
    sessions=((time(9, 0), time(10, 30)), (time(14, 0), time(15, 0))),
    slot_minutes=30,
    tables=2,
)
MORNING = {"d1-s1-01", "d1-s1-02", "d1-s1-03", "d2-s1-01", "d2-s1-02", "d2-s1-03"}
AFTERNOON = frozenset({"d1-s2-01", "d1-s2-02", "d2-s2-01", "d2-s2-02"})
B2B = "Business2Business"


def meeting(mid: str = "m1", **kw: object) -> AgendaMeeting:
    fields: dict[str, object] = {"meeting_type": B2B, "status": MeetingStatus.PENDING}
    fields.update(kw)
    return AgendaMeeting(mid, ("a", "b"), "onsite", **fields)  # type: ignore[arg-type]


def test_the_slots_a_preference_accepts() -> None:
    def slots(**kw: object) -> set[str]:
        return set(domain.preferred_slots(GRID, TimePreference(**kw)))  # type: ignore[arg-type]

    assert slots(part_of_day=PartOfDay.MORNING) == MORNING
    assert slots(part_of_day=PartOfDay.AFTERNOON) == AFTERNOON
    assert slots(day=2) == {s for s in MORNING | AFTERNOON if s.startswith("d2")}
    assert slots(day=2, part_of_day=PartOfDay.AFTERNOON) == {"d2-s2-01", "d2-s2-02"}
    assert slots(slots=["d1-s1-02", "d2-s2-01", "nowhere"]) == {"d1-s1-02", "d2-s2-01"}
    assert slots(slots=["d1-s1-02"], part_of_day=PartOfDay.AFTERNOON) == set()
    assert slots(day=3) == set()


def test_the_preference_and_the_types_rule_intersect() -> None:
    windows = {B2B: ("d1-s1-03", "d1-s2-01", "d1-s2-02")}
    pm = TimePreference(part_of_day=PartOfDay.AFTERNOON)
    assert domain.allowed_for(meeting(time_preference=pm), windows, GRID) == frozenset(
        {"d1-s2-01", "d1-s2-02"}
    )
    assert domain.allowed_for(meeting(time_preference=pm), {}, GRID) == AFTERNOON
    assert domain.allowed_for(meeting(), windows, GRID) == frozenset(windows[B2B])
    assert domain.allowed_for(meeting(), {}, GRID) is None
    # a locked meeting stays where the organiser put it, preference or not
    locked = meeting(time_preference=pm, locked=True, place=Place("d1-s1-01", 1))
    assert domain.allowed_for(locked, windows, GRID) is None
    assert domain.no_slot_reason(GRID, locked, windows) is None


def test_no_slot_left_says_why() -> None:
    am = TimePreference(part_of_day=PartOfDay.MORNING)
    windows = {B2B: tuple(sorted(AFTERNOON))}
    assert domain.no_slot_reason(GRID, meeting(time_preference=am), {}) is None
    said = domain.no_slot_reason(GRID, meeting(time_preference=am), windows)
    assert said == (
        "the requester's time preference (morning) and the organiser's rule for"
        " Business2Business meetings have no slot in common"
    )
    far = TimePreference(part_of_day=PartOfDay.MORNING, day=3)
    assert domain.no_slot_reason(GRID, meeting(time_preference=far), {}) == (
        "the requester's time preference (morning of day 3) names a day the event does not"
        " have (it has 2)"
    )
    odd = TimePreference(slots=["d1-s1-01"], part_of_day=PartOfDay.AFTERNOON)
    assert domain.no_slot_reason(GRID, meeting(time_preference=odd), {}) == (
        "the requester's time preference (afternoon, slots d1-s1-01) matches no slot of the event"
    )
    # the re-optimisation's unscheduled meeting gets that reason instead of the solver's
    stuck = meeting(time_preference=am)
    schedule = Schedule([], [Unscheduled("m1", "its allowed_slots are empty")])
    [why] = domain.explained(schedule, GRID, [stuck], windows).unscheduled
    assert why.reason == said


def test_the_solver_keeps_to_the_preference() -> None:
    """a and b meet twice with no preference in the morning of day 1; a third meeting,
    next to them without a preference, goes to the afternoon when it asks for it."""
    placed = [
        meeting("m1", status=MeetingStatus.PLACED, place=Place("d1-s1-01", 1)),
        meeting("m2", status=MeetingStatus.PLACED, place=Place("d1-s1-02", 1)),
    ]
    pm = TimePreference(part_of_day=PartOfDay.AFTERNOON, day=1)
    for preference, expected in [(None, "d1-s1-03"), (pm, "d1-s2-01")]:
        target = meeting("m3", time_preference=preference)
        instance = domain.build_instance(GRID, {}, [*placed, target])
        done = place(instance, domain.current_schedule(placed), "m3")
        assert getattr(done, "slot", None) == expected, done
        schedule = domain.current_schedule(placed)
        schedule.assignments.append(done)  # type: ignore[arg-type]
        assert check(instance, schedule).valid


def test_the_field_is_optional_in_both_events() -> None:
    """Events written before the field read as having no preference (no upcaster)."""
    common = {
        "request_id": "r1",
        "event_id": "e1",
        "requester_id": "a",
        "recipient_id": "b",
        "meeting_type": B2B,
    }
    old = MeetingRequested.model_validate({**common, "expires_at": "2026-03-01T00:00:00Z"})
    assert old.time_preference is None
    accepted = MeetingAccepted.model_validate(
        {**common, "mode": "onsite", "participants": [], "accepted_by": "b"}
    )
    assert accepted.time_preference is None
    new = MeetingRequested.model_validate(
        {**common, "expires_at": "2026-03-01T00:00:00Z", "time_preference": {"day": 2}}
    )
    assert new.time_preference == TimePreference(day=2)
