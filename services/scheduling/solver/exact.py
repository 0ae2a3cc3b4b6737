"""The exact model: OR-Tools CP-SAT on the whole problem, for instances small enough.

Variables: x[m, t] for each meeting m and each slot t it may take (allowed to it, all
its participants available; only its locked slot if it is fixed). Rules: a meeting in
one slot at most (exactly its locked one if fixed); a participant in one meeting per
slot and at most `max_meetings` in all; per slot at most `tables` onsite meetings.
Table numbers are given out afterwards (`State.number_tables`), as for the heuristic.

Idle time: per participant, session and slot (between the first and the last slot any
of its meetings could take), booleans `before` (some meeting of the participant at or
before the slot in the session), `after` (at or after) and `gap` (both, and no meeting
in the slot), each defined exactly (both directions: much stronger propagation than
the one direction the objective needs); the summed gaps are the idle slots. With
`max_idle_spread` the idle of each participant lies between a least and a most value
at most `max_idle_spread` apart.

Redundant constraints, for the bound: each participant's idle time is at least what
its own reachable slots force for the number of meetings it gets (`idle_bound`; this
proves forumt-14's optimum of 10 at once, where the gap variables' relaxation alone
stayed at 0-6 within 10 s); and when the fixed priority is all there is, every
meeting that can be placed is placed (exactly one slot each).

Objective: maximise priority * BIG - idle, BIG exceeding any possible idle total
(lexicographic). When the summed priority of the hint already meets an upper bound
it is fixed, and only the idle time is minimised.

`fits` is the size guard: the model is built only where its variables are few enough
for the memory and the time left (the portfolio in `solve` decides).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.scheduling.solver.core import Problem, State, bits
from services.scheduling.solver.idle_bound import INFINITE, least_idle

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

# The model is built only up to this many variables (about 0.5 s of Python to build
# and a few hundred MB for CP-SAT at most); larger instances are the heuristic's.
MAX_VARIABLES = 40_000
# Seconds of building per variable, measured (with margin) on the forum instances.
BUILD_SECONDS_PER_VARIABLE = 25e-6


@dataclass(slots=True)
class ExactResult:
    slot_of: list[int] | None  # a schedule (slot per meeting, -1: out) or None
    status: str  # CP-SAT's: OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN; or "skipped: ..."
    priority_bound: int | None  # no schedule places more summed priority
    idle_bound: int | None  # ... and none placing that much has less idle time
    seconds: float = 0.0
    build_seconds: float = 0.0
    variables: int = 0


def size(problem: Problem, most: int = MAX_VARIABLES) -> int:
    """The number of variables the model would have (an estimate for the gaps); counting
    stops past `most`."""
    p = problem
    if p.n_meetings > most:
        return p.n_meetings
    common = [p.common_avail(m) if p.fixed_slot[m] < 0 else 1 for m in range(p.n_meetings)]
    n_x = sum(c.bit_count() for c in common)
    n_aux = 0
    for i in range(p.n_parts):
        reach = 0
        for m in p.by_part[i]:
            reach |= common[m] if p.fixed_slot[m] < 0 else 1 << p.fixed_slot[m]
        for mask in p.session_mask:
            k = (reach & mask).bit_count()
            if k >= 3:
                n_aux += 3 * k
    return n_x + n_aux


def fits(problem: Problem, seconds_left: float) -> tuple[bool, str]:
    """Whether the exact model is worth building with `seconds_left`; and why not."""
    n = size(problem)
    if n > MAX_VARIABLES:
        if n == problem.n_meetings:
            return False, f"{n} meetings, more than {MAX_VARIABLES} variables"
        return False, f"{n} variables, more than {MAX_VARIABLES}"
    build = n * BUILD_SECONDS_PER_VARIABLE
    if seconds_left < 0.5 or build > 0.3 * seconds_left:
        return False, f"{n} variables, about {build:.1f} s to build, {seconds_left:.1f} s left"
    return True, f"{n} variables"


class _OutOfTime(Exception):
    pass


# OR-Tools takes 1-3 s to import (more on a busy machine): a thread does it, started as
# soon as the exact model might run, while the heuristic works; the model is skipped if
# the import is not done in time, so the time limit holds on a first call too.
_imported = threading.Event()
_importing: list[threading.Thread] = []
_import_lock = threading.Lock()


def _import() -> None:
    try:
        from ortools.sat.python import cp_model  # noqa: F401
    finally:
        _imported.set()


def start_import() -> None:
    """Import OR-Tools in the background (once)."""
    with _import_lock:
        if not _importing:
            thread = threading.Thread(target=_import, name="ortools-import", daemon=True)
            _importing.append(thread)
            thread.start()


def is_imported() -> bool:
    return _imported.is_set()


def imported(timeout: float) -> bool:
    """Whether OR-Tools is imported, waiting at most `timeout` seconds for it."""
    start_import()
    return _imported.wait(max(0.0, timeout))


class ExactRun:
    """One CP-SAT run: `build` (Python, holds the interpreter), then `solve`, which may
    run in another thread (CP-SAT releases the interpreter lock) while the caller keeps
    improving its own schedule; `stop` ends it early, `idle_lower_bound` is its proven
    bound on the idle time so far when the priority is fixed."""

    def __init__(
        self, problem: Problem, seed: int = 0, workers: int = 4, participant_bounds: bool = True
    ) -> None:
        self.problem = problem
        self.participant_bounds = participant_bounds
        self.seed = seed
        self.workers = workers
        self.started = time.monotonic()
        self.model: cp_model.CpModel | None = None
        self.x: dict[tuple[int, int], Any] = {}
        self.big = 1
        self.fixed_priority: int | None = None
        self.priority_ub: int | None = None
        self.build_seconds = 0.0
        self.live_bound: float | None = None  # CP-SAT's objective bound, as it improves
        self.solver: cp_model.CpSolver | None = None
        self.skipped: str | None = None

    def build(self, deadline: float, hint: State | None, priority_ub: int | None) -> bool:
        """Build the model; False (and `skipped` says why) if it cannot be done in time."""
        try:
            from ortools.sat.python import cp_model
        except ImportError:  # pragma: no cover - ortools is a runtime dependency
            self.skipped = "skipped: ortools is not installed"
            return False
        try:
            self.model, self.x, self.big, self.fixed_priority = _build(
                self.problem, deadline, hint, priority_ub, self.participant_bounds
            )
        except _OutOfTime:
            self.skipped = "skipped: out of time building the model"
            return False
        self.priority_ub = priority_ub
        self.solver = cp_model.CpSolver()
        self.build_seconds = time.monotonic() - self.started
        return True

    def idle_lower_bound(self) -> int | None:
        """No schedule at the fixed priority has less idle time (None: not known)."""
        b = self.live_bound
        if b is None or self.fixed_priority is None:
            return None
        return -math.floor(b + 1e-6)

    def _on_bound(self, bound: float) -> None:
        self.live_bound = bound

    def stop(self) -> None:
        if self.solver is not None:
            self.solver.stop_search()

    def solve(self, deadline: float) -> ExactResult:
        from ortools.sat.python import cp_model

        if self.model is None or self.solver is None:
            return ExactResult(None, self.skipped or "skipped: not built", None, None)
        problem = self.problem
        build_s = self.build_seconds
        # CP-SAT overshoots its limit a little, more so on a busy machine: keep a margin
        left = 0.95 * (deadline - time.monotonic()) - 0.05
        if left <= 0.05:
            return ExactResult(None, "skipped: no time left to solve", None, None, build_s, build_s)
        solver = self.solver
        solver.parameters.max_time_in_seconds = left
        solver.parameters.num_workers = self.workers
        solver.parameters.random_seed = self.seed
        solver.best_bound_callback = self._on_bound
        status = solver.solve(self.model)
        name = solver.status_name(status)
        result = ExactResult(None, name, None, None, 0.0, build_s, len(self.model.proto.variables))
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            slot_of = [-1] * problem.n_meetings
            for (m, t), v in self.x.items():
                if solver.boolean_value(v):
                    slot_of[m] = t
            result.slot_of = slot_of
            if status == cp_model.OPTIMAL:
                bound = round(solver.objective_value)
            else:
                bound = math.floor(solver.best_objective_bound + 1e-6)
            if self.fixed_priority is not None:  # objective: -idle at the fixed priority
                result.priority_bound = self.priority_ub
                result.idle_bound = -bound
            else:
                p_ub = -(-bound // self.big)
                result.priority_bound = p_ub
                result.idle_bound = p_ub * self.big - bound
        result.seconds = time.monotonic() - self.started
        return result


def solve_exact(
    problem: Problem,
    deadline: float,
    hint: State | None = None,
    priority_ub: int | None = None,
    seed: int = 0,
    workers: int = 4,
    participant_bounds: bool = True,
) -> ExactResult:
    """CP-SAT until `deadline` (time.monotonic()); `hint` seeds it and is never lost:
    the model asks for at least its summed priority. `priority_ub`, a known upper bound
    on the summed priority, lets the model fix the priority when the hint meets it."""
    run = ExactRun(problem, seed, workers, participant_bounds)
    if not run.build(deadline, hint, priority_ub):
        return ExactResult(None, run.skipped or "skipped", None, None)
    return run.solve(deadline)


def _build(
    problem: Problem,
    deadline: float,
    hint: State | None,
    priority_ub: int | None,
    participant_bounds: bool = True,
) -> tuple[cp_model.CpModel, dict[tuple[int, int], Any], int, int | None]:
    from ortools.sat.python import cp_model

    p = problem
    model = cp_model.CpModel()
    x: dict[tuple[int, int], Any] = {}
    at: dict[tuple[int, int], list[Any]] = {}  # (participant, slot) -> x
    mine: list[list[Any]] = [[] for _ in range(p.n_parts)]
    onsite_at: list[list[Any]] = [[] for _ in range(p.n_slots)]
    prio_terms: list[Any] = []
    hinted = hint.slot_of if hint is not None else None
    for m in range(p.n_meetings):
        if m % 256 == 0 and time.monotonic() > deadline:
            raise _OutOfTime
        if p.fixed_slot[m] >= 0:
            slots = 1 << p.fixed_slot[m]
            if not p.common_avail_any(m) >> p.fixed_slot[m] & 1:
                slots = 0
        else:
            slots = p.common_avail(m)
        here = []
        for t in bits(slots):
            v = model.new_bool_var(f"x{m}_{t}")
            x[(m, t)] = v
            here.append(v)
            for i in p.parts[m]:
                at.setdefault((i, t), []).append(v)
                mine[i].append(v)
            if p.onsite[m]:
                onsite_at[t].append(v)
            prio_terms.append(p.prio[m] * v)
            if hinted is not None:
                model.add_hint(v, hinted[m] == t)
        if len(here) > 1:
            model.add_at_most_one(here)
    for vs in at.values():
        if len(vs) > 1:
            model.add_at_most_one(vs)
    for i in range(p.n_parts):
        if len(mine[i]) > p.cap[i]:
            model.add(sum(mine[i]) <= p.cap[i])
    for vs in onsite_at:
        if len(vs) > p.tables:
            model.add(sum(vs) <= p.tables)
    # fixed meetings stay where they are locked (those that fit there, as the
    # heuristic's `place_fixed` decides for an instance built in code)
    placed = hint
    if placed is None:
        placed = State(p)
        placed.place_fixed()
    for m in range(p.n_meetings):
        if p.fixed_slot[m] >= 0 and placed.slot_of[m] >= 0:
            model.add(x[(m, p.fixed_slot[m])] == 1)

    gaps: list[Any] = []
    idle_of: list[list[Any]] = [[] for _ in range(p.n_parts)]
    for i in range(p.n_parts):
        if time.monotonic() > deadline:
            raise _OutOfTime
        busy_hint = hint.busy[i] if hint is not None else 0
        for a, n in zip(p.session_start, p.session_len, strict=True):
            busy = [at.get((i, t), []) for t in range(a, a + n)]
            used = [k for k, b in enumerate(busy) if b]
            # Idle needs two meetings with a slot between them; that slot counts even
            # when no meeting of the participant could be there.
            if len(used) < 2 or used[-1] - used[0] < 2:
                continue
            lo, hi = used[0], used[-1]
            # only slots lo..hi matter: before/after are fixed outside
            before: list[Any] = []
            after: list[Any] = []
            for _ in range(lo, hi + 1):
                before.append(model.new_bool_var(""))
                after.append(model.new_bool_var(""))
            span = range(lo, hi + 1)
            for j, k in enumerate(span):
                for v in busy[k]:
                    model.add_implication(v, before[j])
                    model.add_implication(v, after[j])
                if j:
                    model.add_implication(before[j - 1], before[j])
                    model.add_implication(after[j], after[j - 1])
                # before[j] -> busy here or before[j-1]; after[j] likewise
                prev = [before[j - 1]] if j else []
                model.add_bool_or([*busy[k], *prev]).only_enforce_if(before[j])
                nxt = [after[j + 1]] if k < hi else []
                model.add_bool_or([*busy[k], *nxt]).only_enforce_if(after[j])
            x_mask = busy_hint >> a
            for j, k in enumerate(span):
                if hint is not None:
                    model.add_hint(before[j], bool(x_mask & ((2 << k) - 1)))
                    model.add_hint(after[j], bool(x_mask >> k))
                if k in (lo, hi):
                    continue
                g = model.new_bool_var("")
                model.add(g >= before[j] + after[j] - 1 - sum(busy[k]))
                model.add_implication(g, before[j])
                model.add_implication(g, after[j])
                for v in busy[k]:
                    model.add_implication(v, g.negated())
                if hint is not None:
                    inside = bool(x_mask & ((1 << k) - 1)) and bool(x_mask >> (k + 1))
                    model.add_hint(g, inside and not (x_mask >> k) & 1)
                gaps.append(g)
                idle_of[i].append(g)
    spread = p.max_idle_spread
    if spread is not None:
        n_max = max((len(g) for g in idle_of), default=0)
        most = model.new_int_var(0, n_max, "most_idle")
        least = model.new_int_var(0, n_max, "least_idle")
        for i in range(p.n_parts):
            total = sum(idle_of[i]) if idle_of[i] else 0
            model.add(most >= total)
            model.add(least <= total)
        model.add(most - least <= spread)

    priority = sum(prio_terms)
    fixed_priority: int | None = None
    if hint is not None and (spread is None or hint.idle_spread() <= spread):
        have = hint.priority()  # the hint is a solution: ask for no less
        if priority_ub is not None and have >= priority_ub:
            fixed_priority = have
            model.add(priority == have)
        else:
            model.add(priority >= have)
    # every meeting that can be placed must be (the fixed priority is all there is):
    # say so, presolve does not always see it
    slots_of: list[list[Any]] = [[] for _ in range(p.n_meetings)]
    for (m, _), v in x.items():
        slots_of[m].append(v)
    every = fixed_priority is not None and fixed_priority == sum(
        p.prio[m] for m in range(p.n_meetings) if slots_of[m]
    )
    if every:
        for vs in slots_of:
            if vs:
                model.add_exactly_one(vs)
    if participant_bounds:
        _add_participant_bounds(model, p, at, x, mine, idle_of, every)
    big = len(gaps) + 1
    if fixed_priority is not None:
        model.maximize(-sum(gaps))
    else:
        model.maximize(big * priority - sum(gaps))
    return model, x, big, fixed_priority


def _add_participant_bounds(
    model: cp_model.CpModel,
    p: Problem,
    at: dict[tuple[int, int], list[Any]],
    placeable: dict[tuple[int, int], Any],
    mine: list[list[Any]],
    idle_of: list[list[Any]],
    every: bool,
) -> None:
    """Each participant's idle time is at least what its own reachable slots force
    (`idle_bound.least_idle`) for the number of meetings it gets: with every meeting
    placed, that number is known; else a literal per step of the bound says "at least
    k meetings". A redundant constraint: CP-SAT's relaxation of the gap variables does
    not find it (forumt-14's bound of 10 took it more than the time limit)."""
    reach = [0] * p.n_parts
    for i, t in at:
        reach[i] |= 1 << t
    total = 0
    for i in range(p.n_parts):
        if not idle_of[i]:
            continue
        least = least_idle(p, reach[i])
        idle = sum(idle_of[i])
        if every:
            n = sum(1 for m in p.by_part[i] if any((m, t) in placeable for t in bits(reach[i])))
            if n < len(least) and 0 < least[n] < INFINITE:
                model.add(idle >= least[n])
                total += least[n]
            continue
        count = sum(mine[i])
        for k in range(2, len(least)):
            if least[k - 1] < least[k] < INFINITE:
                at_least = model.new_bool_var("")
                model.add(count >= k).only_enforce_if(at_least)
                model.add(count <= k - 1).only_enforce_if(at_least.negated())
                model.add(idle >= least[k]).only_enforce_if(at_least)
    if total:  # summed, so that the objective's bound has it at once (not only the LP)
        model.add(sum(g for gaps in idle_of for g in gaps) >= total)
