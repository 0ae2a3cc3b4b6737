"""Scheduling benchmark: the published forum instances, then generated events.

    .venv/bin/python -m bench.scheduling                  # both suites, ~7 min
    .venv/bin/python -m bench.scheduling --suite forum    # the 20 forums, <= 10 s each
    .venv/bin/python -m bench.scheduling --quick --suite generated   # small, ~20 s

Forums (`bench.scheduling_forum`): the 20 B2B instances of Bofill et al. converted in
`../shared/bench/b2b/`, solved by the portfolio (`services.scheduling.solver.portfolio`)
at `--forum-limit` (10 s), against the best values known: meetings placed, idle,
proven or not, the bound, time, idle per participant.

Generated events: seeded instances of several sizes (a 61-meeting cluster event up
to BIO International scale, one with time windows and a fairness bound); the
portfolio ("optimise") against the greedy baseline and CP-SAT alone (the solver's
exact model without a hint, given the same limit, its build included, only where
its model is of a reasonable size). Every schedule is verified by the independent
checker (`services.scheduling.solver.check`); all figures go to
`var/bench/scheduling.json`. Each instance also gets an upper bound on the summed
priority (CP-SAT on the problem without slots and tables; CP-SAT's own bound where
that is lower): a result marked '=' places provably the most priority, and with 0
idle it is optimal. On BIO International size the command line is also run with
`--time-limit 0.5` and `2` (the limit check). The machine may be shared: compare
methods within one run, and read the load averages printed at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.scheduling_forum import FORUM_DIR, idle_distribution, run_forum, summary
from bench.scheduling_instances import QUICK, SPECS, Spec, generate
from services.scheduling.solver.check import Report, check
from services.scheduling.solver.core import Problem, State
from services.scheduling.solver.exact import solve_exact
from services.scheduling.solver.greedy import greedy
from services.scheduling.solver.model import (
    Instance,
    Schedule,
    parse_instance,
)
from services.scheduling.solver.portfolio import solve as portfolio

OUT = Path("var/bench/scheduling.json")


# --------------------------------------------------------------------------- instances


def cpsat(instance: Instance, time_limit: float, seed: int = 0) -> tuple[Schedule, dict[str, Any]]:
    """CP-SAT alone: the solver's exact model (`services.scheduling.solver.exact`), with
    no hint, given the same time limit as the portfolio (building the model included)."""
    started = time.monotonic()
    problem = Problem(instance)
    found = solve_exact(problem, started + time_limit, seed=seed)
    info: dict[str, Any] = {
        "status": found.status,
        # what the bound proves: priority <= ub; and idle >= idle_lb if priority == ub
        "priority_ub": found.priority_bound,
        "idle_lb": found.idle_bound,
        "build_s": round(found.build_seconds, 3),
        "variables": found.variables,
        "solved": found.slot_of is not None,
        "best_at": round(time.monotonic() - started, 3),
    }
    if found.slot_of is None:
        return Schedule(), info
    return State.of_slots(problem, found.slot_of).schedule(), info


def priority_bound(instance: Instance, time_limit: float = 30.0) -> int | None:
    """An upper bound on the summed priority: the problem without slots and tables
    (caps, common availability, at most one meeting per available slot of each
    participant, fixed meetings in), solved by CP-SAT; None if it is not solved."""
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    n_slots = len(instance.slots)
    avail = {q.id: None if q.available is None else q.available for q in instance.participants}
    x = {m.id: model.new_bool_var(m.id) for m in instance.meetings}
    mine: dict[str, list[Any]] = {}
    for m in instance.meetings:
        sets = [a for pid in m.participants if (a := avail[pid]) is not None]
        if m.allowed_slots is not None:
            sets.append(m.allowed_slots)
        if m.fixed is not None:
            model.add(x[m.id] == 1)
        elif sets and not frozenset.intersection(*sets):
            model.add(x[m.id] == 0)
        for pid in m.participants:
            mine.setdefault(pid, []).append(x[m.id])
    for q in instance.participants:
        vs = mine.get(q.id, [])
        room = n_slots if q.available is None else len(q.available)
        if q.max_meetings is not None:
            room = min(room, q.max_meetings)
        if len(vs) > room:
            model.add(sum(vs) <= room)
    model.maximize(sum(m.priority * x[m.id] for m in instance.meetings))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 2
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return int(solver.best_objective_bound + 1e-6)


# --------------------------------------------------------------------------- running


@dataclass
class Row:
    instance: str
    method: str
    meetings: int
    placed: int
    priority: int
    priority_total: int
    idle: int
    seconds: float
    best_at: float  # seconds until the final result was first reached
    valid: bool
    violations: list[str]
    extra: dict[str, Any]
    idle_by_participant: dict[str, int] = field(default_factory=dict)


def run(
    spec: Spec,
    instance: Instance,
    method: str,
    solve: Callable[[], tuple[Schedule, dict[str, Any]]],
) -> Row:
    started = time.monotonic()
    schedule, extra = solve()
    seconds = time.monotonic() - started
    if not extra.get("solved", True):  # CP-SAT without a solution: nothing to check
        return Row(
            spec.name,
            method,
            len(instance.meetings),
            0,
            0,
            sum(m.priority for m in instance.meetings),
            0,
            round(seconds, 2),
            round(seconds, 2),
            False,
            ["no solution"],
            extra,
        )
    report: Report = check(instance, schedule)
    violations = report.violations
    if method == "greedy":  # the first-come baseline knows no fairness bound
        violations = [v for v in violations if v.kind != "idle-spread-exceeded"]
    return Row(
        instance=spec.name,
        method=method,
        meetings=len(instance.meetings),
        placed=report.scheduled,
        priority=report.priority,
        priority_total=sum(m.priority for m in instance.meetings),
        idle=report.idle,
        seconds=round(seconds, 2),
        best_at=round(float(extra.get("best_at", seconds)), 2),
        valid=not violations,
        violations=[v.message for v in violations[:10]],
        extra=extra,
        idle_by_participant=report.idle_by_participant,
    )


def _line(row: Row, bound: int | None) -> str:
    if not row.extra.get("solved", True):
        return (
            f"{row.instance:<18} {row.method:<9} {'-':>13} {'-':>16} {'-':>7}"
            f" {row.seconds:>8.2f} {'-':>8} {'-':>6}"
        )
    mark = "=" if bound is not None and row.priority == bound else " "
    return (
        f"{row.instance:<18} {row.method:<9} {f'{row.placed}/{row.meetings}':>13}"
        f" {f'{row.priority}{mark}/{row.priority_total}':>16} {row.idle:>7}"
        f" {row.seconds:>8.2f} {row.best_at:>8.2f} {'yes' if row.valid else 'NO':>6}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small sizes and short time limits")
    ap.add_argument("--only", help="comma-separated instance names to run")
    ap.add_argument("--seed", type=int, default=1, help="instance generator seed")
    ap.add_argument("--no-cpsat", action="store_true", help="skip CP-SAT everywhere")
    ap.add_argument("--save-instances", type=Path, help="write the instances' JSON here")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--suite",
        choices=("all", "forum", "generated"),
        default="all",
        help="the published forum instances, the generated events, or both (default)",
    )
    ap.add_argument(
        "--forum-dir", type=Path, default=FORUM_DIR, help="the converted forum instances"
    )
    ap.add_argument("--forum-limit", type=float, default=10.0, help="time limit per forum instance")
    ap.add_argument(
        "--forum-only",
        help="comma-separated forum instances to run (e.g. tic-14crafc,forumt-14crafe)",
    )
    ap.add_argument(
        "--forum-repeat", type=int, default=1, help="run each forum instance this many times"
    )
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    print(
        f"# load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}"
        f" ({os.cpu_count()} cores); the machine may be shared: compare within this run",
        flush=True,
    )
    forum: list[dict[str, Any]] = []
    forum_ok = True
    if args.suite in ("all", "forum"):
        only = args.forum_only.split(",") if args.forum_only else None
        forum, forum_ok = run_forum(args.forum_dir, args.forum_limit, only, args.forum_repeat)
    if args.suite == "forum":
        _save(args.out, load_start, [], [], forum)
        return 0 if forum_ok else 1

    specs = QUICK if args.quick else SPECS
    if args.only:
        wanted = args.only.split(",")
        by_name = {s.name: s for s in QUICK + SPECS}  # full-size specs win
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            ap.error(f"unknown instance(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
        specs = [by_name[w] for w in wanted]
    rows: list[Row] = []
    instances: list[dict[str, Any]] = []
    header = (
        f"{'instance':<18} {'method':<9} {'placed':>13} {'priority':>16} {'idle':>7}"
        f" {'time (s)':>8} {'best (s)':>8} {'valid':>6}"
    )
    print(header)
    print("-" * len(header), flush=True)
    for spec in specs:
        t0 = time.monotonic()
        doc = generate(spec, args.seed)
        instance = parse_instance(doc)
        gen_s = time.monotonic() - t0
        if args.save_instances:
            args.save_instances.mkdir(parents=True, exist_ok=True)
            (args.save_instances / f"{spec.name}.json").write_text(json.dumps(doc))
        t0 = time.monotonic()
        bound = priority_bound(instance)
        bound_s = time.monotonic() - t0
        n_onsite = sum(1 for m in instance.meetings if m.onsite)
        n_slots = len(instance.slots)
        info: dict[str, Any] = {
            "name": spec.name,
            "spec": asdict(spec),
            "participants": len(instance.participants),
            "meetings": len(instance.meetings),
            "onsite": n_onsite,
            "fixed": sum(1 for m in instance.meetings if m.fixed is not None),
            "capped": sum(1 for q in instance.participants if q.max_meetings is not None),
            "limited": sum(1 for q in instance.participants if q.available is not None),
            "slots": n_slots,
            "tables": instance.tables,
            "table_load": round(n_onsite / max(1, n_slots * instance.tables), 3),
            "priority_bound": bound,
            "bound_s": round(bound_s, 2),
            "generated_s": round(gen_s, 2),
        }
        instances.append(info)

        def do_greedy(inst: Instance = instance) -> tuple[Schedule, dict[str, Any]]:
            return greedy(inst), {}

        def do_optimise(
            inst: Instance = instance, limit: float = spec.time_limit
        ) -> tuple[Schedule, dict[str, Any]]:
            result = portfolio(inst, time_limit=limit, seed=0)
            return result.schedule, {**asdict(result.stats), **summary(result)}

        methods: list[tuple[str, Callable[[], tuple[Schedule, dict[str, Any]]]]] = [
            ("greedy", do_greedy),
            ("optimise", do_optimise),
        ]
        skip_reason = None
        if args.no_cpsat:
            skip_reason = "skipped (--no-cpsat)"
        elif not spec.cpsat:
            skip_reason = (
                f"skipped: {len(instance.meetings)} meetings x {n_slots} slots is far past what"
                " its model handles in the limit (it found no solution at all for 2,500)"
            )
        else:

            def do_cpsat(
                inst: Instance = instance, limit: float = spec.time_limit
            ) -> tuple[Schedule, dict[str, Any]]:
                return cpsat(inst, limit)

            methods.append(("cp-sat", do_cpsat))
        done = [run(spec, instance, method, solve) for method, solve in methods]
        for row in done:
            ub = row.extra.get("priority_ub") if row.extra.get("solved") else None
            if ub is not None and (bound is None or ub < bound):
                bound = ub  # CP-SAT's bound is tighter than the relaxation's
        info["priority_bound_best"] = bound
        for row in done:
            rows.append(row)
            method = row.method
            line = _line(row, bound)
            if method == "cp-sat":
                x = row.extra
                if x["status"] in ("OPTIMAL", "FEASIBLE"):
                    line += f"  {x['status'].lower()}, proves priority <= {x['priority_ub']}"
                    if x["priority_ub"] == row.priority:
                        line += f" and idle >= {x['idle_lb']}"
                else:
                    line += f"  {x['status'].lower()}: no solution within {spec.time_limit:.0f} s"
            if method == "optimise":
                x = row.extra
                line += f"  {'proven optimal' if x['proven_optimal'] else x['exact'][:60]}"
            print(line, flush=True)
            if row.idle_by_participant and method != "greedy":
                print(
                    f"    idle per participant (idle slots:participants):"
                    f" {idle_distribution(row.idle_by_participant)}",
                    flush=True,
                )
            if not row.valid and row.extra.get("solved", True):
                for v in row.violations:
                    print(f"    violation: {v}")
        if skip_reason:
            print(f"{spec.name:<18} {'cp-sat':<9} {skip_reason}", flush=True)
    print(
        "# placed: meetings scheduled; priority: summed priority placed / of all meetings,"
        " '=' where it equals the best upper bound known (the relaxation's below, or CP-SAT's"
        " where lower); idle: idle slots summed over participants and"
        " sessions; time: wall time of the method; best: when its final result was reached"
    )
    for x in instances:
        print(
            f"# {x['name']}: {x['participants']} participants, {x['meetings']} meetings"
            f" ({x['onsite']} onsite, {x['fixed']} fixed), {x['slots']} slots, {x['tables']}"
            f" tables (onsite load {x['table_load']:.0%}), {x['capped']} capped and"
            f" {x['limited']} with limited availability; priority <= {x['priority_bound']}"
            f" (relaxation: no slots or tables); time limit {x['spec']['time_limit']:.0f} s"
        )
    if any(spec.name == "bio-48500" for spec in specs):
        limit_check(args.seed)
    load_end = _save(args.out, load_start, instances, rows, forum)
    print(f"# load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print(f"# results in {args.out}")
    valid = all(r.valid for r in rows if r.extra.get("solved", True))
    return 0 if valid and forum_ok else 1


def _save(
    out: Path,
    load_start: tuple[float, float, float],
    instances: list[dict[str, Any]],
    rows: list[Row],
    forum: list[dict[str, Any]],
) -> tuple[float, float, float]:
    load_end = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_start": load_start,
                    "load_end": load_end,
                },
                "forum": forum,
                "instances": instances,
                "results": [asdict(r) for r in rows],
            },
            indent=2,
        )
    )
    return load_end


def limit_check(seed: int) -> None:
    """The command line on BIO International size with short limits: the time limit
    holds for the whole run (parse time stated apart)."""
    spec = next(s for s in SPECS if s.name == "bio-48500")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bio.json"
        path.write_text(json.dumps(generate(spec, seed)))
        for limit in (0.5, 2.0):
            started = time.monotonic()
            cli = [sys.executable, "-m", "services.scheduling.solve", str(path)]
            done = subprocess.run(
                [*cli, "--time-limit", str(limit), "--stats", "--compact"],
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.monotonic() - started
            stats = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"
            print(
                f"# limit check: bio-48500 --time-limit {limit:g}: {stats};"
                f" wall time with interpreter start {wall:.2f} s",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
