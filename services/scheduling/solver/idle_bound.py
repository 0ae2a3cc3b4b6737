"""A lower bound on each participant's idle time, from its own slots alone.

A participant who has k meetings, in slots it can reach (those any of its meetings may
take), leaves at least `least_idle(...)[k]` idle slots, whatever the other participants
do: per session, j meetings in the reachable slots between a first slot a and a last
slot b (both reachable, at least j reachable slots in between) leave b - a + 1 - j idle
slots, and the sessions share the k meetings out as best they can (a min-plus
convolution). Unavailable slots are what makes it bite: forumt-14's participant
available in 8 of 10 slots, with the two gone in the middle, and 8 meetings, cannot
leave fewer than 2 idle slots. Summed over the participants these bounds prove the four
forumt-14 optima outright; the exact model states them as constraints, which a
linear relaxation of its per-slot gap variables does not find by itself.

The bound never falls as k grows (drop the first meeting of a schedule of k + 1: the
idle time does not grow), which the exact model relies on when it states it for "at
least k meetings".
"""

from __future__ import annotations

import time

from services.scheduling.solver.core import Problem, bits

INFINITE = 1 << 30


def session_least_idle(reach: list[int]) -> list[int]:
    """For the reachable slot positions `reach` (ascending) of one session: entry j is
    the least idle time of j meetings there (INFINITE past len(reach))."""
    n = len(reach)
    best = [0] * (n + 1)
    for j in range(2, n + 1):
        # j meetings spanning the reachable slots reach[s] .. reach[s + j - 1] at least
        best[j] = min(reach[s + j - 1] - reach[s] + 1 - j for s in range(n - j + 1))
    return best


def least_idle(problem: Problem, reach: int) -> list[int]:
    """Entry k: no schedule giving the participant k meetings, all in the slots of the
    mask `reach`, leaves it less idle time than this (INFINITE if k slots are too few)."""
    p = problem
    total = [0]
    for a, mask in zip(p.session_start, p.session_mask, strict=True):
        here = session_least_idle([t - a for t in bits(reach & mask)])
        merged = [INFINITE] * (len(total) + len(here) - 1)
        for k, u in enumerate(total):
            if u >= INFINITE:
                continue
            for j, v in enumerate(here):
                if u + v < merged[k + j]:
                    merged[k + j] = u + v
        total = merged
    return total


def placeable(problem: Problem, m: int) -> int:
    """The slots meeting m may take (its locked one if it has one); 0: none."""
    p = problem
    if p.fixed_slot[m] >= 0:
        return p.common_avail_any(m) & (1 << p.fixed_slot[m])
    return p.common_avail(m)


def all_placed_idle_bound(
    problem: Problem, priority_ub: int, deadline: float = float("inf")
) -> int | None:
    """No schedule placing every meeting that has a slot it may take leaves less idle
    time than this. None if that is not known: `priority_ub` (an upper bound on the
    summed priority) says they cannot all be placed, or a participant has more of them
    than its cap or its slots, or `deadline` (time.monotonic()) passed."""
    p = problem
    slots = [placeable(p, m) for m in range(p.n_meetings)]
    total = sum(pr for pr, s in zip(p.prio, slots, strict=True) if s)
    if priority_ub < total:
        return None
    idle = 0
    for i in range(p.n_parts):
        if i % 256 == 0 and time.monotonic() > deadline:
            return None
        mine = [slots[m] for m in p.by_part[i] if slots[m]]
        if len(mine) > p.cap[i]:
            return None
        reach = 0
        for s in mine:
            reach |= s
        least = least_idle(p, reach)
        if len(mine) >= len(least) or least[len(mine)] >= INFINITE:
            return None
        idle += least[len(mine)]
    return idle
