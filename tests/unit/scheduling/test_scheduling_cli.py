"""python -m services.scheduling.solve: a round trip through a subprocess, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scheduling_cases import small_doc

from services.scheduling.solver.check import check
from services.scheduling.solver.model import parse_instance, parse_schedule

ROOT = Path(__file__).resolve().parents[3]


def _solve(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.scheduling.solve", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_round_trip_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(small_doc()))
    done = _solve(str(path), "--time-limit", "2")
    assert done.returncode == 0, done.stderr
    schedule = parse_schedule(json.loads(done.stdout))
    report = check(parse_instance(small_doc()), schedule)
    assert report.valid and (report.priority, report.idle) == (6, 0)


def test_round_trip_from_stdin_and_the_baseline() -> None:
    done = _solve("-", "--greedy", "--compact", stdin=json.dumps(small_doc()))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    report = check(parse_instance(small_doc()), parse_schedule(json.loads(done.stdout)))
    assert report.valid and report.priority == 5


def test_malformed_instances_exit_2_with_a_message(tmp_path: Path) -> None:
    done = _solve("-", stdin="{not json")
    assert done.returncode == 2 and done.stdout == ""
    assert "malformed instance: not valid JSON" in done.stderr
    doc = small_doc()
    doc["meetings"][0]["participants"] = ["a", "zz"]
    done = _solve("-", stdin=json.dumps(doc))
    assert done.returncode == 2
    assert "meetings[0].participants[1]: unknown participant 'zz'" in done.stderr
    done = _solve(str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "cannot read" in done.stderr
