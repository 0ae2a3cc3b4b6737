"""Per-meeting time windows (`allowed_slots`) and the fairness bound (`max_idle_spread`):
every solver's schedule passes the checker, and no window is ever violated."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduling_cases import Doc, instances, small_doc

from services.scheduling.solver.check import check
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.fairness import enforce
from services.scheduling.solver.greedy import greedy
from services.scheduling.solver.model import (
    Assignment,
    Instance,
    InstanceError,
    Schedule,
    Unscheduled,
    instance_to_dict,
    parse_instance,
)
from services.scheduling.solver.optimise import optimise
from services.scheduling.solver.place import place
from services.scheduling.solver.portfolio import solve

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def windowed(draw: st.DrawFn) -> Doc:
    """`instances()` with windows on some meetings (a fixed meeting's window holds its
    slot) and, now and then, a fairness bound."""
    doc = draw(instances())
    slots = [t["id"] for s in doc["sessions"] for t in s["slots"]]
    for m in doc["meetings"]:
        if draw(st.integers(0, 2)) == 0:
            allowed = draw(st.lists(st.sampled_from(slots), unique=True))
            if m["fixed"] is not None and m["fixed"]["slot"] not in allowed:
                allowed.append(m["fixed"]["slot"])
            m["allowed_slots"] = allowed
    doc["max_idle_spread"] = draw(st.one_of(st.none(), st.integers(0, 2)))
    return doc


def _fixed_alone_fair(instance: Instance) -> bool:
    """Whether the fixed meetings by themselves respect the fairness bound (else no
    schedule can)."""
    schedule = Schedule(
        [
            Assignment(m.id, m.fixed.slot, m.fixed.table or None)
            for m in instance.meetings
            if m.fixed is not None
        ]
    )
    report = check(instance, schedule)
    return not any(v.kind == "idle-spread-exceeded" for v in report.violations)


def _windows_held(instance: Instance, schedule: Schedule) -> None:
    for a in schedule.assignments:
        m = instance.meeting(a.meeting)
        assert m.allowed_slots is None or a.slot in m.allowed_slots, (m.id, a.slot)


def _kinds(instance: Instance, schedule: Schedule) -> set[str]:
    return {v.kind for v in check(instance, schedule).violations}


@SETTINGS
@given(windowed(), st.integers(0, 3))
def test_the_heuristic_keeps_windows(doc: Doc, seed: int) -> None:
    instance = parse_instance(doc)
    for schedule in (greedy(instance), optimise(instance, 5, seed, max_moves=2000)):
        _windows_held(instance, schedule)
        assert _kinds(instance, schedule) <= {"idle-spread-exceeded"}  # no bound there


@SETTINGS
@given(windowed(), st.integers(0, 3))
def test_the_portfolio_keeps_windows_and_the_fairness_bound(doc: Doc, seed: int) -> None:
    instance = parse_instance(doc)
    result = solve(instance, time_limit=3, seed=seed)
    _windows_held(instance, result.schedule)
    report = check(instance, result.schedule)
    if _fixed_alone_fair(instance):
        assert report.violations == [], report.violations
        assert result.fair
    else:  # (the other meetings may even the idle time out: then no violation at all)
        assert {v.kind for v in report.violations} <= {"idle-spread-exceeded"}
    assert (report.priority, report.idle) == (result.priority, result.idle)
    assert report.idle_by_participant == result.idle_by_participant
    assert result.priority <= result.priority_bound
    if result.proven_optimal:
        assert (result.priority, result.idle) == (result.priority_bound, result.idle_bound)


@SETTINGS
@given(windowed(), st.integers(0, 3))
def test_fairness_repair_alone_meets_the_bound(doc: Doc, seed: int) -> None:
    doc["max_idle_spread"] = doc["max_idle_spread"] or 0
    instance = parse_instance(doc)
    problem = Problem(instance)
    state = State(problem)
    state.place_fixed()
    for m in range(problem.n_meetings):  # a deliberately unfair start: latest slots
        free = state.free_slots(m)
        if free and problem.fixed_slot[m] < 0:
            state.add(m, free.bit_length() - 1)
    ok = enforce(state, doc["max_idle_spread"], deadline=float("inf"))
    assert ok == (state.idle_spread() <= doc["max_idle_spread"])
    if _fixed_alone_fair(instance):
        assert ok
        assert _kinds(instance, state.schedule()) == set()


@SETTINGS
@given(windowed())
def test_placing_one_by_one_keeps_windows(doc: Doc) -> None:
    instance = parse_instance(doc)
    schedule = Schedule()
    for m in instance.meetings:
        result = place(instance, schedule, m.id)
        if isinstance(result, Assignment):
            assert m.allowed_slots is None or result.slot in m.allowed_slots
            schedule.assignments.append(result)
        else:
            schedule.unscheduled.append(result)
    assert _kinds(instance, schedule) <= {"idle-spread-exceeded"}


def test_a_window_decides_the_slot_and_explains_itself() -> None:
    doc = small_doc()
    doc["meetings"][3]["allowed_slots"] = ["pm3"]  # m4: c, d
    instance = parse_instance(doc)
    assert place(instance, Schedule(), "m4") == Assignment("m4", "pm3", 1)
    taken = Schedule([Assignment("m5", "pm3", 1)])  # d is busy then
    result = place(instance, taken, "m4")
    assert result.meeting == "m4" and isinstance(result, Unscheduled)
    assert result.reason == "c has no free slot in common with d in its allowed_slots"
    doc["meetings"][3]["allowed_slots"] = []
    empty = place(parse_instance(doc), Schedule(), "m4")
    assert isinstance(empty, Unscheduled) and empty.reason == "its allowed_slots are empty"


def test_windows_and_the_bound_round_trip_and_are_checked_when_parsed() -> None:
    doc = small_doc()
    doc["meetings"][0]["allowed_slots"] = ["am1", "am3"]
    doc["max_idle_spread"] = 1
    instance = parse_instance(doc)
    assert parse_instance(instance_to_dict(instance)) == instance
    doc["meetings"][2]["allowed_slots"] = ["am1"]  # m3 is fixed in am2
    try:
        parse_instance(doc)
    except InstanceError as e:
        assert "meetings[2].fixed.slot: 'am2' is not one of its allowed_slots" in str(e)
    else:
        raise AssertionError("a fixed meeting outside its window was accepted")
    doc["meetings"][2]["allowed_slots"] = ["zz"]
    try:
        parse_instance(doc)
    except InstanceError as e:
        assert "meetings[2].allowed_slots[0]: unknown slot 'zz'" in str(e)
    else:
        raise AssertionError("an unknown slot was accepted")
