"""The benchmarks' CPU accounting from /proc: whose CPU seconds go under which name."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.backbone.common import CpuWindow
from bench.event.cpu import Window

# Busy for 0.3 s of CPU, says so, then idle long enough to be read.
BUSY_CHILD = (
    "import time\nend = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\nprint('done', flush=True)\ntime.sleep(30)"
)


def _busy_child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdout=subprocess.PIPE)


def _busy_part_over(child: subprocess.Popen[bytes]) -> None:
    assert child.stdout is not None and child.stdout.readline() == b"done\n"


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_window_names_this_process_and_a_labelled_child() -> None:
    window = CpuWindow()
    window.start()
    child = _busy_child()
    try:
        window.labels = {child.pid: "child"}
        _spin(0.2)
        _busy_part_over(child)
        used = window.stop()
    finally:
        child.kill()
        child.wait()
    assert used["cpu_s"]["bench process"] >= 0.15
    assert 0.2 <= used["cpu_s"]["child"] <= 0.6
    assert used["cores"] >= 1 and 0 < used["machine_busy_pct"] <= 100


def test_an_event_window_names_parts_by_ancestry(tmp_path: Path) -> None:
    window = Window(tmp_path)  # no platform state here: only the client and extras
    window.start()
    child = _busy_child()
    try:
        window.extra = {child.pid: "stub"}
        _spin(0.2)
        _busy_part_over(child)
        used = window.stop()
    finally:
        child.kill()
        child.wait()
    assert used["cpu_s"]["bench client"] >= 0.15
    assert 0.2 <= used["cpu_s"]["stub"] <= 0.6
