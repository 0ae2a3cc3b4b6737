"""The per-participant idle bound (`idle_bound`) against brute force, and the exact
model with it against the model without it (the reference the bound must not cut)."""

from __future__ import annotations

import gzip
import itertools
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduling_cases import Doc, instances

from services.scheduling.solver.bound import priority_bound
from services.scheduling.solver.core import Problem, State, idle_bits
from services.scheduling.solver.exact import solve_exact
from services.scheduling.solver.idle_bound import (
    INFINITE,
    all_placed_idle_bound,
    least_idle,
    session_least_idle,
)
from services.scheduling.solver.model import parse_instance, parse_instance_json
from services.scheduling.solver.optimise import optimise_state
from services.scheduling.solver.portfolio import solve

DATA = Path(__file__).parent / "data"


def _sessions_doc(lengths: list[int]) -> Doc:
    sessions = [
        {"id": f"s{s}", "slots": [{"id": f"s{s}t{t}"} for t in range(n)]}
        for s, n in enumerate(lengths)
    ]
    return {
        "name": "shape",
        "tables": 1,
        "sessions": sessions,
        "participants": [{"id": "p", "available": None, "max_meetings": None}],
        "meetings": [],
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.data())
def test_least_idle_is_the_brute_force_minimum(lengths: list[int], data: st.DataObject) -> None:
    problem = Problem(parse_instance(_sessions_doc(lengths)))
    reach = data.draw(st.integers(0, problem.all_slots))
    least = least_idle(problem, reach)
    slots = [t for t in range(problem.n_slots) if reach >> t & 1]
    assert len(least) == len(slots) + 1
    for k in range(len(slots) + 1):
        best = min(
            sum(idle_bits(sum(1 << t for t in chosen) & mask) for mask in problem.session_mask)
            for chosen in itertools.combinations(slots, k)
        )
        assert least[k] == best, (reach, k)
    assert all(a <= b for a, b in itertools.pairwise(least))  # the model relies on it


def test_a_session_with_a_hole_forces_idle_time() -> None:
    # slots 0, 1 and 4..9 reachable (2 and 3 gone), as forumt-14's b005
    reach = [0, 1, 4, 5, 6, 7, 8, 9]
    assert session_least_idle(reach) == [0, 0, 0, 0, 0, 0, 0, 2, 2]


def test_forumt_14s_optimum_is_proven_by_the_participants_bounds_alone() -> None:
    """Seven participants miss two slots; five of them must leave both idle."""
    instance = parse_instance_json(
        gzip.decompress((DATA / "forumt-14.original.json.gz").read_bytes())
    )
    assert all_placed_idle_bound(Problem(instance), 237) == 10
    assert all_placed_idle_bound(Problem(instance), 236) is None
    result = solve(instance, time_limit=4)
    assert result.idle_bound == 10 and result.idle >= 10
    assert result.proven_optimal == (result.idle == 10)


def test_no_bound_when_the_meetings_cannot_all_be_placed() -> None:
    doc = _sessions_doc([3])
    doc["participants"] = [
        {"id": "a", "available": None, "max_meetings": 1},
        {"id": "b", "available": None, "max_meetings": None},
        {"id": "c", "available": None, "max_meetings": None},
    ]
    doc["meetings"] = [
        {"id": "m0", "participants": ["a", "b"], "mode": "onsite", "priority": 1},
        {"id": "m1", "participants": ["a", "c"], "mode": "onsite", "priority": 1},
    ]
    assert all_placed_idle_bound(Problem(parse_instance(doc)), 2) is None
    assert INFINITE > 1000


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(max_participants=6, max_meetings=10))
def test_the_participant_bounds_cut_off_no_optimum(doc: Doc) -> None:
    """The model with the redundant bounds proves the same optimum as the model
    without them (neither may cut a schedule off), and the portfolio's bound from them
    is never above it."""
    instance = parse_instance(doc)
    problem = Problem(instance)
    plain = solve_exact(problem, time.monotonic() + 20, participant_bounds=False)
    if plain.status != "OPTIMAL" or plain.slot_of is None:
        return
    opt = State.of_slots(problem, plain.slot_of)
    bounded = solve_exact(problem, time.monotonic() + 20)
    assert bounded.status == "OPTIMAL" and bounded.slot_of is not None
    other = State.of_slots(problem, bounded.slot_of)
    assert other.score() == opt.score()
    # hinted, with the priority fixed where the hint meets the bound: "every meeting
    # placed" and the bounds at the known number of meetings
    hint = optimise_state(problem, 0.2)
    fixed = solve_exact(problem, time.monotonic() + 20, hint, priority_bound(problem))
    assert fixed.status == "OPTIMAL" and fixed.slot_of is not None
    assert State.of_slots(problem, fixed.slot_of).score() == opt.score()
    every = all_placed_idle_bound(problem, opt.priority())
    if every is not None:
        assert every <= opt.idle()
