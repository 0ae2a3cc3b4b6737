"""scripts/supervise.py: a child that exits is started again; SIGTERM stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate: object, limit: float = 20.0) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_restarts_a_killed_child_and_stops_on_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    log = (tmp_path / "supervise.log").open("w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "scripts.supervise", "--name", "t", "--child-pidfile",
         str(pidfile), "--", sys.executable, "-c", "import time; time.sleep(600)"],
        cwd=ROOT, stderr=log, stdout=log,
    )  # fmt: skip
    try:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        first = int(pidfile.read_text())
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: pidfile.exists() and int(pidfile.read_text() or 0) not in (0, first))
        second = int(pidfile.read_text())
        assert _alive(second) and not _alive(first)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
        assert not _alive(second)
        text = (tmp_path / "supervise.log").read_text()
        assert "exited (signal SIGKILL)" in text and "restarting in 1s" in text
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
