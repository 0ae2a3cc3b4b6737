"""Fairness of idle time: bring a schedule within `max_idle_spread`.

The bound: the idle slots of any two participants of the instance (summed over the
sessions) differ by at most `max_idle_spread` (the literature's "breaks may differ by
at most d"). The heuristic minimises the total idle time without it; `enforce` then
repairs its schedule, in three steps:

1. moves: take a meeting of a participant with the most idle time to another free
   slot, the move lowering (spread excess, total idle) the most, while one does;
2. unscheduling, if moves are not enough: take out the meeting of such a participant
   whose going lowers its idle time the most (lowest priority first among equals);
   if only fixed meetings are left to such a participant, all the others go (the fixed
   meetings alone): so this ends with the bound met unless the fixed meetings alone
   break it;
3. re-insertion: meetings left out go back into free slots wherever the bound still
   holds.

Idle values are kept in a histogram (at most one bucket per slot), so the spread of
a trial costs a few dozen steps whatever the number of participants.
"""

from __future__ import annotations

import time

from services.scheduling.solver.core import State, bits


class _Idle:
    """Every participant's idle time and a histogram of the values."""

    def __init__(self, state: State) -> None:
        self.state = state
        n = state.p.n_parts
        self.of = [state.idle_of(i) for i in range(n)]
        self.hist = [0] * (state.p.n_slots + 1)
        for v in self.of:
            self.hist[v] += 1

    def update(self, people: tuple[int, ...]) -> None:
        for i in people:
            v = self.state.idle_of(i)
            self.hist[self.of[i]] -= 1
            self.hist[v] += 1
            self.of[i] = v

    def spread(self) -> int:
        h = self.hist
        lo = next((v for v, c in enumerate(h) if c), 0)
        hi = next((v for v in range(len(h) - 1, -1, -1) if h[v]), 0)
        return hi - lo

    def most(self) -> list[int]:
        top = max(self.of, default=0)
        return [i for i, v in enumerate(self.of) if v == top]


def enforce(state: State, spread: int, deadline: float) -> bool:
    """Change `state` so that its idle spread is at most `spread` (see the module
    docstring); moves and re-insertion stop at `deadline`, unscheduling does not.
    True if the bound holds at the end."""
    p = state.p
    if not p.n_parts:
        return True
    idle = _Idle(state)
    total = sum(idle.of)

    def key() -> tuple[int, int]:
        return (max(0, idle.spread() - spread), total)

    # 1. moves
    while idle.spread() > spread and time.monotonic() < deadline:
        now = key()
        best: tuple[tuple[int, int], int, int] | None = None
        for i in idle.most()[:8]:
            for m in p.by_part[i]:
                t0 = state.slot_of[m]
                if t0 < 0 or p.fixed_slot[m] >= 0:
                    continue
                here = sum(idle.of[j] for j in p.parts[m])
                state.remove(m)
                for t in bits(state.free_slots(m) & ~(1 << t0)):
                    state.add(m, t)
                    idle.update(p.parts[m])
                    there = sum(idle.of[j] for j in p.parts[m])
                    trial = (max(0, idle.spread() - spread), total - here + there)
                    if trial < now and (best is None or trial < best[0]):
                        best = (trial, m, t)
                    state.remove(m)
                state.add(m, t0)
                idle.update(p.parts[m])
        if best is None:
            break
        _, m, t = best
        state.remove(m)
        state.add(m, t)
        idle.update(p.parts[m])
        total = sum(idle.of)

    # 2. unscheduling
    while idle.spread() > spread:
        choice: tuple[tuple[int, int, int], int] | None = None
        for i in idle.most():
            for m in p.by_part[i]:
                if state.slot_of[m] < 0 or p.fixed_slot[m] >= 0:
                    continue
                t0 = state.slot_of[m]
                before = idle.of[i]
                state.remove(m)
                idle.update(p.parts[m])
                k = (idle.of[i] - before, p.prio[m], m)
                state.add(m, t0)
                idle.update(p.parts[m])
                if choice is None or k < choice[0]:
                    choice = (k, m)
        if choice is None:
            # the most idle keep only fixed meetings, and others have filled gaps the
            # fixed meetings leave: fall back to the fixed meetings alone
            for m in range(p.n_meetings):
                if state.slot_of[m] >= 0 and p.fixed_slot[m] < 0:
                    state.remove(m)
            idle = _Idle(state)
            break
        m = choice[1]
        state.remove(m)
        idle.update(p.parts[m])

    # 3. re-insertion
    waiting = sorted(
        (m for m in range(p.n_meetings) if state.slot_of[m] < 0 and p.fixed_slot[m] < 0),
        key=lambda m: (-p.prio[m], m),
    )
    for m in waiting:
        if time.monotonic() > deadline:
            break
        free = state.free_slots(m)
        options = sorted(bits(free), key=lambda t: (state.added_idle(m, t), t))
        for t in options:
            state.add(m, t)
            idle.update(p.parts[m])
            if idle.spread() <= spread:
                break
            state.remove(m)
            idle.update(p.parts[m])
    return idle.spread() <= spread
