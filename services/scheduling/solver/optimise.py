"""Full re-optimisation: keep the fixed meetings, place as much priority as possible,
then leave participants as little idle time as possible.

1. Construction. Meetings by priority, and within a priority "participant-major"
   (all the meetings of the tightest participant, then of the next, ...), each into
   the slot adding least idle time (`State.best_slot`). Tables are a per-slot
   capacity; numbers are given out at the end.
2. Repair, for the meetings that found no slot:
   - ejection chains: put the meeting in a slot, lift out what blocks it there (its
     participants' meetings in that slot, or an onsite meeting if no table is free)
     and re-insert those elsewhere, recursively to a small depth; all or nothing;
   - augmenting chains for caps: where a participant is at its `max_meetings`, take
     out one of its meetings and use the capacity that frees at that meeting's other
     participant for another unplaced meeting, and so on, kept only when the summed
     priority rises (the greedy "first come" choice under caps is often not the best).
3. Local search on idle time: move a meeting to another slot, swapping with the
   meetings its participants have there (they go to its old slot); accepted when the
   idle time does not grow, so sideways moves let the search drift across plateaus.
   Most moves are random (meeting, slot) pairs; one in `TARGETED_EVERY` moves an end
   of an idle participant's block into one of its gaps. Idle time is updated from
   the changed participants' busy masks (a table lookup per session), so a move
   costs a few microseconds. Unplaced meetings are retried now and then.
4. Ruin and recreate, once the local search stalls and while time is left: lift out
   the meetings of an idle participant (and some partners) in a session, or those
   around an unplaced meeting, put them back in random order within each priority,
   run the local search again; keep the result if it is no worse, else go back.

The greedy baseline is computed first; if it were better (it practically never is),
it is returned instead, so the result is never worse than the baseline.

Deterministic for a given seed: the same moves in the same order; the time limit
only decides how many are made. The search also stops by itself (nothing left to
gain: no idle time left and the summed priority at the upper bound of `bound`; or
a long run without a gain), often well before the time limit. With `max_moves` the
result is reproducible exactly, on any machine.
"""

from __future__ import annotations

import time

from services.scheduling.solver.bound import priority_bound
from services.scheduling.solver.construct import Stats
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.greedy import greedy_state
from services.scheduling.solver.model import Instance, Schedule
from services.scheduling.solver.ruin import RuinRecreate

__all__ = ["Optimiser", "Stats", "optimise", "optimise_state"]


class Optimiser(RuinRecreate):
    """The heuristic: construction, repair, local search, ruin and recreate."""

    def run(self, deadline: float) -> None:
        """Construction, repair, local search, then ruin-and-recreate rounds until the
        deadline, the move budget, or a long run of rounds without a gain."""
        st = self.state
        self.started = time.monotonic()
        self.bound = self.stats.priority_bound = priority_bound(self.p, deadline=deadline)
        self.construct(deadline)
        self.stats.best_at = time.monotonic() - self.started
        self.stats.constructed_priority = st.priority()
        self.stats.constructed_idle = st.idle()
        self.repair(deadline)
        self.idle = st.idle()
        n = max(1, len(self.movable))
        if not self.search(deadline, 30 * n + 20000):
            return
        best = self.snapshot()
        best_score = (st.priority(), -self.idle)
        self.tracking = False
        without_gain = 0
        while without_gain < 300 + n // 10:
            if time.monotonic() > deadline:
                break
            if self.moves_left is not None and self.moves_left <= 0:
                break
            if best_score[1] == 0 and (best_score[0] >= self.bound or not self.unplaced()):
                break  # nothing left to gain
            self.stats.perturbations += 1
            self.perturb()
            finished = self.search(deadline, 3 * n + 2000)
            score = (st.priority(), -self.idle)
            if score > best_score:
                without_gain = 0
                self.stats.improvements += 1
                self.stats.best_at = time.monotonic() - self.started
            else:
                without_gain += 1
            if score >= best_score:
                best, best_score = self.snapshot(), score
            else:
                self.restore(best)
            if not finished:
                break


def optimise_state(
    problem: Problem,
    time_limit: float = 10.0,
    seed: int = 0,
    max_moves: int | None = None,
    stats: Stats | None = None,
    started: float | None = None,
) -> State:
    """The heuristic's best state, within `time_limit` seconds of `started` (default:
    now), rendering included: every phase watches one deadline, and the time kept back
    for the last pass and the rendering is a few times what the greedy baseline took
    (the same kind of work, once over the meetings)."""
    started = time.monotonic() if started is None else started
    t0 = time.monotonic()
    base = greedy_state(problem)
    greedy_s = time.monotonic() - t0
    deadline = started + time_limit - 3 * greedy_s - 0.01
    if time.monotonic() >= deadline:  # no time for more than the baseline
        if stats is not None:
            stats.greedy_seconds = greedy_s
            stats.used_greedy = True
            stats.seconds = time.monotonic() - started
        return base
    opt = Optimiser(problem, seed, max_moves)
    opt.stats.greedy_seconds = greedy_s
    if time.monotonic() < deadline:
        opt.run(deadline)
        opt.stats.best_at += opt.started - started
    st = opt.state
    # anything that fits now without moving others goes in (the earliest free slot,
    # cheaper, once the deadline has passed)
    late = time.monotonic() > deadline
    for m in range(problem.n_meetings):
        if st.slot_of[m] < 0 and problem.fixed_slot[m] < 0:
            free = st.free_slots(m)
            if free:
                st.add(m, (free & -free).bit_length() - 1 if late else st.best_slot(m, free))
                opt.stats.best_at = time.monotonic() - started
    result: State = st
    if base.score() > st.score():
        result = base
        opt.stats.used_greedy = True
        opt.stats.best_at = time.monotonic() - started
    opt.stats.seconds = time.monotonic() - started
    if stats is not None:
        for name in Stats.__slots__:
            setattr(stats, name, getattr(opt.stats, name))
    return result


def optimise(
    instance: Instance,
    time_limit: float = 10.0,
    seed: int = 0,
    max_moves: int | None = None,
    stats: Stats | None = None,
) -> Schedule:
    """The heuristic's schedule within `time_limit` seconds (see the module docstring);
    `solve` in `portfolio` adds the exact model where it fits."""
    started = time.monotonic()
    problem = Problem(instance)
    return optimise_state(problem, time_limit, seed, max_moves, stats, started).schedule()
