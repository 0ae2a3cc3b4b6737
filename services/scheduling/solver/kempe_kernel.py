"""The annealing's inner loop over typed arrays, for numba to compile (`kempe_compiled`).

Plain Python over numpy arrays, no numba import here: `kempe_compiled` compiles
`anneal_tries` with `numba.njit(cache=True)`, and a test runs it uncompiled too. It is
`kempe.anneal`'s loop and `kempe._move`'s path walk (meetings of two participants), the
same swaps in the same order from the same random draws (a test replays one stream of
draws through both): the state is arrays (slot per meeting, meeting per participant and
slot, busy bitmask per participant as int64, onsite meetings per slot), the idle time of
a session's busy bits is read from one table (`idle_bits` of every mask up to the
longest session), and the random numbers come from numba's generator, or from `draws`
where it is not empty (the test).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

MAX_CHAIN = 64  # as `kempe.MAX_CHAIN`
CHECK_EVERY = 256  # tries between looks at the clock (as `kempe.anneal`)

# `counters`' fields (an int64 array, read and written by `anneal_tries`)
TRIES, IDLE, BEST, DRAWN = 0, 1, 2, 3
# `anneal_tries`' answers
AT_CHECK, COOLED, AT_FLOOR = 0, 1, 2


def anneal_tries(
    slot_of: NDArray[np.int32],
    at: NDArray[np.int32],
    busy: NDArray[np.int64],
    onsite_used: NDArray[np.int32],
    best_slots: NDArray[np.int32],
    parts: NDArray[np.int32],
    onsite: NDArray[np.bool_],
    may: NDArray[np.int64],
    movable: NDArray[np.int32],
    idle_tab: NDArray[np.int8],
    shift: NDArray[np.int64],
    window: NDArray[np.int64],
    session: NDArray[np.int32],
    tables: int,
    free: bool,
    counters: NDArray[np.int64],
    temperature: NDArray[np.float64],
    stop: int,
    cooling_tries: int,
    t0: float,
    t1: float,
    elapsed: float,
    floor: int,
    seed: int,
    draws: NDArray[np.float64],
) -> int:
    """Tried swaps (`kempe._move`) until the try count reaches `stop` (a multiple of
    CHECK_EVERY: the caller looks at the clock, then calls again with a later `stop`),
    `cooling_tries` (0: none; the attempt is over) or the idle time reaches `floor`.
    At every CHECK_EVERY-th try the temperature becomes t0 * (t1 / t0) ** max(elapsed,
    tries / cooling_tries) (`elapsed`: the share of the time gone, from the caller).
    `parts[m]`: meeting m's two participants; `may[m]`: the slots it may take; `free`:
    every placed meeting may take every slot. `seed` >= 0 seeds the generator first.
    Keeps `best_slots` the best schedule seen; AT_CHECK, COOLED or AT_FLOOR."""
    n_slots = shift.shape[0]
    if seed >= 0:
        np.random.seed(seed)
    n_movable = movable.shape[0]
    n_draws = draws.shape[0]
    chain = np.empty(MAX_CHAIN + 1, np.int32)
    tries = counters[TRIES]
    idle = counters[IDLE]
    best = counters[BEST]
    drawn = counters[DRAWN]
    temp = temperature[0]
    answer = AT_FLOOR
    while best > floor:
        tries += 1
        if tries % CHECK_EVERY == 0:
            if tries >= stop:
                tries -= 1  # the caller looks at the clock first
                answer = AT_CHECK
                break
            if cooling_tries > 0:
                if tries >= cooling_tries:
                    answer = COOLED
                    break
                temp = t0 * (t1 / t0) ** max(elapsed, tries / cooling_tries)
            else:
                temp = t0 * (t1 / t0) ** elapsed
        # ---- one swap (`kempe._move`, the path walk)
        if n_draws > 0:
            u = draws[drawn]
            drawn += 1
        else:
            u = np.random.random()
        m = movable[int(u * n_movable)]
        a = slot_of[m]
        if n_draws > 0:
            u = draws[drawn]
            drawn += 1
        else:
            u = np.random.random()
        b = int(u * n_slots)
        if b == a or a < 0:
            continue
        if not (may[m] >> b) & 1:
            continue
        ab = a ^ b
        both = (np.int64(1) << a) | (np.int64(1) << b)
        sh, w = shift[a], window[a]
        sh_b, w_b = shift[b], window[b]
        two = session[a] != session[b]
        chain[0] = m
        n = 1
        moved = 0  # onsite meetings moving from b to a, less those from a to b
        if onsite[m]:
            moved = -1
        before = 0
        after = 0
        ok = True
        for side in range(2):
            j = parts[m, side]
            here = a
            d = -1
            while True:
                there = here ^ ab
                d = at[j * n_slots + there]
                if d < 0:  # an end of the path: j's slots a and b exchange
                    x = busy[j]
                    y = x ^ both
                    before += idle_tab[(x >> sh) & w]
                    after += idle_tab[(y >> sh) & w]
                    if two:
                        before += idle_tab[(x >> sh_b) & w_b]
                        after += idle_tab[(y >> sh_b) & w_b]
                    break
                if d == m:  # a cycle: the other way is the same
                    break
                if not free and not (may[d] >> here) & 1:
                    ok = False
                    break
                if onsite[d]:
                    moved += 1 if there == b else -1
                chain[n] = d
                n += 1
                if n > MAX_CHAIN:
                    ok = False
                    break
                k0 = parts[d, 0]
                j = parts[d, 1] if k0 == j else k0
                here = there
            if not ok or d == m:
                break
        if not ok:
            continue
        if onsite_used[a] + moved > tables or onsite_used[b] - moved > tables:
            continue
        if after > before:
            if n_draws > 0:
                u = draws[drawn]
                drawn += 1
            else:
                u = np.random.random()
            if u >= math.exp((before - after) / temp):
                continue
        # ---- the swap (`State.swap_slots`): out of the old slots first
        for k in range(n):
            c = chain[k]
            t = slot_of[c]
            bit = np.int64(1) << t
            for side in range(2):
                i = parts[c, side]
                busy[i] &= ~bit
                at[i * n_slots + t] = -1
            if onsite[c]:
                onsite_used[t] -= 1
        for k in range(n):
            c = chain[k]
            t = b if slot_of[c] == a else a
            slot_of[c] = t
            bit = np.int64(1) << t
            for side in range(2):
                i = parts[c, side]
                busy[i] |= bit
                at[i * n_slots + t] = c
            if onsite[c]:
                onsite_used[t] += 1
        idle += after - before
        if idle < best:
            best = idle
            best_slots[:] = slot_of
    counters[TRIES] = tries
    counters[IDLE] = idle
    counters[BEST] = best
    counters[DRAWN] = drawn
    temperature[0] = temp
    return answer
