"""Incremental placement: one newly accepted meeting into an existing schedule.

Nothing already placed moves. The meeting goes into the slot, among those where
all its participants are available and free (under their caps, with a free
table if it is onsite), that adds the least idle time for its participants;
ties go to a slot next to their other meetings, then to the earliest. A fixed
meeting goes to its locked slot (and table) or nowhere; the locked slots of fixed
meetings not yet in the schedule are held for them.
"""

from __future__ import annotations

from collections.abc import Sequence

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
            state.give_table(m, a.table)
    return state


def place_in_state(state: State, m: int) -> Assignment | Unscheduled:
    """Place meeting m in `state` (which is updated) or say why it cannot go anywhere."""
    p = state.p
    mid = p.meeting_ids[m]
    fixed = p.fixed_slot[m]
    if fixed >= 0:
        t = fixed if state.free_slots(m) >> fixed & 1 else -1
        if t >= 0 and p.fixed_table[m] and state.table_taken(t, p.fixed_table[m]):
            t = -1
    else:
        t = state.best_slot(m, state.free_slots(m))
    if t < 0:
        return Unscheduled(mid, state.reason(m))
    table: int | None = None
    if p.onsite[m]:
        table = p.fixed_table[m] or state.free_table(t)
        if not table:
            return Unscheduled(mid, f"no table number is free in {p.slot_ids[t]}")
    state.add(m, t)
    if table is not None:
        state.give_table(m, table)
    return Assignment(mid, p.slot_ids[t], table)


def place(instance: Instance, schedule: Schedule, meeting_id: str) -> Assignment | Unscheduled:
    """Where to put meeting `meeting_id` (of `instance`) given the placed meetings of
    `schedule`, which stay as they are; or an `Unscheduled` with the reason."""
    return place_many(instance, schedule, [meeting_id])[0]


def place_many(
    instance: Instance, schedule: Schedule, meeting_ids: Sequence[str]
) -> list[Assignment | Unscheduled]:
    """`place` for each of `meeting_ids` in turn, each among the meetings of `schedule`
    and those placed before it in the list (none of which moves): the same answers as
    one `place` per meeting with the schedule grown by each answer, but the instance is
    compiled and the schedule loaded once, not once per meeting. The meetings of the
    instance that are neither in `schedule` nor in `meeting_ids` change nothing (unless
    fixed: their locked slots are held)."""
    problem = Problem(instance)
    targets = []
    for meeting_id in meeting_ids:
        m = problem.meeting_index.get(meeting_id)
        if m is None:
            raise InstanceError(f"{meeting_id!r} is not a meeting of the instance")
        targets.append(m)
    if len(set(targets)) != len(targets):
        raise InstanceError("a meeting to place is listed twice")
    state = load(problem, schedule, skip=meeting_ids[0] if len(targets) == 1 else None)
    for m in targets:
        if state.slot_of[m] >= 0:
            raise InstanceError(f"{problem.meeting_ids[m]} is already in the schedule")
    reserve_fixed(state, but=frozenset(targets))
    return [place_in_state(state, m) for m in targets]


def reserve_fixed(state: State, but: int | frozenset[int]) -> None:
    """Hold the locked slots (and tables) of the instance's fixed meetings that the
    schedule does not have yet (but those of `but`), so that no other meeting takes them."""
    p = state.p
    skip = frozenset([but]) if isinstance(but, int) else but
    for k in range(p.n_meetings):
        t = p.fixed_slot[k]
        if t < 0 or k in skip or state.slot_of[k] >= 0 or not state.free_slots(k) >> t & 1:
            continue
        if p.fixed_table[k] and state.table_taken(t, p.fixed_table[k]):
            continue
        state.add(k, t)
        if p.fixed_table[k]:
            state.give_table(k, p.fixed_table[k])


class Growing:
    """Incremental placement kept between calls: an instance's schedule compiled and loaded
    once (O(agenda)), then each `place` of new meetings costs what those meetings cost,
    not the size of the agenda. The answers are `place_many`'s for the instance grown by
    the new meetings and the schedule grown by the answers given so far."""

    def __init__(self, instance: Instance, schedule: Schedule) -> None:
        self.problem = Problem(instance)
        self.state = load(self.problem, schedule)
        reserve_fixed(self.state, but=frozenset())

    def place(self, more: Instance) -> list[Assignment | Unscheduled]:
        """Place the meetings of `more` (new ones, of the same grid) in turn."""
        added = self.problem.extend(more)
        self.state.grow()
        # Fixed meetings among the new ones get their locked slot or nowhere, as
        # `place_in_state` does for them; the others' reservations were made at the start.
        return [place_in_state(self.state, m) for m in added]
