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

`kempe_search` accepts a chain when the idle time does not grow (sideways moves let it
drift), until the deadline or a long run without gain.
"""

from __future__ import annotations

import random
import time

from services.scheduling.solver.core import State

MAX_CHAIN = 64


def chain(state: State, m: int, b: int) -> list[int] | None:
    """The meetings to swap between m's slot and slot b, or None if they cannot."""
    p = state.p
    a = state.slot_of[m]
    S = p.n_slots
    out = [m]
    seen = {m}
    k = 0
    while k < len(out):
        c = out[k]
        k += 1
        here = state.slot_of[c]
        other = b if here == a else a
        if p.fixed_slot[c] >= 0 or not p.allowed[c] >> other & 1:
            return None
        for j in p.parts[c]:
            if not p.avail[j] >> other & 1:
                return None
            d = state.at[j * S + other]
            if d >= 0 and d not in seen:
                seen.add(d)
                out.append(d)
                if len(out) > MAX_CHAIN:
                    return None
    return out


def kempe_search(state: State, deadline: float, seed: int = 0, stall: int = 20000) -> int:
    """Improve `state`'s idle time by Kempe-chain moves; returns the idle time gained."""
    p = state.p
    rng = random.Random(seed)
    movable = [m for m in range(p.n_meetings) if state.slot_of[m] >= 0 and p.fixed_slot[m] < 0]
    if not movable or p.n_slots < 2:
        return 0
    T = p.tables
    gained = 0
    since = 0
    tries = 0
    while since < stall:
        tries += 1
        if tries % 64 == 0 and time.monotonic() > deadline:
            break
        since += 1
        m = movable[int(rng.random() * len(movable))]
        a = state.slot_of[m]
        if a < 0:
            continue
        b = int(rng.random() * p.n_slots)
        if b == a:
            continue
        moving = chain(state, m, b)
        if moving is None:
            continue
        shift = 0  # onsite meetings moving from b to a, less those from a to b
        for c in moving:
            if p.onsite[c]:
                shift += 1 if state.slot_of[c] == b else -1
        if state.onsite_used[a] + shift > T or state.onsite_used[b] - shift > T:
            continue
        people = {j for c in moving for j in p.parts[c]}
        before = sum(state.idle_of(j) for j in people)
        targets = [(c, b if state.slot_of[c] == a else a) for c in moving]
        _apply(state, targets)
        after = sum(state.idle_of(j) for j in people)
        if after > before:
            _apply(state, [(c, b if t == a else a) for c, t in targets])
            continue
        if after < before:
            gained += before - after
            since = 0
    return gained


def _apply(state: State, targets: list[tuple[int, int]]) -> None:
    for c, _ in targets:
        state.remove(c)
    for c, t in targets:
        state.add(c, t)
