"""Registration's CPU per command, several revisions side by side under the same load.

    python -m bench.registration_cpu --revs HERE,main --rounds 6 --seconds 15

`bench.backbone --compare` runs one revision after the other, each on fresh services:
on a machine others share, the load moves between the rows by more than a change
saves (the same revision twice: 2.50 and 3.08 ms per command in one run). Here every
revision's registration and matching run at once (`bench.backbone`'s platforms: fresh
databases, topics of their own), each registration process gets the same open-loop
rate at the same moments, and each round reads every process's CPU (all threads, from
`/proc`) over the same window: what the machine does to one, it does to the others.
Compare the columns of a round; the rounds say how steady the difference is.

`HERE` is this working tree (uncommitted changes included); any other name is a git
revision, checked out in a temporary worktree (removed afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.backbone import common
from bench.backbone.cli import checkout
from bench.backbone.common import REPO
from bench.backbone.end_to_end import Platform, start_platform
from bench.backbone.load import LoadClient, fire
from bench.backbone.resources import Resources

HERE = "HERE"


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(revs: Sequence[str], rounds: int, seconds: float, rate: float) -> None:
    hex_id = uuid.uuid4().hex[:10]
    common.RUN_DB_TAG = f"bench_{hex_id}"
    res = Resources(hex_id)
    try:
        platforms: list[tuple[str, Platform]] = []
        for index, rev in enumerate(revs):
            tree = REPO if rev == HERE else (await checkout(res, rev))[1]
            platforms.append(
                (rev, await start_platform(res, f"cpu{index}", True, None, {}, 1, tree))
            )
        clients = [LoadClient("raw", [p.urls["registration"]]) for _, p in platforms]
        paths = [f"/api/events/{p.event_id}/registrations" for _, p in platforms]
        pids = [p.procs["registration"].pid for _, p in platforms]

        async def load(count: int, offset: int) -> list[int]:
            sent = await asyncio.gather(
                *(
                    fire(c, path, count, rate, hex_id, offset)
                    for c, path in zip(clients, paths, strict=True)
                )
            )
            return [sum(1 for s in one if s.status == 201) for one in sent]

        offset = int(rate * 2)
        await load(offset, 0)  # warm-up: connections, statements prepared, caches
        await asyncio.sleep(1)
        totals = [0.0] * len(platforms)
        commands = 0
        print(f"registration CPU ms per command at {rate:g}/s, {seconds:g} s per round")
        for number in range(1, rounds + 1):
            count = int(rate * seconds)
            before = [process_cpu_seconds(pid) for pid in pids]
            ok = await load(count, offset)
            await asyncio.sleep(0.3)  # the relay's last round
            used = [process_cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
            offset += count
            commands += count
            totals = [t + u for t, u in zip(totals, used, strict=True)]
            cells = "  ".join(
                f"{rev} {1000 * u / count:.2f}" + ("" if o == count else f" ({count - o} failed)")
                for (rev, _), u, o in zip(platforms, used, ok, strict=True)
            )
            print(f"round {number}: {cells}  (load average {os.getloadavg()[0]:.1f})", flush=True)
        print(
            "all rounds: "
            + "  ".join(
                f"{rev} {1000 * t / commands:.2f}"
                for (rev, _), t in zip(platforms, totals, strict=True)
            )
        )
        for client in clients:
            await client.close()
    finally:
        await asyncio.shield(res.close())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.registration_cpu", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--revs", default=f"{HERE},main", help=f"comma-separated ({HERE}: this tree)"
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=15.0, help="per round")
    parser.add_argument("--rate", type=float, default=30.0, help="commands/s to each revision")
    args = parser.parse_args(argv)
    asyncio.run(run(args.revs.split(","), args.rounds, args.seconds, args.rate))


if __name__ == "__main__":
    main()
