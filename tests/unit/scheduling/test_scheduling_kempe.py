"""The annealing's swap (`kempe._move`) works out the chain, the tables and the idle
change in one pass (walking the path both ways where every meeting has two
participants): it swaps exactly the Kempe chain of the meeting and slot it drew
(`kempe.chain`, the plain construction) or nothing, the same as the general pass does,
never takes a meeting to a slot it may not have (`allowed_slots`, availability), and
never puts more onsite meetings in a slot than there are tables."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduling_cases import Doc
from test_scheduling_windows import windowed

from services.scheduling.solver import kempe
from services.scheduling.solver.check import check
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.greedy import greedy_state
from services.scheduling.solver.model import parse_instance, parse_instance_json

DATA = Path(__file__).parent / "data"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windowed(), st.integers(0, 2**16))
def test_a_swap_moves_exactly_the_chain_it_drew_or_nothing(doc: Doc, seed: int) -> None:
    doc["max_idle_spread"] = None  # the annealing runs only without a fairness bound
    instance = parse_instance(doc)
    problem = Problem(instance)
    state = State.of_slots(problem, greedy_state(problem).slot_of)
    general = State.of_slots(problem, state.slot_of)
    movable = [m for m in range(problem.n_meetings) if state.slot_of[m] >= 0]
    if not movable or problem.n_slots < 2:
        return
    may = kempe.movable_slots(state)
    pairs = kempe.all_pairs(problem.parts)
    free = kempe.unrestricted(state, may)
    rng = random.Random(seed)
    rng_general = random.Random(seed)
    idle = state.idle()
    for _ in range(150):
        temp = rng.choice([0.05, 0.5, 5.0])
        assert rng_general.choice([0.05, 0.5, 5.0]) == temp
        # the meeting and the slot `_move` is about to draw
        twin = random.Random()
        twin.setstate(rng.getstate())
        m = movable[int(twin.random() * len(movable))]
        b = int(twin.random() * problem.n_slots)
        a = state.slot_of[m]
        expected = kempe.chain(state, m, b, may) if b != a else None
        before = state.slot_of[:]
        delta = kempe._move(state, rng, movable, may, temp, pairs, free)
        idle += delta
        # the general pass (a set of meetings seen) makes the same swap
        assert kempe._move(general, rng_general, movable, may, temp, False) == delta
        assert general.slot_of == state.slot_of
        changed = {k for k, t in enumerate(state.slot_of) if t != before[k]}
        if changed:
            assert expected is not None and changed == set(expected)
            for k in changed:
                assert {before[k], state.slot_of[k]} == {a, b}
                assert may[k] >> state.slot_of[k] & 1
        assert idle == state.idle()
        assert all(n <= problem.tables for n in state.onsite_used)
    assert check(instance, state.schedule()).valid


def test_the_path_walk_follows_the_general_pass_on_a_forum() -> None:
    """On tic-12 (two participants a meeting, one session, tight, no windows): 20,000
    swaps from the same seed end in the same schedule walking the path without looking
    slots up as with the general pass, and the checker accepts it."""
    instance = parse_instance_json(gzip.decompress((DATA / "tic-12.original.json.gz").read_bytes()))
    problem = Problem(instance)
    assert kempe.all_pairs(problem.parts)
    start = greedy_state(problem).slot_of
    ends = []
    for pairs in (True, False):
        state = State.of_slots(problem, start)
        movable = [m for m in range(problem.n_meetings) if state.slot_of[m] >= 0]
        may = kempe.movable_slots(state)
        assert kempe.unrestricted(state, may)  # no windows, everyone available
        rng = random.Random(3)
        made = 0
        for _ in range(20_000):
            made += kempe._move(state, rng, movable, may, 0.5, pairs, pairs) != 0
        assert made > 0
        ends.append(state.slot_of[:])
        assert check(instance, state.schedule()).valid
    assert ends[0] == ends[1]
