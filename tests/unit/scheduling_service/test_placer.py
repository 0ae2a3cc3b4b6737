"""The placer decides a run of accepts (and runs after runs, its compiled agenda kept and
grown) exactly as one placement after the other with the agenda rebuilt each time."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, time

import pytest

from services.scheduling import domain
from services.scheduling.domain import AgendaMeeting, Attendee, MeetingStatus, Place
from services.scheduling.grid import EventGrid
from services.scheduling.placer import Placer
from services.scheduling.solver import Assignment, InstanceError, Schedule
from services.scheduling.solver.place import Growing, place, place_many
from shared.contracts.base import EventPayload

GRID = EventGrid(
    event_id="ev1",
    organiser_id="org1",
    time_zone="Europe/Paris",
    days=(date(2026, 3, 10),),
    sessions=((time(9, 0), time(11, 0)), (time(14, 0), time(16, 0))),
    slot_minutes=30,
    tables=3,
    max_meetings=4,
)
SLOTS = [s.id for s in GRID.slots]
MORNING = (  # 9:00-11:00 Paris: the first session only
    datetime(2026, 3, 10, 8, 0, tzinfo=UTC),
    datetime(2026, 3, 10, 10, 0, tzinfo=UTC),
)


def _world(seed: int) -> tuple[dict[str, Attendee], dict[str, AgendaMeeting], list[AgendaMeeting]]:
    """Attendees (some remote), a placed agenda (some meetings locked) and pending ones."""
    rng = random.Random(seed)
    people = [f"p{i:02d}" for i in range(16)]
    attendees = {
        p: Attendee(
            p,
            "remote" if rng.random() < 0.2 else "on_site",
            (MORNING,) if rng.random() < 0.3 else (),
        )
        for p in people[:-1]
    }  # the last one is unknown to scheduling: available throughout
    placed: dict[str, AgendaMeeting] = {}
    busy: set[tuple[str, str]] = set()
    tables: dict[str, int] = {}
    for n in range(14):
        a, b = rng.sample(people[:10], 2)  # the others first come with the pending ones
        slot = rng.choice(SLOTS)
        if (a, slot) in busy or (b, slot) in busy or tables.get(slot, 0) >= GRID.tables:
            continue
        busy |= {(a, slot), (b, slot)}
        tables[slot] = tables.get(slot, 0) + 1
        mid = f"placed-{n}"
        where = Place(slot, tables[slot])
        placed[mid] = AgendaMeeting(
            mid, (a, b), "onsite", MeetingStatus.PLACED, where, locked=rng.random() < 0.3
        )
    pending = [
        AgendaMeeting(f"new-{n:02d}", tuple(rng.sample(people, 2)), "onsite", MeetingStatus.PENDING)
        for n in range(40)
    ]
    return attendees, placed, pending


def _one_by_one(
    attendees: dict[str, Attendee], placed: dict[str, AgendaMeeting], targets: list[AgendaMeeting]
) -> list[EventPayload]:
    """The placement before runs were batched: the whole instance built for each meeting."""
    placed = dict(placed)
    decided: list[EventPayload] = []
    for target in targets:
        known = [attendees[p].attendance for p in target.participants if p in attendees]
        target = replace(target, mode=domain.meeting_mode(target.mode, known))
        others = list(placed.values())
        instance = domain.build_instance(GRID, attendees, [*others, target], {})
        result = place(instance, domain.current_schedule(others), target.meeting_id)
        if isinstance(result, Assignment):
            where = Place(result.slot, result.table)
            placed[target.meeting_id] = replace(target, status=MeetingStatus.PLACED, place=where)
            decided.append(domain.slot_assigned(GRID, target, where))
        else:
            decided.append(domain.unschedulable(GRID, target, result.reason))
    return decided


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("run", [1, 3, 7, 40])
def test_runs_decide_as_one_placement_after_the_other(seed: int, run: int) -> None:
    attendees, placed, pending = _world(seed)
    expected = _one_by_one(attendees, placed, pending)
    placer = Placer(GRID, attendees, {}, dict(placed))
    got: list[EventPayload] = []
    for start in range(0, len(pending), run):
        got += placer.decide_all(pending[start : start + run])
    assert got == expected
    assert any(not isinstance(e, type(expected[0])) for e in expected), "some do not fit"
    if run < len(pending):
        assert placer.growing is not None  # kept and grown from run to run


def test_moving_a_placed_meeting_between_runs_rebuilds_the_compiled_agenda() -> None:
    attendees, placed, pending = _world(3)
    placer = Placer(GRID, attendees, {}, dict(placed))
    first = placer.decide_all(pending[:10])
    mover = next(m for m in placer.placed.values() if not m.locked)
    moved = placer.decide(mover, ignore=frozenset())  # one-off: the compiled agenda goes
    assert placer.growing is None
    rest = placer.decide_all(pending[10:])
    # The same as: the first ten one by one, the move one-off, then the rest one by one.
    after_first = Placer(GRID, attendees, {}, dict(placed))
    assert after_first.decide_all(pending[:10]) == first
    reference = dict(after_first.placed)
    reference.pop(mover.meeting_id)
    if moved.__class__.__name__ == "SlotAssigned":
        reference[mover.meeting_id] = placer.placed[mover.meeting_id]
    assert rest == _one_by_one(attendees, reference, pending[10:])


def test_growing_places_as_place_many_and_refuses_a_meeting_twice() -> None:
    attendees, placed, pending = _world(1)
    others = list(placed.values())
    everything = domain.build_instance(GRID, attendees, [*others, *pending], {})
    schedule = domain.current_schedule(others)
    expected = place_many(everything, schedule, [m.meeting_id for m in pending])
    growing = Growing(domain.build_instance(GRID, attendees, others, {}), schedule)
    got = []
    for start in range(0, len(pending), 9):
        more = domain.build_instance(GRID, attendees, pending[start : start + 9], {})
        got += growing.place(more)
    assert got == expected
    with pytest.raises(ValueError, match="already"):
        growing.place(domain.build_instance(GRID, attendees, pending[:1], {}))
    with pytest.raises(InstanceError, match="twice"):
        place_many(everything, Schedule([]), [pending[0].meeting_id, pending[0].meeting_id])
