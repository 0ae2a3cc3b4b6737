"""Kempe-chain moves: exchange two slots along a chain of meetings.

Take a meeting m in slot a and another slot b. The meetings of m's participants in b
must go to a, the meetings of their participants in a to b, and so on: the chain is
the connected set of meetings in a or b linked by shared participants (each
participant has at most one meeting in each slot, so it is a path or a cycle). Swapping
the chain's slots keeps every participant in one meeting per slot and every count
under its cap; it is a move only if each meeting may take its new slot and the tables
suffice. The moves of the main local search are chains of length two at most; longer
ones reach the schedules with no idle time that tight events (every participant busy
in nearly every slot) have, where short moves stall.

`anneal` runs simulated annealing over such swaps (sideways swaps are always taken),
keeping the best schedule seen. A swap's idle change is worked out from its
participants' busy masks before it is made (their slots a and b exchange), so a
rejected swap costs no changes to undo (about 2.5 times the swaps per second of
applying and undoing each). The chain, its tables and its idle change are found in
one pass, and where every meeting has two participants (the forum instances) the
chain is a path or a cycle, walked from the meeting both ways: only its two ends
change their idle time. The same swaps, in the same order from the same seed, as
building the chain first: twice the swaps per CPU second on the forum instances.

Where the portfolio anneals for long on a small event (`wants_compiled`), both runs
load the same loop compiled (`kempe_kernel`, loaded by `kempe_compiled`;
a test replays one stream of random draws through both and gets the same swaps): about
23 times the swaps per CPU second on tic-14crafc (6.8 million against 0.29 million).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from types import ModuleType

from services.scheduling.solver.core import MAX_TABULATED, Problem, State

MAX_CHAIN = 64  # longer chains are not tried (their cost grows with their length)
# Time limits below this anneal interpreted: importing numba and loading the compiled
# loop (`kempe_compiled`) takes about a second of CPU.
COMPILED_MIN_SECONDS = 4.0
# Swaps tried by `anneal` in this process, interpreted or compiled (for the benchmark).
swaps_tried = [0]


def movable_slots(state: State) -> list[int]:
    """Per meeting, the slots a swap may move it to: allowed to it, all its participants
    available; none if it is fixed."""
    p = state.p
    return [0 if p.fixed_slot[m] >= 0 else p.common_avail(m) for m in range(p.n_meetings)]


def chain(state: State, m: int, b: int, may: list[int]) -> list[int] | None:
    """The meetings to swap between m's slot and slot b, or None if they cannot
    (`may`: `movable_slots`)."""
    parts = state.p.parts
    at = state.at
    slot_of = state.slot_of
    a = slot_of[m]
    S = state.p.n_slots
    out = [m]
    seen = {m}
    k = 0
    while k < len(out):
        c = out[k]
        k += 1
        other = b if slot_of[c] == a else a
        if not may[c] >> other & 1:
            return None
        for j in parts[c]:
            d = at[j * S + other]
            if d >= 0 and d not in seen:
                seen.add(d)
                out.append(d)
                if len(out) > MAX_CHAIN:
                    return None
    return out


def anneal(
    state: State,
    deadline: float,
    seed: int = 0,
    enough: Callable[[int], bool] | None = None,
    start: float | None = None,
    t0: float = 0.6,
    t1: float = 0.05,
    floor: int = 0,
    cooling_tries: int | None = None,
    rng: random.Random | None = None,
) -> int:
    """Simulated annealing over Kempe-chain swaps until `deadline`, or until
    `enough(best idle)` says so (checked now and then): a swap adding d idle slots is
    taken with probability exp(-d / temperature), the temperature falling geometrically
    from t0 at `start` (default now) to t1 at `deadline` — so that a run cut short by
    `enough` can be resumed by another call with the same `start`; the best schedule
    seen is kept; it stops at `floor` idle slots (a proven lower bound). With
    `cooling_tries` the temperature falls from t0 to t1 over that many tried swaps
    instead (or by the deadline, if that comes first), and the run ends there (one
    attempt of `anneal_restarts`). `rng` replaces the generator seeded with `seed` (a
    test's replayed draws; it then runs interpreted). Returns the idle time gained."""
    p = state.p
    replayed = rng is not None
    rng = rng or random.Random(seed)
    movable = [m for m in range(p.n_meetings) if state.slot_of[m] >= 0 and p.fixed_slot[m] < 0]
    may = movable_slots(state)
    if not movable or p.n_slots < 2:
        return 0
    pairs = all_pairs(p.parts)
    free = unrestricted(state, may)
    start = time.monotonic() if start is None else start
    compiled = None if replayed else compiled_loop(p)
    if compiled is not None:
        gained, tried = compiled.anneal(
            state, deadline, seed, enough, start, t0, t1, floor, cooling_tries, may, movable, free
        )
        swaps_tried[0] += int(tried)
        return int(gained)
    span = max(1e-3, deadline - start)
    idle = best = state.idle()
    first = best
    best_slots = state.slot_of[:]
    temp = t0
    tries = 0
    while best > floor:
        tries += 1
        if tries % 256 == 0:
            now = time.monotonic()
            if now > deadline or (enough is not None and enough(best)):
                break
            elapsed = max(0.0, now - start) / span
            if cooling_tries is None:
                temp = t0 * (t1 / t0) ** elapsed
            elif tries >= cooling_tries:
                break
            else:  # cooled by the deadline at the latest
                temp = t0 * (t1 / t0) ** max(elapsed, tries / cooling_tries)
        delta = _move(state, rng, movable, may, temp, pairs, free)
        idle += delta
        if idle < best:
            best = idle
            best_slots = state.slot_of[:]
    swaps_tried[0] += tries
    if idle > best:
        state.move_to(best_slots)
    return first - best


def compiled_applies(p: Problem) -> bool:
    """Whether the compiled loop (`kempe_compiled`) can run this problem's annealing:
    meetings of two, busy masks in an int64, sessions short enough for one table."""
    return (
        p.n_slots <= 63
        and max(p.session_len, default=0) <= MAX_TABULATED
        and all(len(ps) == 2 for ps in p.parts)
    )


def wants_compiled(problem: Problem, seconds: float) -> bool:
    """Whether a portfolio run of `seconds` where the exact model fits (the portfolio
    anneals) should load the compiled loop: long enough, and no fairness bound."""
    return (
        seconds >= COMPILED_MIN_SECONDS
        and problem.max_idle_spread is None
        and compiled_applies(problem)
    )


def compiled_loop(problem: Problem) -> ModuleType | None:
    """`kempe_compiled` if its loop is loaded and fits this problem. Only a caller that
    means to use it imports that module (`second_run.run`, `portfolio._two_annealers`):
    others never import numpy or numba through here."""
    module = sys.modules.get("services.scheduling.solver.kempe_compiled")
    if module is None or not module.ready() or not compiled_applies(problem):
        return None
    return module


def anneal_restarts(
    state: State,
    deadline: float,
    seed: int,
    fresh: Callable[[int], State | None],
    enough: Callable[[int], bool] | None = None,
    floor: int = 0,
    cooling_tries: int = 150_000,
) -> State:
    """Annealing attempts of `cooling_tries` swaps each (one cooling from t0 to t1),
    the first from `state`, each next from a new schedule `fresh(seed')` (another
    heuristic run; None: no more), until `deadline`, `enough(best idle)`, or `floor`.
    Returns the best state seen. On tic-14crafc (optimum 0) a run stuck at 1 idle slot
    mostly stays there however long it cools; new starts get out more often: of 10 s
    single-process runs under a load of 1-7, 23 of 52 reached 0 in attempts (1.7-4 s
    each) from new schedules, 6 of 30 with one cooling."""
    best = state
    current = State.of_slots(state.p, state.slot_of)
    attempt = 0
    while True:
        anneal(current, deadline, seed + attempt, enough, floor=floor, cooling_tries=cooling_tries)
        if current.score() > best.score():
            best = current
        best_idle = best.idle()
        if best_idle <= floor or time.monotonic() >= deadline:
            break
        if enough is not None and enough(best_idle):
            break
        attempt += 1
        start = fresh(seed + 1009 * attempt)
        if start is None or time.monotonic() >= deadline:
            break
        current = State.of_slots(start.p, start.slot_of)
    return best


def _move(
    state: State,
    rng: random.Random,
    movable: list[int],
    may: list[int],
    temp: float,
    pairs: bool | None = None,
    free: bool = False,
) -> int:
    """One random Kempe-chain swap; the idle time it adds (0 if none was made).

    The chain (`chain`), the tables it needs and its idle change are worked out in one
    pass: a participant of a chain meeting with no meeting in the other slot is one
    whose slots a and b exchange (the only ones whose idle time changes; one with
    meetings in both keeps its busy mask), met once, from its meeting in the chain.
    Where every meeting has two participants (`pairs`; worked out if None) the chain is
    a path or a cycle, walked from m both ways without a set of meetings seen; only
    its two ends change their idle time. `free` (every placed meeting may take every
    slot: no windows, no one unavailable, none fixed) spares the walk looking each
    meeting's slots up (a tenth of its time). The same swaps in the same order, from the
    same seed, as building the chain and then going over it for the idle change, at
    1.5-2 times the swaps per second."""
    p = state.p
    slot_of = state.slot_of
    m = movable[int(rng.random() * len(movable))]
    a = slot_of[m]
    b = int(rng.random() * p.n_slots)
    if b == a or a < 0:
        return 0
    if pairs is None:
        pairs = all_pairs(p.parts)
    ab = a ^ b
    both = (1 << a) | (1 << b)
    at = state.at
    busy = state.busy
    parts = p.parts
    onsite = p.onsite
    s = p.n_slots
    tab, sh, w = p.idle_at[a], p.shift[a], p.window[a]
    two = p.slot_session[a] != p.slot_session[b]
    tab_b, sh_b, w_b = p.idle_at[b], p.shift[b], p.window[b]
    out = [m]
    n = 1
    shift = 0  # onsite meetings moving from b to a, less those from a to b
    before = after = 0
    if pairs:
        grow = out.append
        if not may[m] >> b & 1:
            return 0
        if onsite[m]:
            shift = -1
        for j in parts[m]:
            here = a
            while True:
                there = here ^ ab
                d = at[j * s + there]
                if d < 0:  # an end of the path: j's slots a and b exchange
                    x = busy[j]
                    y = x ^ both
                    before += tab[(x >> sh) & w]
                    after += tab[(y >> sh) & w]
                    if two:
                        before += tab_b[(x >> sh_b) & w_b]
                        after += tab_b[(y >> sh_b) & w_b]
                    break
                if d == m:  # a cycle: nobody's slots change, the other way is the same
                    break
                if not free and not may[d] >> here & 1:
                    return 0
                if onsite[d]:
                    shift += 1 if there == b else -1
                grow(d)
                n += 1
                if n > MAX_CHAIN:
                    return 0
                k0, k1 = parts[d]
                j = k1 if k0 == j else k0
                here = there
            if d == m:
                break
    else:
        seen = {m}
        grow, mark = out.append, seen.add
        for c in out:  # (the chain grows as it is read)
            here = slot_of[c]
            there = here ^ ab
            if not may[c] >> there & 1:
                return 0
            if onsite[c]:
                shift += 1 if here == b else -1
            for j in parts[c]:
                d = at[j * s + there]
                if d < 0:  # j's slots a and b exchange
                    x = busy[j]
                    y = x ^ both
                    before += tab[(x >> sh) & w]
                    after += tab[(y >> sh) & w]
                    if two:
                        before += tab_b[(x >> sh_b) & w_b]
                        after += tab_b[(y >> sh_b) & w_b]
                elif d not in seen:
                    mark(d)
                    grow(d)
                    n += 1
                    if n > MAX_CHAIN:
                        return 0
    if state.onsite_used[a] + shift > p.tables or state.onsite_used[b] - shift > p.tables:
        return 0
    if after > before and rng.random() >= math.exp((before - after) / temp):
        return 0
    state.swap_slots(out, a, b)
    return after - before


def unrestricted(state: State, may: list[int]) -> bool:
    """Whether every placed meeting may take every slot (`may`: `movable_slots`), so
    that a chain never meets one that cannot move."""
    every = state.p.all_slots
    return all(may[m] == every for m, t in enumerate(state.slot_of) if t >= 0)


def all_pairs(parts: list[tuple[int, ...]]) -> bool:
    """Whether every meeting has exactly two participants (then chains are paths or
    cycles)."""
    return all(len(ps) == 2 for ps in parts)
