"""The heuristic's state and its first step, construction (see `optimise`).

`Construction` holds what every step of the heuristic shares: the compiled problem,
an undoable state, the random source, statistics and the move budget. Its
`construct` places the meetings by priority, participant-major, each into the slot
adding least idle time.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from services.scheduling.solver.core import Problem, State


@dataclass(slots=True)
class Stats:
    """What the optimiser did, for benchmarks and logs."""

    constructed_priority: int = 0
    constructed_idle: int = 0
    repaired: int = 0
    moves_tried: int = 0
    moves_made: int = 0
    rounds: int = 0
    perturbations: int = 0
    improvements: int = 0
    used_greedy: bool = False
    seconds: float = 0.0  # in all
    best_at: float = 0.0  # seconds until the returned score was first reached
    priority_bound: int = 0  # no schedule places more (see `bound`)
    greedy_seconds: float = 0.0  # the greedy baseline's time (the rendering's is alike)


# One move in this many is aimed at a gap of a participant with idle time; the rest
# are random (meeting, slot) pairs, which let the search drift across plateaus.
TARGETED_EVERY = 16


class Undoable(State):
    """A state that logs its changes so that a failed ejection chain can be undone."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        self.log: list[tuple[int, int]] = []  # (meeting, slot it was in or -1)
        self.in_slot: list[set[int]] = [set() for _ in range(problem.n_slots)]

    def add(self, m: int, t: int) -> None:
        self.log.append((m, -1))
        super().add(m, t)
        self.in_slot[t].add(m)

    def remove(self, m: int) -> None:
        t = self.slot_of[m]
        self.log.append((m, t))
        self.in_slot[t].discard(m)
        super().remove(m)

    def swap_slots(self, meetings: list[int], a: int, b: int) -> None:
        targets = [(m, b if self.slot_of[m] == a else a) for m in meetings]
        for m, _ in targets:  # logged, to be undone
            self.remove(m)
        for m, t in targets:
            self.add(m, t)

    def undo(self, mark: int) -> None:
        log = self.log
        while len(log) > mark:
            m, t = log.pop()
            if t < 0:
                self.in_slot[self.slot_of[m]].discard(m)
                State.remove(self, m)
            else:
                State.add(self, m, t)
                self.in_slot[t].add(m)


class Construction:
    def __init__(self, problem: Problem, seed: int = 0, max_moves: int | None = None) -> None:
        self.p = problem
        self.rng = random.Random(seed)
        self.state = Undoable(problem)
        self.stats = Stats()
        self.common = [problem.common_avail(m) for m in range(problem.n_meetings)]
        # the slots of each meeting as a list, made when the local search first needs it
        self.avail_slots: list[list[int] | None] = [None] * problem.n_meetings
        self.movable = [
            m for m in range(problem.n_meetings) if problem.fixed_slot[m] < 0 and self.common[m]
        ]
        self.budget = 0  # nodes left for the current ejection / augmenting search
        self.moves_left = max_moves
        self.idle = 0  # the state's idle time, kept up to date by the search
        self.started = time.monotonic()
        self.tracking = True  # whether a gain of the search is a new best (not in rounds)
        self.bound = 0  # an upper bound on the summed priority (see `bound`)

    # ------------------------------------------------------------------ construction

    def order(self) -> list[int]:
        """Priority first; within a priority, participant-major, busiest first."""
        p = self.p
        deg = [len(ms) for ms in p.by_part]
        # tightness: meetings wanted per slot available
        tight = [
            deg[i] / max(1, min(p.avail[i].bit_count(), p.cap[i] + 1)) for i in range(p.n_parts)
        ]
        people = sorted(range(p.n_parts), key=lambda i: (-tight[i], -deg[i], i))
        seen = [False] * p.n_meetings
        order: list[int] = []
        for i in people:
            mine = sorted(
                (m for m in p.by_part[i] if not seen[m] and p.fixed_slot[m] < 0),
                key=lambda m: (self.common[m].bit_count(), m),
            )
            for m in mine:
                seen[m] = True
            order.extend(mine)
        order.sort(key=lambda m: -p.prio[m])  # stable: keeps participant-major order
        return order

    def construct(self, deadline: float = float("inf")) -> None:
        """Place every meeting it can; past `deadline`, the rest go into their earliest
        free slot (much cheaper: the time limit holds on the largest events)."""
        st = self.state
        st.place_fixed()
        order = self.order()
        for n, m in enumerate(order):
            if n % 512 == 0 and time.monotonic() > deadline:
                for k in order[n:]:
                    free = st.free_slots(k)
                    if free:
                        st.add(k, (free & -free).bit_length() - 1)
                break
            free = st.free_slots(m)
            if free:
                st.add(m, st.best_slot(m, free))
        st.log.clear()
