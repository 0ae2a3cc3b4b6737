"""Starts `bench._service` from any source tree, counting the process's SQL round trips.

    cd <tree> && BENCH_STATEMENTS_FILE=counts.json python <this file> registration

Run by path, not as a module, so that the tree in the working directory (this
checkout, or an older revision checked out by `--compare`) supplies every other
module: the service runs that tree's code, the counting is the same for all.

With `BENCH_STATEMENTS_FILE`, every statement the process sends through asyncpg
is counted (round trips and statements, by its first 90 characters), and on
SIGUSR1 the counts so far are written to that file as JSON (`{"seq": n,
"counts": {...}}`, replaced atomically); the bench signals before and after a
phase and takes the difference. `executemany` of n rows is one round trip and n
statements; a transaction's BEGIN and COMMIT and the pool's reset on release are
round trips of their own.

With `BENCH_MATCHING_TOPIC`, `matching.events` is that topic instead (see
`isolate_matching_topic`).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
from typing import Any


def count_statements(path: str) -> None:
    from asyncpg.connection import Connection

    counts: dict[str, list[int]] = {}
    seq = [0]

    def note(query: str, statements: int) -> None:
        key = " ".join(str(query).split())[:90]
        entry = counts.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += statements

    execute = Connection.execute
    execute_inner = Connection._execute
    executemany = Connection.executemany

    async def counted_execute(self: Connection, query: str, *args: Any, **kw: Any) -> Any:
        if not args:  # with arguments it goes through _execute, counted there
            note(query, 1)
        return await execute(self, query, *args, **kw)

    async def counted_execute_inner(self: Connection, query: str, *args: Any, **kw: Any) -> Any:
        note(query, 1)
        return await execute_inner(self, query, *args, **kw)

    async def counted_executemany(
        self: Connection, command: str, args: Any, *rest: Any, **kw: Any
    ) -> Any:
        args = list(args)
        note(command, len(args))
        return await executemany(self, command, args, *rest, **kw)

    Connection.execute = counted_execute
    Connection._execute = counted_execute_inner
    Connection.executemany = counted_executemany

    def dump(*_: object) -> None:
        seq[0] += 1
        temporary = f"{path}.tmp"
        with open(temporary, "w") as f:
            json.dump({"seq": seq[0], "counts": counts}, f)
        os.replace(temporary, path)

    signal.signal(signal.SIGUSR1, dump)


def isolate_matching_topic(isolated: str) -> None:
    """Kafka clients of the process read and write `isolated` where the code says
    `matching.events` (the platform's topic carries every other run's events).

    Done in `shared.topics` before anything imports its functions, so every tree
    since `TOPIC_PREFIX` gets it; an older tree keeps the shared topic."""
    try:
        from shared import topics
    except ImportError:
        return
    canonical = topics.prefixed

    def prefixed(prefix: str, name: str) -> str:
        return isolated if name == "matching.events" else canonical(prefix, name)

    topics.prefixed = prefixed


def main() -> None:
    sys.path[0] = os.getcwd()  # the tree to run, not this file's directory
    counts = os.environ.get("BENCH_STATEMENTS_FILE")
    if counts:
        count_statements(counts)
    matching_topic = os.environ.get("BENCH_MATCHING_TOPIC")
    if matching_topic:
        isolate_matching_topic(matching_topic)
    sys.argv = ["bench._service", *sys.argv[1:]]
    runpy.run_module("bench._service", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
