"""`shared.worker_process`: a child that lives and dies with its service, whose metrics
the service exports and whose end the service sees."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from shared.worker_process import WorkerProcess, exported_by
from tests.unit import worker_process_child

CHILD = "tests.unit.worker_process_child"
NAMES = {"test_worker_things"}
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by a parent that is gone too) counts as dead.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


async def test_the_childs_metrics_are_exported_once_started_and_a_stop_stops_it(
    tmp_path: Path,
) -> None:
    mark = tmp_path / "mark"
    worker = WorkerProcess(CHILD, {"count": 3, "mark": str(mark)}, NAMES)
    with exported_by(worker, [worker_process_child.THINGS]):
        running = asyncio.create_task(worker.run())
        page = ""
        for _ in range(100):  # until the child has started and counted
            await asyncio.sleep(0.1)
            await worker.refresh()
            page = generate_latest(REGISTRY).decode()
            if "test_worker_things_total 3.0" in page:
                break
        assert "test_worker_things_total 3.0" in page
        assert worker.started
        assert page.count("# TYPE test_worker_things_total counter") == 1  # not this process's too
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert mark.read_text() == "stopped"  # SIGTERM let its work clean up
    # This process's own copy is exported again, the child's counts gone with it.
    assert "test_worker_things_total 0.0" in generate_latest(REGISTRY).decode()


async def test_a_child_that_ends_ends_the_services_task(tmp_path: Path) -> None:
    worker = WorkerProcess(CHILD, {"count": 0, "fail": True, "mark": str(tmp_path / "m")}, NAMES)
    with pytest.raises(RuntimeError, match="ended with code 1"):
        await asyncio.wait_for(worker.run(), 30)
    assert not worker.started  # it never said so: the service was never ready


def _service_with_child(tmp_path: Path, child: str) -> tuple[subprocess.Popen[str], int]:
    """A process standing in for the service, started with `child` (its code, which prints
    the child's pid and keeps running); the pid of the child it started."""
    service = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(child)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MARK": str(tmp_path / "mark")},
    )
    assert service.stdout is not None
    line = service.stdout.readline()
    assert line.strip().isdigit(), f"the stand-in printed {line!r}"
    return service, int(line)


def test_a_killed_service_takes_its_child_with_it(tmp_path: Path) -> None:
    service, child = _service_with_child(
        tmp_path,
        f"""
        import asyncio, os
        from shared.worker_process import WorkerProcess

        async def main():
            worker = WorkerProcess({CHILD!r}, {{"count": 1, "mark": os.environ["MARK"]}}, set())
            running = asyncio.ensure_future(worker.run())
            while worker._proc is None:
                await asyncio.sleep(0.01)
            print(worker._proc.pid, flush=True)
            await running

        asyncio.run(main())
        """,
    )
    assert _alive(child)
    service.send_signal(signal.SIGKILL)
    service.wait()
    assert _gone_within(child, 5), "the child outlived its killed service"


def test_the_death_signal_alone_ends_a_child_whose_pipe_stays_open(tmp_path: Path) -> None:
    """`die_with_parent` without the pipe's end: the stand-in's child keeps its stdin from
    elsewhere, so only the kernel's death signal can end it."""
    service, child = _service_with_child(
        tmp_path,
        """
        import os, subprocess, sys, time
        code = (
            "import sys, time; from shared.worker_process import die_with_parent;"
            " die_with_parent(int(sys.argv[1])); time.sleep(60)"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(os.getpid())], stdin=subprocess.DEVNULL
        )
        time.sleep(1.0)  # until it has asked for the signal
        print(child.pid, flush=True)
        time.sleep(60)
        """,
    )
    assert _alive(child)
    service.send_signal(signal.SIGKILL)
    service.wait()
    assert _gone_within(child, 5), "no death signal: the child outlived its killed parent"
