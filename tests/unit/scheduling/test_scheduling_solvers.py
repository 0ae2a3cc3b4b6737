"""greedy, place and optimise: always valid, fixed meetings stay, optimise beats greedy."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduling_cases import Doc, instances, small_doc

from services.scheduling.solver.check import Report, check
from services.scheduling.solver.core import Problem, State, idle_bits
from services.scheduling.solver.greedy import greedy
from services.scheduling.solver.model import (
    Assignment,
    Instance,
    Schedule,
    Unscheduled,
    parse_instance,
)
from services.scheduling.solver.optimise import Stats, optimise
from services.scheduling.solver.place import place

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(instance: Instance, schedule: Schedule) -> Report:
    report = check(instance, schedule)
    assert report.violations == [], report.violations
    listed = [a.meeting for a in schedule.assignments] + [u.meeting for u in schedule.unscheduled]
    assert sorted(listed) == sorted(m.id for m in instance.meetings)  # each exactly once
    where = {a.meeting: a for a in schedule.assignments}
    for m in instance.meetings:
        if m.fixed is not None:
            a = where[m.id]
            assert a.slot == m.fixed.slot
            assert m.fixed.table is None or a.table == m.fixed.table
    assert all(u.reason for u in schedule.unscheduled)
    return report


@SETTINGS
@given(instances())
def test_greedy_is_valid(doc: Doc) -> None:
    instance = parse_instance(doc)
    _valid(instance, greedy(instance))


@SETTINGS
@given(instances(), st.integers(0, 3))
def test_optimise_is_valid_and_never_worse_than_greedy(doc: Doc, seed: int) -> None:
    instance = parse_instance(doc)
    stats = Stats()
    best = _valid(
        instance, optimise(instance, time_limit=5, seed=seed, max_moves=3000, stats=stats)
    )
    base = _valid(instance, greedy(instance))
    assert best.score >= base.score


@SETTINGS
@given(instances())
def test_placing_meetings_one_by_one_is_valid_and_moves_nothing(doc: Doc) -> None:
    instance = parse_instance(doc)
    schedule = Schedule()
    for m in instance.meetings:
        before = list(schedule.assignments)
        result = place(instance, schedule, m.id)
        if isinstance(result, Assignment):
            assert result.meeting == m.id
            schedule.assignments.append(result)
        else:
            assert result.reason
            schedule.unscheduled.append(result)
        assert schedule.assignments[: len(before)] == before
        if m.fixed is not None:  # a fixed meeting goes where it is locked, or nowhere
            assert not isinstance(result, Assignment) or result.slot == m.fixed.slot
    _valid(instance, schedule)


@SETTINGS
@given(instances(), st.data())
def test_place_fills_a_gap_in_an_optimised_schedule(doc: Doc, data: st.DataObject) -> None:
    """Take a meeting out of a schedule; placing it again gives a valid schedule."""
    instance = parse_instance(doc)
    schedule = optimise(instance, time_limit=5, max_moves=1000)
    movable = [a for a in schedule.assignments if instance.meeting(a.meeting).fixed is None]
    if not movable:
        return
    out = data.draw(st.sampled_from(movable))
    rest = Schedule([a for a in schedule.assignments if a is not out], [])
    result = place(instance, rest, out.meeting)
    assert isinstance(result, Assignment)  # its old place at least is free
    problem = Problem(instance)
    state = State(problem)
    for a in rest.assignments:
        state.add(problem.meeting_index[a.meeting], problem.slot_index[a.slot])
    m = problem.meeting_index[out.meeting]
    # the least added idle of all free slots
    least = min(
        state.added_idle(m, t) for t in range(problem.n_slots) if state.free_slots(m) >> t & 1
    )
    assert state.added_idle(m, problem.slot_index[result.slot]) == least
    full = Schedule(
        [*rest.assignments, result],
        [Unscheduled(u.meeting, u.reason) for u in schedule.unscheduled],
    )
    _valid(instance, full)


def test_optimise_is_deterministic_for_a_seed() -> None:
    instance = parse_instance(small_doc())
    a = optimise(instance, time_limit=30, seed=7, max_moves=5000)
    b = optimise(instance, time_limit=30, seed=7, max_moves=5000)
    assert a == b


def test_optimise_on_the_small_instance() -> None:
    instance = parse_instance(small_doc())
    report = _valid(instance, optimise(instance, time_limit=5))
    # m4 (priority 3) beats m2 (priority 2) for c's last place; nobody idles
    assert (report.scheduled, report.priority, report.idle) == (4, 6, 0)
    assert check(instance, greedy(instance)).priority == 5


def _two_sessions(**meetings: list[str]) -> Instance:
    return parse_instance(
        {
            "tables": 1,
            "sessions": [{"id": "s", "slots": [{"id": f"t{k}"} for k in range(1, 5)]}],
            "participants": [{"id": p} for p in ("p007", "p031", "p044", "p050")],
            "meetings": [
                {"id": mid, "participants": ps, "mode": "online", "priority": 1}
                for mid, ps in meetings.items()
            ],
        }
    )


def test_place_picks_the_slot_adding_least_idle() -> None:
    instance = _two_sessions(a=["p007", "p031"], b=["p007", "p044"], c=["p007", "p050"])
    existing = Schedule([Assignment("a", "t1", None), Assignment("b", "t3", None)])
    assert place(instance, existing, "c") == Assignment("c", "t2", None)  # fills p007's gap
    existing = Schedule([Assignment("a", "t3", None)])
    assert place(instance, existing, "c") in (
        Assignment("c", "t2", None),
        Assignment("c", "t4", None),
    )  # next to p007's meeting, not t1 which leaves a gap


def test_unschedulable_reasons() -> None:
    instance = _two_sessions(
        a=["p007", "p044"],
        e=["p007", "p050"],
        b=["p031", "p044"],
        f=["p031", "p050"],
        c=["p007", "p031"],
    )
    # p007 is busy in t1, t2 and p031 in t3, t4
    existing = Schedule(
        [
            Assignment("a", "t1", None),
            Assignment("e", "t2", None),
            Assignment("b", "t3", None),
            Assignment("f", "t4", None),
        ]
    )
    assert place(instance, existing, "c") == Unscheduled(
        "c", "p007 has no free slot in common with p031"
    )
    existing.assignments.pop()
    assert place(instance, existing, "c") == Assignment("c", "t4", None)


def test_unschedulable_for_caps_availability_and_tables() -> None:
    doc = {
        "tables": 1,
        "sessions": [{"id": "s", "slots": [{"id": "t1"}, {"id": "t2"}]}],
        "participants": [
            {"id": "x", "available": ["t1"]},
            {"id": "y", "available": ["t2"]},
            {"id": "z", "max_meetings": 1},
            {"id": "w"},
            {"id": "v"},
            {"id": "u", "available": []},
        ],
        "meetings": [
            {"id": "xy", "participants": ["x", "y"], "mode": "online", "priority": 1},
            {"id": "zw", "participants": ["z", "w"], "mode": "onsite", "priority": 1},
            {"id": "zv", "participants": ["z", "v"], "mode": "online", "priority": 1},
            {"id": "xw", "participants": ["x", "w"], "mode": "onsite", "priority": 1},
            {"id": "uv", "participants": ["u", "v"], "mode": "online", "priority": 1},
            {"id": "vy", "participants": ["v", "y"], "mode": "onsite", "priority": 1},
        ],
    }
    instance = parse_instance(doc)
    assert place(instance, Schedule(), "xy") == Unscheduled(
        "xy", "x and y have no available slot in common"
    )
    assert place(instance, Schedule(), "uv") == Unscheduled("uv", "u is not available in any slot")
    one = Schedule([Assignment("zw", "t1", 1)])
    assert place(instance, one, "zv") == Unscheduled(
        "zv", "z already has its maximum of 1 meetings"
    )
    assert place(instance, Schedule([Assignment("zv", "t1", None)]), "xw") == Assignment(
        "xw", "t1", 1
    )
    full = Schedule([Assignment("zw", "t2", 1)])
    assert place(instance, full, "vy") == Unscheduled(
        "vy", "no table is free in the slot where v and y are free"
    )


def test_idle_bits() -> None:
    assert idle_bits(0) == 0
    assert idle_bits(0b1) == 0
    assert idle_bits(0b101) == 1
    assert idle_bits(0b1001100) == 2
    assert idle_bits(0b1000100 << 9) == 3


def test_clashing_fixed_meetings_of_an_instance_built_in_code_stay_out() -> None:
    """parse_instance refuses them; an Instance built directly is not checked, so the
    solvers keep the first and leave the other unscheduled, never elsewhere."""
    from dataclasses import replace

    from services.scheduling.solver.model import Fixed

    instance = parse_instance(small_doc())
    meetings = list(instance.meetings)
    meetings[0] = replace(meetings[0], fixed=Fixed("am2", None))  # m3 (b, c) is fixed there
    instance = replace(instance, meetings=tuple(meetings))
    for schedule in (greedy(instance), optimise(instance, time_limit=5)):
        out = {u.meeting: u.reason for u in schedule.unscheduled}
        assert out["m3"] == "fixed in am2, where b already has m1"
        assert {"m1": "am2"}.items() <= {a.meeting: a.slot for a in schedule.assignments}.items()
        assert "m3" not in {a.meeting for a in schedule.assignments}


def _one_slot_doc(meetings: int, tables: int) -> Doc:
    """`meetings` onsite meetings of distinct pairs, one slot, `tables` tables."""
    return {
        "name": "one slot",
        "tables": tables,
        "sessions": [{"id": "s", "slots": [{"id": "t1"}]}],
        "participants": [
            {"id": f"p{i}", "available": None, "max_meetings": None} for i in range(2 * meetings)
        ],
        "meetings": [
            {
                "id": f"m{k}",
                "participants": [f"p{2 * k}", f"p{2 * k + 1}"],
                "mode": "onsite",
                "priority": 1,
                "fixed": None,
            }
            for k in range(meetings)
        ],
    }


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 9)), max_size=40))
def test_free_table_is_the_lowest_number_nobody_holds(steps: list[tuple[int, int]]) -> None:
    """`State.free_table` keeps a mark below which every number is taken: through any
    order of tables given (also a number given twice, or a meeting given another) and
    meetings leaving, it answers what going through the slot's numbers would."""
    tables = 6
    state = State(Problem(parse_instance(_one_slot_doc(8, tables))))
    for m, number in steps:
        if state.slot_of[m] >= 0 and number == 0:
            state.remove(m)
        elif number:
            if state.slot_of[m] < 0:
                state.add(m, 0)
            state.give_table(m, min(number, tables))
        held = set(state.table_of.values())
        lowest = next((n for n in range(1, tables + 1) if n not in held), 0)
        assert state.free_table(0) == lowest
        copy = State(state.p)
        copy.copy_from(state)
        assert copy.free_table(0) == lowest
