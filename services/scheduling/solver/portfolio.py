"""The scheduler: the heuristic, then the exact model where it fits; the best wins.

One deadline, `time_limit` seconds after `started`, holds for the whole run (compiling
the instance, the greedy baseline, the bound, construction, search, the exact model,
fairness, rendering):

1. If the exact model fits (`exact.fits`: its variables few enough for the memory and
   for the time left), the heuristic gets the first 15 % of the time, then Kempe-chain
   moves (`kempe`) until 40 % (both mostly stop by themselves earlier on such
   instances); else the heuristic gets all of it.
2. With `max_idle_spread`, the heuristic's schedule is made fair (`fairness.enforce`).
3. Unless that schedule is already provably optimal (the summed priority at the upper
   bound, no idle time), CP-SAT gets the rest of the time, hinted with it; its
   schedule replaces the heuristic's only if it is better.

The result says which schedule won, whether it is proven optimal, and the bound: no
schedule places more summed priority than `priority_bound`, and none placing that much
has less idle time than `idle_bound`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from services.scheduling.solver import exact, fairness, kempe
from services.scheduling.solver.construct import Stats
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.model import Instance, Schedule
from services.scheduling.solver.optimise import optimise_state

# Shares of the time limit for the heuristic and then Kempe-chain moves, when the exact
# model runs after them (both mostly stop by themselves much earlier).
HEURISTIC_SHARE = 0.15
KEMPE_SHARE = 0.25


@dataclass(slots=True)
class Result:
    schedule: Schedule
    priority: int  # summed priority placed
    idle: int  # idle slots, summed over participants and sessions
    proven_optimal: bool
    priority_bound: int  # no schedule places more summed priority
    idle_bound: int  # no schedule placing priority_bound has less idle time
    method: str  # "heuristic" or "cp-sat": whose schedule it is
    exact_status: str  # CP-SAT's status, or why it did not run
    seconds: float
    idle_by_participant: dict[str, int] = field(default_factory=dict)
    fair: bool = True  # the idle spread is within max_idle_spread (or there is none)
    stats: Stats = field(default_factory=Stats)


def solve(
    instance: Instance,
    time_limit: float = 10.0,
    seed: int = 0,
    use_exact: bool = True,
    started: float | None = None,
) -> Result:
    """The best schedule found within `time_limit` seconds of `started` (default now)."""
    started = time.monotonic() if started is None else started
    deadline = started + time_limit
    problem = Problem(instance)
    spread = problem.max_idle_spread
    run_exact, why = False, "skipped: not asked for"
    if use_exact and problem.n_meetings:
        run_exact, why = exact.fits(problem, deadline - time.monotonic())
        if not run_exact:
            why = f"skipped: {why}"
    left = deadline - started
    heuristic_limit = left * HEURISTIC_SHARE if run_exact else left
    stats = Stats()
    state = optimise_state(problem, heuristic_limit, seed, stats=stats, started=started)
    # the rendering costs about what the greedy baseline took; keep that back
    reserve = 0.01 + 3 * stats.greedy_seconds
    if run_exact and not (
        state.idle() == 0 and state.priority() >= (stats.priority_bound or sum(problem.prio))
    ):
        kempe_deadline = min(started + left * (HEURISTIC_SHARE + KEMPE_SHARE), deadline - reserve)
        kempe.kempe_search(state, kempe_deadline, seed)
    fair = True
    if spread is not None:
        fair = fairness.enforce(state, spread, deadline - reserve)
    lp_bound = stats.priority_bound or sum(problem.prio)
    priority, idle = state.priority(), state.idle()
    priority_bound = max(lp_bound, priority)
    idle_bound = 0
    method = "heuristic"
    status = why
    if fair and priority >= priority_bound and idle == 0:
        run_exact, status = False, "skipped: the heuristic's schedule is optimal"
    if run_exact:
        found = exact.solve_exact(
            problem, deadline - reserve, hint=state, priority_ub=lp_bound, seed=seed
        )
        status = found.status
        if found.slot_of is not None:
            other = _state_of(problem, found.slot_of)
            other_fair = spread is None or other.idle_spread() <= spread
            if (other_fair and not fair) or (other_fair == fair and other.score() > state.score()):
                state, fair = other, other_fair
                priority, idle = state.priority(), state.idle()
                method = "cp-sat"
        if found.priority_bound is not None:
            priority_bound = min(priority_bound, found.priority_bound)
            if found.idle_bound is not None and priority_bound == found.priority_bound:
                idle_bound = found.idle_bound
    priority_bound = max(priority_bound, priority)  # a fair schedule may place less
    if priority < priority_bound:
        idle_bound = 0
    proven = fair and priority == priority_bound and idle <= idle_bound
    schedule = state.schedule()
    return Result(
        schedule=schedule,
        priority=priority,
        idle=idle,
        proven_optimal=proven,
        priority_bound=priority_bound,
        idle_bound=min(idle_bound, idle) if priority == priority_bound else idle_bound,
        method=method,
        exact_status=status,
        seconds=time.monotonic() - started,
        idle_by_participant={problem.part_ids[i]: state.idle_of(i) for i in range(problem.n_parts)},
        fair=fair,
        stats=stats,
    )


def _state_of(problem: Problem, slot_of: list[int]) -> State:
    state = State(problem)
    for m, t in enumerate(slot_of):
        if t >= 0:
            state.add(m, t)
    return state
