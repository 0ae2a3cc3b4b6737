"""An upper bound on the summed priority that any schedule can place.

Forget slots and tables: each participant i then only has room for
r_i = min(max_meetings, available slots) meetings, and choosing the meetings is a
maximum-weight b-matching. Any feasible solution of the dual of its linear
relaxation bounds it from above:

    minimise  sum_i r_i * y_i + sum_m z_m
    such that sum_{i in m} y_i + z_m >= priority_m,  y, z >= 0.

y starts at 0 and coordinate descent sets each y_i, in turn, to its best value
given the others (the r_i-th largest "residual" priority of i's meetings), which
converges quickly. Meetings whose participants share no available slot count for
nothing. The optimiser stops early when it has reached this bound with no idle time.
"""

from __future__ import annotations

import time

from services.scheduling.solver.core import Problem


def priority_bound(problem: Problem, passes: int = 6, deadline: float = float("inf")) -> int:
    """Any y is a valid dual: past `deadline` the passes stop, the bound stays valid."""
    p = problem
    valid = [bool(p.common_avail(m)) for m in range(p.n_meetings)]
    room = [min(p.cap[i], p.avail[i].bit_count()) for i in range(p.n_parts)]
    mine = [[m for m in p.by_part[i] if valid[m]] for i in range(p.n_parts)]
    y = [0] * p.n_parts
    tight = [i for i in range(p.n_parts) if len(mine[i]) > room[i]]
    for _ in range(passes):
        if time.monotonic() > deadline:
            break
        changed = False
        for i in tight:
            residual = sorted(
                (p.prio[m] - sum(y[j] for j in p.parts[m] if j != i) for m in mine[i]),
                reverse=True,
            )
            best = max(0, residual[room[i]])  # the (room+1)-th largest: all above it pay
            if best != y[i]:
                y[i] = best
                changed = True
        if not changed:
            break
    total = sum(r * v for r, v in zip(room, y, strict=True))
    for m in range(p.n_meetings):
        if valid[m]:
            total += max(0, p.prio[m] - sum(y[i] for i in p.parts[m]))
    return total
