"""The scheduler: the heuristic, then the exact model where it fits; the best wins.

One deadline, `time_limit` seconds after `started`, holds for the whole run (compiling
the instance, the greedy baseline, the bound, construction, search, the exact model,
fairness, rendering):

1. If the exact model fits (`exact.fits`: its variables few enough for the memory and
   for the time left), the heuristic gets the first 10 % of the time (it mostly stops
   by itself earlier on such instances); else it gets all of it, and that is all.
   Where it fits (and without `max_idle_spread`), a second run starts at once in a
   child process (`second_run`, the second core): its own heuristic run, another seed.
2. With `max_idle_spread`, the heuristic's schedule is made fair (`fairness.enforce`).
3. Unless that schedule is already provably optimal (the summed priority at the upper
   bound, idle time at the floor of `idle_bound`):
   - every meeting placed and the idle floor known: all that is left is a schedule at
     the floor, which the annealing finds and CP-SAT did not (on the forum instances
     its bound never rose above the floor within 10 s, nor did it find a better
     schedule). So no CP-SAT: simulated annealing over Kempe-chain swaps (`kempe`),
     in attempts each from a new heuristic schedule (`second_run.restarts`), here and
     in the second run (other seeds; there with the annealing's loop compiled by
     numba where the limit is long enough, `kempe_compiled`), to the deadline or until
     either reaches the floor (then the other is stopped); the better schedule wins.
   - else (the priority below its bound, or no floor): the second run's schedule is
     taken if better, the child ends, and as before: for half the time left, a second
     heuristic run if the first did not place all the priority it might, then the
     annealing; for the other half CP-SAT in a thread, hinted with the best schedule
     so far, while the annealing goes on until the idle time meets the bound CP-SAT
     has proven (then CP-SAT is stopped too). The best schedule wins.

The result says which schedule won, whether it is proven optimal, and the bound: no
schedule places more summed priority than `priority_bound`, and none placing that much
has less idle time than `idle_bound`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from services.scheduling.solver import exact, fairness, kempe
from services.scheduling.solver.check import check
from services.scheduling.solver.construct import Stats
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.idle_bound import all_placed_idle_bound
from services.scheduling.solver.model import Instance, Schedule
from services.scheduling.solver.optimise import optimise_state
from services.scheduling.solver.second_run import SecondRun, restarts

# Share of the time limit for the heuristic when the exact model may run after it.
HEURISTIC_SHARE = 0.1
# The second run's seed is the first's plus this (the first run uses seed .. seed + 3).
SECOND_SEED = 7
# Seconds the portfolio waits for the second run's heuristic where it does not anneal.
SECOND_WAIT = 0.25
# Kept back for reading the second run's answer and ending its process (a loaded
# machine delays both).
ENDING_SECONDS = 0.05
# ... where both runs load numba (`kempe_compiled`): ending a process of 180 MB took
# 90 ms at a load of 5 (`nice -n 10`), against 4 ms without numba, and loading it here
# holds the interpreter for up to 0.13 s at a time.
ENDING_SECONDS_COMPILED = 0.3


@dataclass(slots=True)
class Result:
    schedule: Schedule
    priority: int  # summed priority placed
    idle: int  # idle slots, summed over participants and sessions
    proven_optimal: bool
    priority_bound: int  # no schedule places more summed priority
    idle_bound: int  # no schedule placing priority_bound has less idle time
    method: str  # "heuristic" (with annealing) or "cp-sat": whose schedule it is
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
    second_process: bool = True,
) -> Result:
    """The best schedule found within `time_limit` seconds of `started` (default now).
    With `second_process`, where the exact model fits, a second run in a child process
    (`second_run`) may use the second core."""
    started = time.monotonic() if started is None else started
    deadline = started + time_limit
    problem = Problem(instance)
    spread = problem.max_idle_spread
    run_exact, why = False, "skipped: not asked for"
    if use_exact and problem.n_meetings:
        run_exact, why = exact.fits(problem, deadline - time.monotonic())
        if run_exact:
            exact.start_import()
        else:
            why = f"skipped: {why}"
    # long enough for both runs to anneal compiled (`kempe_compiled`)
    compiled = run_exact and kempe.wants_compiled(problem, deadline - time.monotonic())
    left = deadline - started
    heuristic_limit = left * HEURISTIC_SHARE if run_exact else left
    second = None
    if run_exact and second_process and spread is None:
        second = _start_second(instance, seed, started + heuristic_limit, deadline, compiled)
    try:
        return _solve(problem, started, deadline, seed, run_exact, why, heuristic_limit, second)
    finally:
        if second is not None:
            second.close()


def _solve(
    problem: Problem,
    started: float,
    deadline: float,
    seed: int,
    run_exact: bool,
    why: str,
    heuristic_limit: float,
    second: SecondRun | None,
) -> Result:
    spread = problem.max_idle_spread
    stats = Stats()
    state = optimise_state(problem, heuristic_limit, seed, stats=stats, started=started)
    # the rendering costs about what the greedy baseline took; keep that back
    reserve = 0.01 + 3 * stats.greedy_seconds
    lp_bound = stats.priority_bound or sum(problem.prio)
    if spread is not None:
        fair = fairness.enforce(state, spread, deadline - reserve)
    else:
        fair = True
    priority, idle = state.priority(), state.idle()
    priority_bound = max(lp_bound, priority)
    # no schedule placing every meeting leaves less idle time than `floor`; worked out
    # where the exact model may run (on large events a bound does not pay for itself)
    every = None  # (nothing to prove when the schedule has no idle time)
    if run_exact and idle > 0:
        every = all_placed_idle_bound(problem, priority_bound, deadline)
    floor = every or 0
    every_priority = priority_bound  # all there is, where `every` is known
    idle_bound = 0
    method = "heuristic"
    status = why
    if fair and priority >= priority_bound and idle <= floor:
        run_exact, status = False, "skipped: the heuristic's schedule is optimal"
    elif second is not None and every is not None and priority >= priority_bound:
        # all that is left is a schedule at the floor: two annealing runs look for it
        run_exact = False
        end = deadline - reserve - (ENDING_SECONDS_COMPILED if second.compiled else ENDING_SECONDS)
        state, status = _two_annealers(problem, state, end, seed, floor, second)
        priority, idle = state.priority(), state.idle()
    elif second is not None:  # the exact model as before; the second run's heuristic
        answer = second.collect(min(deadline - reserve, time.monotonic() + SECOND_WAIT))
        if answer is not None:
            state = _better(_checked(problem, answer.slot_of) or state, state)
            priority, idle = state.priority(), state.idle()
            priority_bound = max(priority_bound, priority)
    if run_exact:
        found, state, status = _improve(problem, state, deadline - reserve, lp_bound, seed, floor)
        if found.slot_of is not None:
            other = State.of_slots(problem, found.slot_of)
            other_fair = spread is None or other.idle_spread() <= spread
            if spread is not None and not fair:
                fair = state.idle_spread() <= spread
            if (other_fair and not fair) or (other_fair == fair and other.score() > state.score()):
                state, fair = other, other_fair
                method = "cp-sat"
        priority, idle = state.priority(), state.idle()
        if found.priority_bound is not None:
            priority_bound = min(priority_bound, found.priority_bound)
            if found.idle_bound is not None and priority_bound == found.priority_bound:
                idle_bound = max(0, found.idle_bound)
    priority_bound = max(priority_bound, priority)  # a fair schedule may place less
    if every is not None and priority_bound >= every_priority:
        idle_bound = max(idle_bound, every)
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


def _improve(
    problem: Problem, state: State, deadline: float, lp_bound: int, seed: int, floor: int
) -> tuple[exact.ExactResult, State, str]:
    """Improve `state` until `deadline`, in two halves. First alone: a second heuristic
    run (another seed) if `state` does not place all the priority it might, then, while
    the priority is at its bound, simulated annealing over Kempe chains (without a
    fairness bound only: neither heeds it), on until OR-Tools is imported. Then CP-SAT,
    hinted with the best schedule so far, in a thread (CP-SAT releases the interpreter
    lock), while the annealing goes on until it meets the idle bound CP-SAT has proven.
    No CP-SAT if the annealing reaches `floor` (a proven lower bound on the idle time
    with every meeting placed; 0 if there is none), or if the import takes more than
    half the time left. Returns CP-SAT's result, the better of this thread's states (the
    caller compares it with CP-SAT's) and CP-SAT's status."""
    none = exact.ExactResult(None, "skipped", None, None)
    anneals = problem.max_idle_spread is None
    begun = time.monotonic()
    mid = begun + 0.5 * (deadline - begun)
    mine = State.of_slots(problem, state.slot_of)
    # alone first (CP-SAT's workers would take most of the processor): half the time,
    # and on until OR-Tools is imported
    if anneals:
        if mine.priority() < lp_bound:
            mine = _better(optimise_state(problem, mid - time.monotonic(), seed + 3), mine)
        if mine.priority() >= lp_bound:

            def later(_: int) -> bool:
                return time.monotonic() >= mid and exact.is_imported()

            kempe.anneal(mine, deadline, seed, later, begun, floor=floor)
            if mine.idle() <= floor:
                return none, _better(mine, state), "skipped: the annealed schedule is optimal"
    if not exact.imported(0.5 * (deadline - time.monotonic())):
        if anneals and mine.priority() >= lp_bound:
            kempe.anneal(mine, deadline, seed + 1, None, begun, floor=floor)
        return none, _better(mine, state), "skipped: OR-Tools was still being imported"
    if mine.score() > state.score():
        state = mine
    run = exact.ExactRun(problem, seed)
    if not run.build(deadline, state, lp_bound):
        return none, state, run.skipped or "skipped"
    box: list[exact.ExactResult] = []
    thread = threading.Thread(target=lambda: box.append(run.solve(deadline)), daemon=True)
    thread.start()
    if anneals:
        if state.priority() < lp_bound:
            other = optimise_state(problem, deadline - time.monotonic(), seed + 1)
            state = _better(other, state)
        if state.priority() >= lp_bound and time.monotonic() < deadline:
            mine = State.of_slots(problem, state.slot_of)

            def enough(idle: int) -> bool:
                bound = run.idle_lower_bound()
                return not thread.is_alive() or (bound is not None and idle <= bound)

            kempe.anneal(mine, deadline, seed + 2, enough, begun, floor=floor)
            state = _better(mine, state)
        bound = run.idle_lower_bound()
        if state.priority() >= lp_bound and (
            state.idle() <= floor or (bound is not None and state.idle() <= bound)
        ):
            run.stop()  # nothing left for CP-SAT to find
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():  # CP-SAT past its own limit (a busy machine): stop it now
        run.stop()
        thread.join()
    return box[0], state, box[0].status


def _start_second(
    instance: Instance, seed: int, heuristic_deadline: float, deadline: float, compiled: bool
) -> SecondRun | None:
    try:
        return SecondRun(instance, seed + SECOND_SEED, heuristic_deadline, deadline, compiled)
    except OSError:  # no process to be had: the first run goes on alone
        return None


def _two_annealers(
    problem: Problem, state: State, deadline: float, seed: int, floor: int, second: SecondRun
) -> tuple[State, str]:
    """Every meeting placed and the idle floor known: annealing attempts here while
    the second run makes its own in its process (`second_run.restarts`, other seeds),
    until the deadline or until either reaches the floor; the better schedule wins."""

    def enough(_: int) -> bool:
        answer = second.poll()
        return answer is not None and answer.idle <= floor

    if second.compiled:  # (after the heuristic: beside it, it would starve it)
        from services.scheduling.solver import kempe_compiled

        kempe_compiled.start_loading()  # used from the first attempt after it is there
    mine = restarts(problem, State.of_slots(problem, state.slot_of), deadline, seed, floor, enough)
    state = _better(mine, state)
    answer = second.poll() if mine.idle() <= floor else second.collect(deadline)
    second.close()
    won = ""
    if answer is not None:
        other = _checked(problem, answer.slot_of)
        if other is not None and other.score() > state.score():
            state, won = other, " (its schedule won)"
    elif second.failed:
        won = f" ({second.failed})"
    return state, (
        f"skipped: every meeting placed, idle floor {floor}: a second annealing run instead{won}"
    )


def _checked(problem: Problem, slot_of: list[int]) -> State | None:
    """The second run's schedule as a state, if the checker accepts it."""
    if len(slot_of) != problem.n_meetings or any(not -1 <= t < problem.n_slots for t in slot_of):
        return None
    other = State.of_slots(problem, slot_of)
    return other if check(problem.instance, other.schedule()).valid else None


def _better(a: State, b: State) -> State:
    return a if a.score() > b.score() else b
