"""The baseline: first accepted, first placed.

Fixed meetings go where they are locked; then every other meeting, in input
order, goes into the earliest slot where all its participants are available and
free, under their caps, with a free table if it is onsite. Nothing ever moves.
"""

from __future__ import annotations

from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.model import Instance, Schedule


def greedy_state(problem: Problem) -> State:
    state = State(problem)
    state.place_fixed()
    for m in range(problem.n_meetings):
        if state.slot_of[m] < 0 and problem.fixed_slot[m] < 0:
            free = state.free_slots(m)
            if free:
                state.add(m, (free & -free).bit_length() - 1)
    return state


def greedy(instance: Instance) -> Schedule:
    return greedy_state(Problem(instance)).schedule()
