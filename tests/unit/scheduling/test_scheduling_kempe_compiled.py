"""The compiled annealing loop (`kempe_kernel.anneal_tries`, compiled by numba in
`kempe_compiled`) makes the same swaps as the interpreted one (`kempe.anneal` and its
`_move`), in the same order, from the same random draws: both replay one stream, and
must end in the same schedule with the same idle time gained, which the checker
accepts. Only runs that ask for it (long ones, where the exact model fits) import numba."""

from __future__ import annotations

import gzip
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduling_cases import Doc
from test_scheduling_windows import windowed

from services.scheduling.solver import kempe, kempe_compiled, kempe_kernel
from services.scheduling.solver.check import check
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.greedy import greedy_state
from services.scheduling.solver.model import parse_instance, parse_instance_json
from services.scheduling.solver.second_run import Request, run

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[3]


class Replay(random.Random):
    """Stands in for `random.Random` in `kempe.anneal`: the same draws as the kernel's."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(0)
        self.draws = draws
        self.k = 0

    def random(self) -> float:
        x = self.draws[self.k]
        self.k += 1
        return x


def both_ways(
    problem: Problem, start: list[int], tries: int, seed: int, uncompiled: bool = False
) -> tuple[State, State, int, int]:
    """The interpreted and the compiled (or, with `uncompiled`, the kernel run as plain
    Python) annealing over `tries` swaps from `start`, one stream of draws."""
    rng = random.Random(seed)
    # at most three a try; the cooling ends at a multiple of CHECK_EVERY tries
    draws = [rng.random() for _ in range(3 * (tries + kempe_kernel.CHECK_EVERY))]
    far = time.monotonic() + 1e6  # the temperature follows the tries alone
    interpreted = State.of_slots(problem, start)
    gained = kempe.anneal(interpreted, far, 0, cooling_tries=tries, rng=Replay(draws))
    compiled = State.of_slots(problem, start)
    may = kempe.movable_slots(compiled)
    movable = [m for m in range(problem.n_meetings) if start[m] >= 0 and problem.fixed_slot[m] < 0]
    if not movable or problem.n_slots < 2:
        return interpreted, compiled, gained, 0
    free = kempe.unrestricted(compiled, may)
    kernel = kempe_kernel.anneal_tries if uncompiled else None
    gained_compiled, _ = kempe_compiled.anneal(
        compiled,
        far,
        0,
        None,
        time.monotonic(),
        0.6,
        0.05,
        0,
        tries,
        may,
        movable,
        free,
        draws=np.array(draws, np.float64),
        kernel=kernel,
    )
    return interpreted, compiled, gained, gained_compiled


def test_numba_loads_the_compiled_loop() -> None:
    assert kempe_compiled.wait(120), kempe_compiled.failed


def test_the_compiled_loop_follows_the_interpreted_one_on_a_forum() -> None:
    """tic-12 (two participants a meeting, tight): 60,000 swaps from the greedy
    schedule, compiled and interpreted, end in the same schedule; so does the kernel
    run uncompiled over 3,000."""
    instance = parse_instance_json(gzip.decompress((DATA / "tic-12.original.json.gz").read_bytes()))
    problem = Problem(instance)
    assert kempe.compiled_applies(problem)
    assert kempe_compiled.wait(120), kempe_compiled.failed
    start = greedy_state(problem).slot_of
    for tries, uncompiled in ((60_000, False), (3_000, True)):
        interpreted, compiled, gained, gained_compiled = both_ways(
            problem, start, tries, 11, uncompiled
        )
        assert gained > 0
        assert gained_compiled == gained
        assert compiled.slot_of == interpreted.slot_of
        assert compiled.idle() == interpreted.idle()
        assert check(instance, compiled.schedule()).valid


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windowed(), st.integers(0, 2**16), st.integers(300, 3000))
def test_the_compiled_loop_makes_the_same_swaps_with_windows_and_tables(
    doc: Doc, seed: int, tries: int
) -> None:
    """Random instances (windows, people away, fixed meetings, few tables; meetings of
    two): the same schedule both ways, windows and tables kept, checker satisfied."""
    for m in doc["meetings"]:
        m["participants"] = m["participants"][:2]  # the compiled loop's case
    doc["max_idle_spread"] = None
    instance = parse_instance(doc)
    problem = Problem(instance)
    if not kempe.compiled_applies(problem):
        return
    assert kempe_compiled.wait(120), kempe_compiled.failed
    start = greedy_state(problem).slot_of
    interpreted, compiled, gained, gained_compiled = both_ways(problem, start, tries, seed)
    assert gained_compiled == gained
    assert compiled.slot_of == interpreted.slot_of
    assert check(instance, compiled.schedule()).valid


def test_only_long_runs_where_the_exact_model_fits_ask_for_numba() -> None:
    instance = parse_instance_json(gzip.decompress((DATA / "tic-12.original.json.gz").read_bytes()))
    problem = Problem(instance)
    assert kempe.wants_compiled(problem, 10.0)
    assert not kempe.wants_compiled(problem, 2.0)
    three = parse_instance(
        {
            "tables": 1,
            "sessions": [{"id": "s", "slots": [{"id": "t1"}, {"id": "t2"}]}],
            "participants": [{"id": x} for x in "abc"],
            "meetings": [
                {
                    "id": "m",
                    "participants": ["a", "b", "c"],
                    "mode": "onsite",
                    "priority": 1,
                    "fixed": None,
                }
            ],
        }
    )
    assert not kempe.compiled_applies(Problem(three))


def test_a_short_run_never_imports_numba() -> None:
    """`--time-limit 2` on a forum instance: numba (and the module that loads it) stays
    out of the process (the incremental placement does not anneal at all)."""
    program = (
        "import gzip, sys\n"
        "from services.scheduling.solver import solve\n"
        "from services.scheduling.solver.model import parse_instance_json\n"
        f"raw = open({str(DATA / 'tic-12.original.json.gz')!r}, 'rb').read()\n"
        "result = solve(parse_instance_json(gzip.decompress(raw)), time_limit=2.0)\n"
        "assert result.idle >= 0\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
        "assert 'services.scheduling.solver.kempe_compiled' not in sys.modules\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr


def test_the_second_run_anneals_compiled_when_asked() -> None:
    """forumt-14 (floor 10, which the heuristic alone does not reach in 1 s): the second
    run loads the compiled loop after its heuristic and anneals with it; the checker
    accepts its schedule."""
    instance = parse_instance_json(
        gzip.decompress((DATA / "forumt-14.original.json.gz").read_bytes())
    )
    now = time.monotonic()
    answer = run(Request(instance, 3, now + 1.0, now + 8.0, compiled=True))
    assert answer.compiled and answer.swaps > 0
    assert answer.floor == 10 and answer.idle >= 10
    problem = Problem(instance)
    state = State.of_slots(problem, answer.slot_of)
    assert state.idle() == answer.idle
    assert check(instance, state.schedule()).valid
