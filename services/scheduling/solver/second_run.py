"""A second heuristic-and-annealing run, in a process of its own (the second core).

Where the exact model has nothing to add (every meeting placed and the idle floor of
`idle_bound` known: what is left is finding a schedule at the floor, and the
annealing finds those, CP-SAT did not within the limits here), the portfolio spends
the second core on a second run with another seed instead: its own heuristic run,
then annealing attempts from new heuristic schedules (`restarts`, as the first
run does in that case, with other seeds). It starts as soon as
the portfolio knows the exact model would fit, so that it gets nearly the whole
budget, and it is told to stop (and to send its best schedule) as soon as the first
run is done; it stops by itself at its deadline or at the floor.

Only `portfolio.solve` starts it (with `second_process=True`, and only where the exact
model fits: small events); the incremental placement (`place`) never does. It is a
plain child process (`subprocess`: a fresh interpreter running `main`, not a copy of the
caller, whose threads (the scheduling service has some) could hold locks; no
multiprocessing helper processes). The request and
the answer are length-prefixed pickles over its standard input and output (between
two processes of this code, nothing else); any byte or the end of its input after the
request means "stop now". The caller kills it if it has not answered by the deadline.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.scheduling.solver import kempe
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.idle_bound import all_placed_idle_bound
from services.scheduling.solver.model import Instance
from services.scheduling.solver.optimise import Stats, optimise_state

# Each annealing attempt cools over this many tried swaps (1.2 CPU s on the forum
# instances interpreted, 0.05 s compiled; 100,000 reached tic-14crafc's 0 in none of
# 25 attempts, 300,000 in 7 of 25, 1,000,000 in 7 of 16: fewer per swap), then the
# next starts from a new heuristic schedule made in FRESH_SECONDS (see
# `kempe.anneal_restarts`), or in FRESH_SECONDS_COMPILED where the compiled loop runs
# (`kempe_compiled`): the attempts are then short, and on tic-14crafc (one process, 20
# attempts each) 0.03 s starts reached 0 about 4 times a CPU second at 300,000 swaps
# an attempt, 0.1 s starts 1.8 times, 0.3 s 1.4 times (3 times at 1,000,000).
COOLING_TRIES = 300_000
FRESH_SECONDS = 0.3
FRESH_SECONDS_COMPILED = 0.03
# The least time its heuristic gets (past the first run's share, if it started late).
MIN_HEURISTIC_SECONDS = 0.4
# Kept back from the caller's deadline for the answer to be sent and read.
ANSWER_MARGIN = 0.15

_HEADER = struct.Struct(">Q")
_ROOT = Path(__file__).resolve().parents[3]  # the directory holding `services`
# The child's program: `main` below (not `-m`: the package imports this module first).
_CHILD = f"import sys; from {__name__} import main; sys.exit(main())"


@dataclass(slots=True)
class Request:
    instance: Instance
    seed: int
    heuristic_deadline: float  # time.monotonic(): the heuristic's share ends here
    deadline: float  # ... and the whole run here (the clock is the machine's)
    compiled: bool = False  # anneal with the compiled loop (`kempe_compiled`)


@dataclass(slots=True)
class Answer:
    slot_of: list[int]  # slot per meeting, -1: not placed
    idle: int
    priority: int
    floor: int | None  # the idle floor it stopped at, if it knew one
    swaps: int = 0  # annealing swaps tried
    compiled: bool = False  # it loaded the compiled loop (`kempe_compiled`) to anneal


class SecondRun:
    """The caller's side: start it, look for its answer, stop it."""

    def __init__(
        self,
        instance: Instance,
        seed: int,
        heuristic_deadline: float,
        deadline: float,
        compiled: bool = False,
    ):
        self.answer: Answer | None = None
        self.failed: str | None = None
        self.compiled = compiled  # it loads numba: a larger process to end
        self._sent_stop = False
        request = pickle.dumps(
            Request(instance, seed, heuristic_deadline, deadline - ANSWER_MARGIN, compiled),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        # larger requests than a pipe holds would block until the child reads them
        self._writer = threading.Thread(
            target=self._send, args=(_HEADER.pack(len(request)) + request,), daemon=True
        )
        self._writer.start()

    def _send(self, data: bytes) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (OSError, ValueError):  # it is gone, or `stop` closed the pipe
            pass  # `poll` or `collect` will say so

    def poll(self) -> Answer | None:
        """Its answer, if it has sent one (without waiting)."""
        if self.answer is None and self.failed is None:
            self._read(0.0)
        return self.answer

    def collect(self, deadline: float) -> Answer | None:
        """Tell it to stop and wait for its best schedule until `deadline` at most; then
        end it (killed if it has not finished)."""
        if self.answer is None and self.failed is None:
            self.stop()
            self._read(max(0.0, deadline - time.monotonic()))
        self.close()
        return self.answer

    def stop(self) -> None:
        """Ask it to stop and answer (it checks every few milliseconds)."""
        if self._sent_stop:
            return
        self._sent_stop = True
        if self._writer.is_alive():  # it has not even read its request: nothing to wait for
            self.close()
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b"s")
            self.process.stdin.close()  # the end of its input says the same
        except OSError:
            pass

    def close(self) -> None:
        """End it now, whatever it is doing; reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def _read(self, timeout: float) -> None:
        out = self.process.stdout
        if out is None or out.closed:  # ended by `close`
            return
        fd = out.fileno()
        until = time.monotonic() + timeout
        if not select.select([fd], [], [], timeout)[0]:
            return
        data = _read_message(fd, until)
        if data is None:
            self.failed = "the second run ended without an answer"
            return
        try:
            answer = pickle.loads(data)
        except Exception as e:  # a broken answer is no answer
            self.failed = f"unreadable answer: {e}"
            return
        self.answer = answer if isinstance(answer, Answer) else None


def _read_message(fd: int, until: float) -> bytes | None:
    """A length-prefixed message from `fd` (None at its end or past `until`)."""
    head = _read_exactly(fd, _HEADER.size, until)
    if head is None:
        return None
    return _read_exactly(fd, _HEADER.unpack(head)[0], until)


def _read_exactly(fd: int, n: int, until: float) -> bytes | None:
    parts: list[bytes] = []
    while n > 0:
        wait = None if until == float("inf") else max(0.0, until - time.monotonic())
        if not select.select([fd], [], [], wait)[0]:
            return None
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


# ------------------------------------------------------------------------- the child


def run(request: Request, stop_asked: Callable[[], bool] | None = None) -> Answer:
    """The second run itself: a heuristic run, then annealing with restarts down to the
    idle floor if it places all the priority it might. `stop_asked()`, if given, is
    checked now and then."""
    problem = Problem(request.instance)
    stats = Stats()
    # its own start can take the heuristic's whole share on a busy machine (1 s at a
    # load of 4, the first run working beside it); with no time at all the heuristic
    # does not place every meeting, and then this run does not anneal
    now = time.monotonic()
    limit = max(
        request.heuristic_deadline - now, min(MIN_HEURISTIC_SECONDS, request.deadline - now)
    )
    first = optimise_state(problem, limit, request.seed, stats=stats)
    state = State.of_slots(problem, first.slot_of)  # (annealing needs a plain state)
    priority_bound = max(stats.priority_bound or sum(problem.prio), state.priority())
    floor = None
    if state.priority() >= priority_bound and state.idle() > 0:
        floor = all_placed_idle_bound(problem, priority_bound, request.deadline)
        if floor is not None and state.idle() > floor:

            def enough(_: int) -> bool:
                return stop_asked is not None and stop_asked()

            compiled = False
            if request.compiled:  # (the caller checked `kempe.wants_compiled`)
                from services.scheduling.solver import kempe_compiled

                # here, not during the heuristic: loading it beside other work takes
                # four times as long and holds the interpreter for up to 0.13 s at a
                # time. Not waiting for more than half the time left (a busy machine):
                # then the attempts start interpreted, and use it once it is there.
                until = time.monotonic() + 0.5 * (request.deadline - time.monotonic())
                while not kempe_compiled.wait(0.02) and time.monotonic() < until:
                    if enough(0):  # asked to stop: answer now
                        break
                compiled = True
            tried = kempe.swaps_tried[0]
            state = restarts(problem, state, request.deadline, request.seed, floor, enough)
            return Answer(
                state.slot_of[:],
                state.idle(),
                state.priority(),
                floor,
                kempe.swaps_tried[0] - tried,
                compiled,
            )
    return Answer(state.slot_of[:], state.idle(), state.priority(), floor)


def restarts(
    problem: Problem,
    state: State,
    deadline: float,
    seed: int,
    floor: int,
    enough: Callable[[int], bool] | None,
) -> State:
    """Annealing attempts from `state`, then from new heuristic schedules (other seeds),
    until `deadline`, `enough` or `floor` (`kempe.anneal_restarts`); the best state."""

    def fresh(other_seed: int) -> State | None:
        seconds = FRESH_SECONDS if kempe.compiled_loop(problem) is None else FRESH_SECONDS_COMPILED
        left = deadline - time.monotonic()
        if left < 2 * FRESH_SECONDS_COMPILED:
            return None
        # near the deadline a quicker start, so that the last attempt runs to it
        return optimise_state(problem, min(seconds, left / 3), other_seed)

    return kempe.anneal_restarts(
        state, deadline, seed, fresh, enough, floor=floor, cooling_tries=COOLING_TRIES
    )


def main() -> int:
    head = _read_exactly(0, _HEADER.size, float("inf"))
    if head is None:
        return 1
    data = _read_exactly(0, _HEADER.unpack(head)[0], float("inf"))
    if data is None:
        return 1
    request = pickle.loads(data)  # from the parent process, this same code
    if not isinstance(request, Request):
        return 1

    def stop_asked() -> bool:
        return bool(select.select([0], [], [], 0)[0])  # a byte, or the end of input

    answer = run(request, stop_asked)
    body = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        sys.stdout.buffer.write(_HEADER.pack(len(body)) + body)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        pass  # nobody is waiting any more
    return 0
