"""The published B2B forum instances (Bofill et al.) against the best values known.

Part of `bench.scheduling` (`--suite forum`): the 20 instances converted to our format
in `../shared/bench/b2b/`, each solved by the portfolio at the time limit, checked by
the independent checker and compared with `best-known.txt`.
"""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import Any

from services.scheduling.solver.check import check
from services.scheduling.solver.model import parse_instance_json
from services.scheduling.solver.portfolio import Result
from services.scheduling.solver.portfolio import solve as portfolio


def summary(result: Result) -> dict[str, Any]:
    """What the portfolio says of its schedule (for the JSON and the table)."""
    return {
        "proven_optimal": result.proven_optimal,
        "priority_ub": result.priority_bound,
        "idle_lb": result.idle_bound,
        "method": result.method,
        "exact": result.exact_status,
        "fair": result.fair,
    }


def idle_distribution(idle_by_participant: dict[str, int]) -> str:
    """Participants by idle slots, e.g. "0:3412 1:80 2:8" (idle value: how many)."""
    counts: dict[int, int] = {}
    for v in idle_by_participant.values():
        counts[v] = counts.get(v, 0) + 1
    return " ".join(f"{v}:{n}" for v, n in sorted(counts.items()))


FORUM_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench" / "b2b"


def run_forum(
    directory: Path, limit: float, only: list[str] | None = None, repeat: int = 1
) -> tuple[list[dict[str, Any]], bool]:
    """The 20 published forum instances (Bofill et al.) at `limit` seconds each (those
    named in `only`, if given; each `repeat` times, seeds 0, 1, ...), against the best
    values known (`best-known.txt`: meetings placed, meetings, idle)."""
    best_file = directory / "best-known.txt"
    if not best_file.exists():
        print(f"# forum instances: {directory} not found, skipped", flush=True)
        return [], True
    best: dict[str, tuple[int, int]] = {}
    for line in best_file.read_text().splitlines():
        if line.strip():
            name, placed, _, idle = line.split()
            best[name] = (int(placed), int(idle))
    header = (
        f"{'forum instance':<24} {'placed':>9} {'idle':>5} {'best known':>10} {'proven':>7}"
        f" {'bound':>9} {'by':>9} {'time (s)':>8} {'valid':>6}  idle per participant"
    )
    print(header)
    print("-" * len(header), flush=True)
    out: list[dict[str, Any]] = []
    ok = True
    names = sorted(best)
    if only is not None:
        unknown = [n for n in only if f"{n}.original" not in best]
        if unknown:
            raise SystemExit(f"unknown forum instance(s): {', '.join(unknown)}")
        names = [n for n in names if n.removesuffix(".original") in only]
    runs = [(name, seed) for name in names for seed in range(repeat)]
    for name, seed in runs:
        path = directory / f"{name}.json.gz"
        started = time.monotonic()
        instance = parse_instance_json(gzip.decompress(path.read_bytes()))
        result = portfolio(instance, time_limit=limit, seed=seed, started=started)
        seconds = time.monotonic() - started
        report = check(instance, result.schedule)
        b_placed, b_idle = best[name]
        behind = (report.scheduled, -report.idle) < (b_placed, -b_idle)
        ok = ok and report.valid
        mark = "<" if behind else ("=" if (report.scheduled, report.idle) == best[name] else ">")
        print(
            f"{name.removesuffix('.original'):<24}"
            f" {f'{report.scheduled}/{len(instance.meetings)}':>9} {report.idle:>5}"
            f" {f'{b_placed}/{b_idle} {mark}':>10} {'yes' if result.proven_optimal else 'no':>7}"
            f" {f'{result.priority_bound}/{result.idle_bound}':>9} {result.method:>9}"
            f" {seconds:>8.2f} {'yes' if report.valid else 'NO':>6}"
            f"  {idle_distribution(report.idle_by_participant)}"
            + (
                f"  seed {seed}, load {os.getloadavg()[0]:.1f}, cp-sat: {result.exact_status}"
                if repeat > 1 or only
                else ""
            ),
            flush=True,
        )
        out.append(
            {
                "instance": name,
                "seed": seed,
                "load": round(os.getloadavg()[0], 2),
                "meetings": len(instance.meetings),
                "placed": report.scheduled,
                "idle": report.idle,
                "best_known": {"placed": b_placed, "idle": b_idle},
                "behind_best_known": behind,
                "seconds": round(seconds, 2),
                "valid": report.valid,
                "idle_by_participant": report.idle_by_participant,
                **summary(result),
            }
        )
    n_behind = sum(1 for x in out if x["behind_best_known"])
    n_proven = sum(1 for x in out if x["proven_optimal"])
    print(
        f"# {len(out)} forum instances at --time-limit {limit:g}: {n_behind} behind the best"
        f" known, {n_proven} proven optimal. placed: meetings scheduled; best known: placed/"
        "idle, '=' equal, '<' behind, '>' better; bound: no schedule places more meetings,"
        " and none placing that many has less idle; by: whose schedule (heuristic with"
        " annealing, or CP-SAT); idle per participant: idle slots:participants",
        flush=True,
    )
    return out, ok
