"""Kempe swaps priced before they are made, and the portfolio's second annealing run in
a child process: valid schedules, the deadline kept, the first run at the floor stops
the other, no process left behind."""

from __future__ import annotations

import gzip
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduling_cases import Doc, instances

from services.scheduling.solver import kempe, portfolio
from services.scheduling.solver.check import check
from services.scheduling.solver.construct import Undoable
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.greedy import greedy_state
from services.scheduling.solver.idle_bound import all_placed_idle_bound
from services.scheduling.solver.model import Instance, parse_instance, parse_instance_json
from services.scheduling.solver.second_run import Answer, SecondRun

DATA = Path(__file__).parent / "data"


def _forum(name: str) -> Instance:
    return parse_instance_json(gzip.decompress((DATA / f"{name}.original.json.gz").read_bytes()))


def _same(state: State) -> None:
    """`state`'s masks and counts are those its slots imply."""
    fresh = State.of_slots(state.p, state.slot_of)
    assert state.busy == fresh.busy
    assert state.count == fresh.count
    assert state.at == fresh.at
    assert state.onsite_used == fresh.onsite_used
    assert state.table_full == fresh.table_full


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.integers(0, 2**16), st.booleans())
def test_a_swap_adds_the_idle_time_it_was_priced_at(doc: Doc, seed: int, undoable: bool) -> None:
    """Each swap's idle change, worked out from the busy masks before it is made, is
    what making it changes; the state stays consistent and valid (also through the
    logged path of the heuristic's undoable state)."""
    instance = parse_instance(doc)
    problem = Problem(instance)
    base = greedy_state(problem)
    state = Undoable(problem) if undoable else State(problem)
    for m, t in enumerate(base.slot_of):
        if t >= 0:
            state.add(m, t)
    rng = random.Random(seed)
    movable = [m for m in range(problem.n_meetings) if state.slot_of[m] >= 0]
    if not movable or problem.n_slots < 2:
        return
    may = kempe.movable_slots(state)
    idle = state.idle()
    for _ in range(200):
        idle += kempe._move(state, rng, movable, may, temp=rng.choice([0.05, 0.5, 5.0]))
        assert idle == state.idle()
    _same(state)
    assert check(instance, state.schedule()).valid


def test_annealing_attempts_from_new_schedules_keep_the_best() -> None:
    """Attempts of a few swaps each, every next one from a new schedule (another seed
    each time), until the deadline: the best state seen, valid, never worse."""
    problem = Problem(_forum("tic-12"))
    start = State.of_slots(problem, greedy_state(problem).slot_of)
    seeds: list[int] = []

    def fresh(seed: int) -> State | None:
        seeds.append(seed)
        return greedy_state(problem) if len(seeds) < 5 else None

    began = time.monotonic()
    best = kempe.anneal_restarts(start, began + 30, 3, fresh, floor=-1, cooling_tries=2000)
    assert time.monotonic() - began < 20  # the attempts end, not the deadline
    assert len(seeds) == 5 and len(set(seeds)) == 5
    assert best.score() >= start.score()
    _same(best)
    assert check(problem.instance, best.schedule()).valid


@pytest.fixture
def second_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SecondRun]]:
    """The second runs the portfolio starts, to look at their processes afterwards."""
    started: list[SecondRun] = []

    class Recorded(SecondRun):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            started.append(self)

    monkeypatch.setattr(portfolio, "SecondRun", Recorded)
    yield started
    for run in started:
        run.close()


def test_two_annealing_runs_keep_the_deadline_and_leave_no_process(
    second_runs: list[SecondRun],
) -> None:
    """forumt-14 (every meeting placed, floor 10): the two runs' schedule is valid, the
    limit holds, and the child process has ended when `solve` returns."""
    instance = _forum("forumt-14")
    started = time.monotonic()
    result = portfolio.solve(instance, time_limit=3, started=started)
    assert time.monotonic() - started <= 3 + 0.1
    assert check(instance, result.schedule).valid
    assert result.priority == 237 and result.idle >= 10
    assert len(second_runs) == 1
    assert second_runs[0].process.returncode is not None
    if result.idle > 10:  # (at 10 the heuristic may have been optimal by itself)
        assert "second annealing run" in result.exact_status


def test_tic_12_reaches_its_proven_optimum_and_stops_early(second_runs: list[SecondRun]) -> None:
    """Whichever run reaches the floor (0) first ends both, long before the limit."""
    instance = _forum("tic-12")
    result = portfolio.solve(instance, time_limit=30)
    assert check(instance, result.schedule).valid
    assert result.proven_optimal and result.idle == 0
    assert result.seconds < 20
    assert all(run.process.returncode is not None for run in second_runs)


def test_the_second_run_stops_itself_at_the_floor_and_answers() -> None:
    instance = _forum("tic-12")
    now = time.monotonic()
    run = SecondRun(instance, 7, now + 1, now + 40)
    try:
        answer = None
        while answer is None and time.monotonic() < now + 40:
            answer = run.poll()
            time.sleep(0.05)
        assert answer is not None and answer.idle == 0 and answer.floor in (None, 0)
        assert time.monotonic() < now + 30  # by itself, not at its deadline
        problem = Problem(instance)
        assert check(instance, State.of_slots(problem, answer.slot_of).schedule()).valid
    finally:
        run.close()
    assert run.process.returncode is not None


def test_asked_to_stop_the_second_run_answers_at_once() -> None:
    instance = _forum("forumt-14")
    now = time.monotonic()
    run = SecondRun(instance, 7, now + 1, now + 60)
    time.sleep(1.5)  # into its annealing (forumt-14 does not reach its floor this soon)
    answer = run.collect(time.monotonic() + 5)
    assert time.monotonic() < now + 5
    assert answer is not None and answer.priority == 237
    assert run.process.returncode is not None


class _AtTheFloor:
    """A second run that has already reached the floor (it says)."""

    def __init__(self, slot_of: list[int], floor: int) -> None:
        self.answer = Answer(slot_of, floor, 0, floor)
        self.failed: str | None = None
        self.closed = False
        self.compiled = False  # (no numba loaded for it)

    def poll(self) -> Answer:
        return self.answer

    def collect(self, deadline: float) -> Answer:
        return self.answer

    def close(self) -> None:
        self.closed = True


def test_the_second_run_at_the_floor_stops_the_first() -> None:
    problem = Problem(_forum("forumt-14"))
    state = State.of_slots(problem, greedy_state(problem).slot_of)
    floor = all_placed_idle_bound(problem, sum(problem.prio))
    assert floor == 10 and state.idle() > floor
    other = _AtTheFloor(state.slot_of[:], floor)
    begun = time.monotonic()
    best, status = portfolio._two_annealers(
        problem, state, begun + 30, 0, floor, cast("SecondRun", other)
    )
    assert time.monotonic() - begun < 2  # not the 30 s it had
    assert other.closed
    assert best.score() >= state.score()
    assert "second annealing run" in status


def test_the_first_run_at_the_floor_ends_the_second() -> None:
    instance = _forum("forumt-14")
    problem = Problem(instance)
    state = State.of_slots(problem, greedy_state(problem).slot_of)
    now = time.monotonic()
    run = SecondRun(instance, 7, now + 1, now + 60)
    try:
        # the floor is where this schedule already is: the first run is done at once
        portfolio._two_annealers(problem, state, now + 60, 0, state.idle(), run)
        assert time.monotonic() - now < 2
        assert run.process.returncode is not None
    finally:
        run.close()
