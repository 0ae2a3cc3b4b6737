"""The annealing's inner loop compiled by numba, where a run is long enough to pay for it.

On the forum instances the annealing's chance of reaching the optimum is about one in a
million tried swaps (`kempe.anneal_restarts`), and interpreted it tries some 250,000 a
CPU second. `kempe_kernel.anneal_tries` is the same loop over typed arrays; compiled
(`numba.njit(cache=True)`) it tries many times more. Importing numba and loading the
compiled code from its cache costs about a second of CPU, so it is done only where the
portfolio anneals for long (`kempe.wants_compiled`: the exact model fits, the time
limit is at least `kempe.COMPILED_MIN_SECONDS`), and after the heuristic runs: loaded
in a thread beside other Python work it took four times as long (5 s at a load of 5)
and held the interpreter for up to 0.13 s at a time, which the heuristic cannot afford
(at a load of 13 it then left meetings out). The second run (`second_run.run`) waits
for it before its annealing (at most half its time left); the first run
(`portfolio._two_annealers`) loads it in a thread while its interpreted annealing goes
on, its deadline kept with a margin for those pauses. Once it is loaded, `kempe.anneal`
uses it from the next attempt. The incremental placement, short limits, runs where
CP-SAT runs and large events never import numba. A missing
or failing numba only means the interpreted loop throughout.
`python -m services.scheduling.solver.kempe_compiled` (run by `make venv`) compiles
it into numba's cache beforehand.

The compiled loop covers meetings of two participants (chains are paths or cycles),
at most 63 slots (a busy mask in an int64) and sessions of at most 16 slots (one idle
table); elsewhere `kempe.anneal` interprets (`kempe.compiled_applies`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from services.scheduling.solver import kempe_kernel
from services.scheduling.solver.core import State, idle_bits
from services.scheduling.solver.kempe_kernel import AT_CHECK, BEST, IDLE, TRIES

# Tries between looks at the clock and at `enough` (a few milliseconds compiled).
CHUNK = 16 * kempe_kernel.CHECK_EVERY

_lock = threading.Lock()
_loader: list[threading.Thread] = []
_ready = threading.Event()
_kernel: list[Callable[..., int]] = []
failed: list[str] = []  # why it could not be loaded, if it could not


def start_loading() -> None:
    """Import numba and load (or compile) the loop in the background, once."""
    with _lock:
        if not _loader:
            thread = threading.Thread(target=_load, name="numba-load", daemon=True)
            _loader.append(thread)
            thread.start()


def ready() -> bool:
    return _ready.is_set()


def wait(timeout: float | None = None) -> bool:
    """Load it (if not asked already) and wait for it: whether it is ready."""
    start_loading()
    _loader[0].join(timeout)
    return ready()


def _load() -> None:
    try:
        import numba

        try:
            kernel = numba.njit(cache=True, nogil=True)(kempe_kernel.anneal_tries)
            _warm(kernel)
        except RuntimeError:  # no cache directory to be written here: compiled afresh
            kernel = numba.njit(nogil=True)(kempe_kernel.anneal_tries)
            _warm(kernel)
    except Exception as e:  # no numba, or it cannot compile here: interpreted it is
        failed.append(f"{type(e).__name__}: {e}")
        return
    _kernel.append(kernel)
    _ready.set()


def _warm(kernel: Callable[..., int]) -> None:
    """Compile (or load from the cache) for the argument types `anneal` passes: a call
    that makes no swap (at its floor already)."""
    one = np.zeros(1, np.int32)
    kernel(
        one,
        np.full(2, -1, np.int32),
        np.zeros(1, np.int64),
        np.zeros(1, np.int32),
        one.copy(),
        np.zeros((1, 2), np.int32),
        np.zeros(1, np.bool_),
        np.zeros(1, np.int64),
        one.copy(),
        np.zeros(1, np.int8),
        np.zeros(1, np.int64),
        np.ones(1, np.int64),
        np.zeros(1, np.int32),
        0,
        True,
        np.zeros(4, np.int64),
        np.ones(1, np.float64),
        CHUNK,
        0,
        0.6,
        0.05,
        0.0,
        0,
        -1,
        np.zeros(0, np.float64),
    )


class Arrays:
    """A state's annealing view as typed arrays (`kempe_kernel.anneal_tries`)."""

    def __init__(self, state: State, may: list[int], movable: list[int], free: bool):
        p = state.p
        s = p.n_slots
        self.slot_of = np.array(state.slot_of, np.int32)
        self.at = np.array(state.at, np.int32)
        self.busy = np.array(state.busy, np.int64)
        self.onsite_used = np.array(state.onsite_used, np.int32)
        self.best_slots = self.slot_of.copy()
        self.parts = np.array(p.parts, np.int32).reshape(len(p.parts), 2)
        self.onsite = np.array(p.onsite, np.bool_)
        self.may = np.array(may, np.int64)
        self.movable = np.array(movable, np.int32)
        longest = max(p.session_len, default=1)
        self.idle_tab = np.array([idle_bits(x) for x in range(1 << longest)], np.int8)
        self.shift = np.array(p.shift[:s], np.int64)
        self.window = np.array(p.window[:s], np.int64)
        self.session = np.array(p.slot_session[:s], np.int32)
        self.tables = p.tables
        self.free = free

    def run(
        self,
        kernel: Callable[..., int],
        counters: Any,
        temperature: Any,
        stop: int,
        cooling_tries: int,
        t0: float,
        t1: float,
        elapsed: float,
        floor: int,
        seed: int,
        draws: Any,
    ) -> int:
        return kernel(
            self.slot_of,
            self.at,
            self.busy,
            self.onsite_used,
            self.best_slots,
            self.parts,
            self.onsite,
            self.may,
            self.movable,
            self.idle_tab,
            self.shift,
            self.window,
            self.session,
            self.tables,
            self.free,
            counters,
            temperature,
            stop,
            cooling_tries,
            t0,
            t1,
            elapsed,
            floor,
            seed,
            draws,
        )


def anneal(
    state: State,
    deadline: float,
    seed: int,
    enough: Callable[[int], bool] | None,
    start: float,
    t0: float,
    t1: float,
    floor: int,
    cooling_tries: int | None,
    may: list[int],
    movable: list[int],
    free: bool,
    draws: Any = None,
    kernel: Callable[..., int] | None = None,
) -> tuple[int, int]:
    """`kempe.anneal` (same arguments, same meaning) with the compiled loop, or with
    `kernel` (the test's: uncompiled); `draws`: the random numbers to use (the test's).
    Leaves `state` at the best schedule seen; the idle time gained and the swaps tried."""
    run = kernel if kernel is not None else _kernel[0]
    arrays = Arrays(state, may, movable, free)
    idle = state.idle()
    counters = np.array([0, idle, idle, 0], np.int64)
    temperature = np.array([t0], np.float64)
    span = max(1e-3, deadline - start)
    no_draws = np.zeros(0, np.float64)
    stop = CHUNK
    first_seed = seed & 0xFFFFFFFF
    while True:
        answer = arrays.run(
            run,
            counters,
            temperature,
            stop,
            cooling_tries or 0,
            t0,
            t1,
            max(0.0, time.monotonic() - start) / span,
            floor,
            first_seed,
            no_draws if draws is None else draws,
        )
        first_seed = -1
        if answer != AT_CHECK:
            break
        now = time.monotonic()
        if now > deadline or (enough is not None and enough(int(counters[BEST]))):
            break
        stop += CHUNK
    best = int(counters[BEST])
    # as `kempe.anneal`: the schedule it ended at, if no worse than the best seen
    end = arrays.slot_of if int(counters[IDLE]) == best else arrays.best_slots
    state.move_to(end.tolist())
    return idle - best, int(counters[TRIES])


def main() -> int:
    """Compile the loop into numba's cache (or check that it loads from there)."""
    began = time.monotonic()
    if not wait():
        print(f"numba: not loaded ({failed[0] if failed else 'unknown'})")
        return 1
    print(f"numba: the annealing loop is ready ({time.monotonic() - began:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
