"""Incremental placement: one newly accepted meeting into an existing schedule.

Nothing already placed moves. The meeting goes into the slot, among those where
all its participants are available and free (under their caps, with a free
table if it is onsite), that adds the least idle time for its participants;
ties go to a slot next to their other meetings, then to the earliest. A fixed
meeting goes to its locked slot (and table) or nowhere; the locked slots of fixed
meetings not yet in the schedule are held for them.
"""

from __future__ import annotations

from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.model import (
    Assignment,
    Instance,
    InstanceError,
    Schedule,
    Unscheduled,
)


def load(problem: Problem, schedule: Schedule, skip: str | None = None) -> State:
    """A state holding the assignments of `schedule` (tables as numbered there)."""
    state = State(problem)
    for a in schedule.assignments:
        if a.meeting == skip:
            raise InstanceError(f"{a.meeting} is already in the schedule, in {a.slot}")
        m = problem.meeting_index.get(a.meeting)
        if m is None:
            raise InstanceError(f"the schedule has {a.meeting!r}, which the instance does not")
        t = problem.slot_index.get(a.slot)
        if t is None:
            raise InstanceError(f"the schedule puts {a.meeting} in unknown slot {a.slot!r}")
        if state.slot_of[m] >= 0:
            raise InstanceError(f"the schedule assigns {a.meeting} twice")
        state.add(m, t)
        if a.table is not None and problem.onsite[m]:
            state.table_of[m] = a.table
    return state


def free_table(state: State, t: int) -> int:
    """The lowest table number not in use in slot t (0 if none is)."""
    p = state.p
    taken = {n for k, n in state.table_of.items() if state.slot_of[k] == t}
    for n in range(1, p.tables + 1):
        if n not in taken:
            return n
    return 0


def place_in_state(state: State, m: int) -> Assignment | Unscheduled:
    """Place meeting m in `state` (which is updated) or say why it cannot go anywhere."""
    p = state.p
    mid = p.meeting_ids[m]
    fixed = p.fixed_slot[m]
    if fixed >= 0:
        t = fixed if state.free_slots(m) >> fixed & 1 else -1
        if t >= 0 and p.fixed_table[m] and state._table_taken(t, p.fixed_table[m]):
            t = -1
    else:
        t = state.best_slot(m, state.free_slots(m))
    if t < 0:
        return Unscheduled(mid, state.reason(m))
    table: int | None = None
    if p.onsite[m]:
        table = p.fixed_table[m] or free_table(state, t)
        if not table:
            return Unscheduled(mid, f"no table number is free in {p.slot_ids[t]}")
    state.add(m, t)
    if table is not None:
        state.table_of[m] = table
    return Assignment(mid, p.slot_ids[t], table)


def place(instance: Instance, schedule: Schedule, meeting_id: str) -> Assignment | Unscheduled:
    """Where to put meeting `meeting_id` (of `instance`) given the placed meetings of
    `schedule`, which stay as they are; or an `Unscheduled` with the reason."""
    problem = Problem(instance)
    m = problem.meeting_index.get(meeting_id)
    if m is None:
        raise InstanceError(f"{meeting_id!r} is not a meeting of the instance")
    state = load(problem, schedule, skip=meeting_id)
    reserve_fixed(state, but=m)
    return place_in_state(state, m)


def reserve_fixed(state: State, but: int) -> None:
    """Hold the locked slots (and tables) of the instance's fixed meetings that the
    schedule does not have yet, so that no other meeting takes them."""
    p = state.p
    for k in range(p.n_meetings):
        t = p.fixed_slot[k]
        if t < 0 or k == but or state.slot_of[k] >= 0 or not state.free_slots(k) >> t & 1:
            continue
        if p.fixed_table[k] and state._table_taken(t, p.fixed_table[k]):
            continue
        state.add(k, t)
        if p.fixed_table[k]:
            state.table_of[k] = p.fixed_table[k]
