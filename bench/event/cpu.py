"""CPU seconds per part of the platform under test, from /proc (bench.backbone.common's readers).

A process belongs to a part by ancestry: the services' supervisors (var/run/<name>.pid,
so worker processes a service starts count as the service), this platform's
PostgreSQL postmaster and Kafka broker (their pid files in MATCHMAKING_STATE_DIR),
the mail catcher, the stub and the bench process itself. Everything else on the
machine is summed as "other processes" (other helpers' work, shown so a noisy run
can be recognised).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backbone.common import REPO, CpuSampler

RUN_DIR = REPO / "var" / "run"


def _first_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def roots(state_dir: Path, run_dir: Path = RUN_DIR) -> dict[int, str]:
    """pid -> part, for the processes whose descendants make up each part."""
    found: dict[int, str] = {}
    for pidfile in sorted(run_dir.glob("*.pid")):
        if pidfile.name.endswith(".child.pid"):
            continue
        pid = _first_int(pidfile)
        if pid:
            name = pidfile.stem.split("-")[0]
            found[pid] = "mail catcher" if name == "mail" else name
    postmaster = _first_int(state_dir / "postgres" / "data" / "postmaster.pid")
    if postmaster:
        found[postmaster] = "postgresql"
    for pidfile in sorted((state_dir / "kafka").glob("*.pid")):
        pid = _first_int(pidfile)
        if pid:
            found[pid] = "kafka"
    return found


def parents() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    raw = f.read().decode(errors="replace")
                out[int(entry.name)] = int(raw[raw.rindex(")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
    return out


def part_of(pid: int, tops: dict[int, str], ppid: dict[int, int]) -> str | None:
    seen = 0
    while pid > 1 and seen < 64:
        if pid in tops:
            return tops[pid]
        pid = ppid.get(pid, 0)
        seen += 1
    return None


@dataclass
class Window(CpuSampler):
    """CPU seconds per part between `start()` and `stop()`."""

    state_dir: Path
    extra: dict[int, str] = field(default_factory=dict)  # e.g. the stub's pid

    def stop(self) -> dict[str, Any]:
        tops = {**roots(self.state_dir), **self.extra, os.getpid(): "bench client"}
        ppid = parents()
        return self.measure(lambda pid, _: part_of(pid, tops, ppid) or "other processes")
