"""Schedule an instance from the command line.

    python -m services.scheduling.solve INSTANCE.json [--time-limit SECONDS] > SCHEDULE.json

Reads the instance (a file, or `-` for standard input), writes the schedule JSON to
standard output. Exit status: 0 on success, 2 when the instance is malformed (the
message on standard error says where).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from services.scheduling.solver.greedy import greedy
from services.scheduling.solver.model import InstanceError, parse_instance_json, schedule_to_json
from services.scheduling.solver.optimise import optimise


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
        help="wall time from reading the instance to the schedule (default 10; the"
        " optimiser may stop earlier when it is done)",
    )
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument(
        "--max-moves",
        type=int,
        default=None,
        metavar="N",
        help="also stop the local search after N moves (for exactly reproducible output)",
    )
    ap.add_argument("--greedy", action="store_true", help="the first-come baseline instead")
    ap.add_argument("--compact", action="store_true", help="JSON on one line")
    args = ap.parse_args(argv)
    started = time.monotonic()
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
    if args.greedy:
        schedule = greedy(instance)
    else:
        left = max(0.0, args.time_limit - (time.monotonic() - started))  # reading counts
        schedule = optimise(instance, time_limit=left, seed=args.seed, max_moves=args.max_moves)
    sys.stdout.write(schedule_to_json(schedule, indent=None if args.compact else 2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
