"""Schedule an instance from the command line.

    python -m services.scheduling.solve INSTANCE.json [--time-limit SECONDS] > SCHEDULE.json

Reads the instance (a file, or `-` for standard input), writes the schedule JSON to
standard output, with a `summary`: the summed priority and idle time, whether the
schedule is proven optimal, and the bound (no schedule places more than
`priority_bound`, and none placing that much has less idle time than `idle_bound`).
Exit status: 0 on success, 2 when the instance is malformed (the message on standard
error says where).

`--time-limit` is a hard limit of the whole run, from the start of `main` to the
schedule written: reading and parsing the instance count (with `--stats`, standard
error says how long they took), and every phase of the solver watches one deadline.
Only when parsing alone takes longer than the limit does the run end later: parsing
plus the greedy baseline and writing it out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from services.scheduling.solver.greedy import greedy
from services.scheduling.solver.model import InstanceError, parse_instance_json, schedule_to_dict
from services.scheduling.solver.portfolio import solve

# Seconds per meeting kept back for writing the schedule out (JSON), measured with margin.
WRITE_SECONDS_PER_MEETING = 4e-6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m services.scheduling.solve",
        description="Place meetings in slots and tables: most summed priority, then least idle"
        " time. Writes the schedule JSON to standard output.",
    )
    ap.add_argument("instance", help="instance JSON file, or - for standard input")
    ap.add_argument(
        "--time-limit",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wall time from reading the instance to the schedule written, a hard limit"
        " (default 10; the solver may stop earlier when it is done)",
    )
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument(
        "--max-moves",
        type=int,
        default=None,
        metavar="N",
        help="also stop the local search after N moves (for exactly reproducible output;"
        " implies --no-exact)",
    )
    ap.add_argument("--no-exact", action="store_true", help="the heuristic only, no CP-SAT model")
    ap.add_argument(
        "--one-process",
        action="store_true",
        help="no second annealing run in a child process (small events only start one)",
    )
    ap.add_argument(
        "--stats",
        action="store_true",
        help="timings and each participant's idle time on standard error",
    )
    ap.add_argument("--greedy", action="store_true", help="the first-come baseline instead")
    ap.add_argument("--compact", action="store_true", help="JSON on one line")
    started = time.monotonic()
    args = ap.parse_args(argv)
    if args.time_limit < 0:
        ap.error("--time-limit must not be negative")

    try:
        if args.instance == "-":
            text = sys.stdin.buffer.read()
        else:
            text = Path(args.instance).read_bytes()
    except OSError as e:
        print(f"error: cannot read {args.instance}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        instance = parse_instance_json(text)
    except InstanceError as e:
        print(f"error: malformed instance: {e}", file=sys.stderr)
        return 2
    parsed = time.monotonic() - started
    doc: dict[str, Any]
    if args.greedy:
        doc = schedule_to_dict(greedy(instance))
    else:
        write = WRITE_SECONDS_PER_MEETING * len(instance.meetings)
        if args.max_moves is not None:
            from services.scheduling.solver.optimise import Stats, optimise

            stats = Stats()
            schedule = optimise(
                instance,
                max(0.0, args.time_limit - write - (time.monotonic() - started)),
                args.seed,
                args.max_moves,
                stats,
            )
            doc = schedule_to_dict(schedule)
        else:
            result = solve(
                instance,
                time_limit=max(0.0, args.time_limit - write),
                seed=args.seed,
                use_exact=not args.no_exact,
                started=started,
                second_process=not args.one_process,
            )
            doc = schedule_to_dict(result.schedule)
            doc["summary"] = {
                "priority": result.priority,
                "idle": result.idle,
                "proven_optimal": result.proven_optimal,
                "priority_bound": result.priority_bound,
                "idle_bound": result.idle_bound,
                "method": result.method,
                "exact": result.exact_status,
            }
            if args.stats:
                counts: dict[int, int] = {}
                for v in result.idle_by_participant.values():
                    counts[v] = counts.get(v, 0) + 1
                print(
                    "idle per participant (idle slots:participants): "
                    + " ".join(f"{v}:{n}" for v, n in sorted(counts.items())),
                    file=sys.stderr,
                )
    sys.stdout.write(json.dumps(doc, indent=None if args.compact else 2) + "\n")
    sys.stdout.flush()
    if args.stats:
        total = time.monotonic() - started
        print(
            f"parse {parsed:.3f} s, total {total:.3f} s (limit {args.time_limit:g} s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
