"""Shared by the steps: settings, small helpers, CPU accounting, the machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import platform
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.backbone")

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
OUT_DIR = REPO / "var" / "bench"
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
ADMIN_DSN = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres:postgres@localhost:5432/postgres"
)
PARTITIONS = 3
COUNTERS = 100  # distinct record keys / projection rows
VALUE_BYTES = 500  # target size of a record's JSON value
WRITE_TXN_EVENTS = 1000  # outbox rows per pre-writing transaction
RUN_DB_TAG = ""  # "bench_<hex>": the prefix of this run's databases, set by run()


# -- small helpers ------------------------------------------------------------


def dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated; nan if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return dict.fromkeys(("count", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"))
    return {
        "count": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, limit: float, interval: float, what: str
) -> float:
    started = time.perf_counter()
    while not await predicate():
        if time.perf_counter() - started > limit:
            raise TimeoutError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.perf_counter() - started


# -- CPU accounting from /proc ------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> dict[int, tuple[str, int]]:
    """pid -> (comm, utime+stime in ticks) of every process we can read."""
    out: dict[int, tuple[str, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _system_cpu() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


@dataclass
class CpuSampler:
    """CPU seconds per process between `start()` and `measure()`, summed under the names
    `name_of(pid, comm)` gives them (a pid reused meanwhile counts from zero)."""

    _procs: dict[int, tuple[str, int]] = field(default_factory=dict, init=False)
    _sys: tuple[int, int] = field(default=(0, 0), init=False)
    _t: float = field(default=0.0, init=False)

    def start(self) -> None:
        self._procs = _proc_cpu()
        self._sys = _system_cpu()
        self._t = time.perf_counter()

    def measure(self, name_of: Callable[[int, str], str]) -> dict[str, Any]:
        wall = time.perf_counter() - self._t
        after = _proc_cpu()
        busy1, total1 = _system_cpu()
        used: dict[str, float] = {}
        for pid, (comm, ticks) in after.items():
            before = self._procs.get(pid)
            delta = ticks - (before[1] if before and before[0] == comm else 0)
            if delta > 0:
                name = name_of(pid, comm)
                used[name] = used.get(name, 0.0) + delta / CLOCK_TICKS
        busy0, total0 = self._sys
        return {
            "wall_s": round(wall, 3),
            "machine_busy_pct": round(
                100 * (busy1 - busy0) / max(total1 - total0, 1), 1
            ),  # of all cores
            "cpu_s": {k: round(v, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])},
        }


@dataclass
class CpuWindow(CpuSampler):
    """CPU seconds used per component between `start()` and `stop()`."""

    labels: dict[int, str] = field(default_factory=dict)  # pid -> name, for our children
    database_tag: str = ""  # postgres backends whose title has it are ours

    def stop(self) -> dict[str, Any]:
        return {**self.measure(self._name), "cores": os.cpu_count() or 1}

    def _name(self, pid: int, comm: str) -> str:
        if pid == os.getpid():
            return "bench process"
        if pid in self.labels:
            return self.labels[pid]
        if comm == "java":
            return "kafka (java)"
        if comm == "postgres":
            title = _cmdline(pid)
            tag = self.database_tag or RUN_DB_TAG
            if tag and tag in title:
                return "postgres (bench dbs)"
            if re.match(r"postgres: postgres \S+ ", title):
                return "postgres (other dbs)"
            return "postgres (shared procs)"
        return f"other: {comm}"


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()

    def version(pkg: str) -> str:
        try:
            return importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "packages": {
            p: version(p)
            for p in ("aiokafka", "asyncpg", "httpx", "fastapi", "uvicorn", "opentelemetry-sdk")
        },
        "kafka_bootstrap": BOOTSTRAP,
    }
