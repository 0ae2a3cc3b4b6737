"""A service's background work in a child process that lives and dies with the service.

Work that shares the service's event loop delays its consumers: every round trip of a
consumer's transaction waits for whatever step of the background work holds the loop.
`WorkerProcess` runs such work in a process of its own instead (the OS shares the cores
between the two), and keeps it part of the service:

- it dies with the service: the child asks the kernel for SIGKILL when the service's
  process goes (`PR_SET_PDEATHSIG`, Linux), and also ends when the pipe from the
  service reaches its end (any other way the service goes), so a killed service never
  leaves a sender behind that a restarted one would race;
- its failure is the service's: the parent's background task ends when the child does,
  which `/ready` reports (`ServiceRuntime.readiness`); until the child says its work has
  started (`ready`, called by the work), the service is not ready either, so nothing
  piles up for a sender that is still importing;
- its metrics are the service's: before `/metrics` renders, the parent asks the child
  for its families (`refresh`) and exports them as its own (`collect`).

The pipe carries the child's payload and the names of the metrics it exports once
(pickled: what the parent's own code made), then metric requests one byte each,
answered on the child's own copy of its standard output (fd 1 itself goes to stderr in
the child, so nothing printed mixes with the answers) as a 4-byte length and the pickled
families; the first thing on that copy is one byte, `_STARTED`, when the work has
started. An answer that does not come within `ANSWER_SECONDS` leaves the pipe out of
step: the child's metrics are not exported from then on (logged), the rest goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any, BinaryIO

import uvloop
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
_METRICS_REQUEST = b"m"
_STARTED = b"s"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_GRACE_SECONDS = 10.0
ANSWER_SECONDS = 5.0


class WorkerProcess:
    """The parent's side: start `python -m <module>`, hand it `payload`, supervise it."""

    def __init__(self, module: str, payload: object, metric_names: Collection[str]) -> None:
        self._module = module
        self._payload = payload
        self._metric_names = frozenset(metric_names)
        self._proc: asyncio.subprocess.Process | None = None
        self._families: list[Metric] = []
        self._asking = asyncio.Lock()
        self._out_of_step = False
        self.started = False  # the child's work has started (it said so)

    async def run(self) -> None:
        """Start the child and wait for it; raise when it ends (its work is not done any
        more). Cancelled: stop it (SIGTERM, then SIGKILL after a grace period)."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self._module,
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdin is not None
        handed = pickle.dumps((self._payload, self._metric_names))
        self._proc.stdin.write(_LENGTH.pack(len(handed)) + handed)
        assert self._proc.stdout is not None
        try:
            if await self._proc.stdout.read(1) == _STARTED:  # b"": it ended first
                self.started = True
                log.info("%s: started as process %d", self._module, self._proc.pid)
            code = await self._proc.wait()
        except asyncio.CancelledError:
            await self._stop()
            raise
        raise RuntimeError(f"{self._module} (process {self._proc.pid}) ended with code {code}")

    async def _stop(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def refresh(self) -> None:
        """Ask the child for its metrics' current values (kept for `collect`)."""
        proc = self._proc
        if proc is None or proc.returncode is not None or self._out_of_step or not self.started:
            return
        assert proc.stdin is not None and proc.stdout is not None
        stdout = proc.stdout
        async with self._asking:
            try:
                proc.stdin.write(_METRICS_REQUEST)
                async with asyncio.timeout(ANSWER_SECONDS):
                    size = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))[0]
                    self._families = pickle.loads(await stdout.readexactly(size))
            except (TimeoutError, asyncio.CancelledError, asyncio.IncompleteReadError):
                self._out_of_step = True
                self._families = []
                log.error(
                    "%s: no answer to a metrics request; its metrics are left out", self._module
                )
                raise

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol: the families `refresh` last got."""
        yield from self._families

    def describe(self) -> list[Metric]:
        return []  # nothing to check against other collectors' names at registration


@contextlib.contextmanager
def exported_by(worker: WorkerProcess, own: Collection[Any]) -> Iterator[None]:
    """While inside: the child's metrics exported in this process's registry instead of
    `own` (this process's copies of the same metrics, which only the child changes)."""
    for metric in own:
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(metric)
    REGISTRY.register(worker)
    try:
        yield
    finally:
        REGISTRY.unregister(worker)
        for metric in own:
            REGISTRY.register(metric)


# -- the child's side --------------------------------------------------------------------


def die_with_parent(parent: int) -> None:
    """SIGKILL for this process when its parent goes; gone already: exit now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


# The child's work: `work(payload, ready)`, which calls `ready()` once it has started.
Work = Callable[[Any, Callable[[], None]], Awaitable[None]]


def child_main(work: Work, configure: Callable[[Any], None] | None = None) -> None:
    """Run `work(payload, ready)` with `payload` as the parent handed it, answering metric
    requests, until the work ends, SIGTERM, or the parent's end of the pipe closes."""
    die_with_parent(int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to act on
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    size = _LENGTH.unpack(_read_exactly(0, _LENGTH.size))[0]
    payload, names = pickle.loads(_read_exactly(0, size))
    if configure is not None:
        configure(payload)
    uvloop.run(_serve(work, payload, answers, names))


def _read_exactly(fd: int, size: int) -> bytes:
    """`size` bytes of `fd`, unbuffered: what follows stays in the pipe for the loop."""
    got = b""
    while len(got) < size:
        chunk = os.read(fd, size - len(got))
        if not chunk:
            raise EOFError("the parent closed the pipe")
        got += chunk
    return got


async def _serve(
    work: Work,
    payload: Any,
    answers: BinaryIO,
    names: frozenset[str],
) -> None:
    loop = asyncio.get_running_loop()

    def started() -> None:
        answers.write(_STARTED)

    working = asyncio.ensure_future(work(payload, started))
    loop.add_signal_handler(signal.SIGTERM, working.cancel)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    listening = asyncio.ensure_future(_answer(reader, answers, names))
    done, _ = await asyncio.wait({working, listening}, return_when=asyncio.FIRST_COMPLETED)
    for task in (working, listening):
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await working  # its own cleanup (connections closed, sessions quit)
    if working in done and not working.cancelled() and working.exception() is not None:
        raise working.exception()  # type: ignore[misc]


async def _answer(requests: asyncio.StreamReader, answers: BinaryIO, names: frozenset[str]) -> None:
    """Each request byte: the named metric families. Returns when the parent is gone."""
    while await requests.read(1):
        families = pickle.dumps([f for f in REGISTRY.collect() if f.name in names])
        answers.write(_LENGTH.pack(len(families)) + families)
