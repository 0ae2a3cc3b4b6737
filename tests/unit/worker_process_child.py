"""A child for `test_worker_process`: counts `payload["count"]` things, then fails if
`payload["fail"]`, else says it has started and waits until stopped (writing "stopped"
to `payload["mark"]`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from shared.worker_process import child_main

THINGS = Counter("test_worker_things", "Things the test's child counted")


async def work(payload: dict[str, Any], ready: Callable[[], None]) -> None:
    for _ in range(payload["count"]):
        THINGS.inc()
    if payload.get("fail"):
        raise RuntimeError("the test's child fails on purpose")
    ready()
    try:
        await asyncio.Event().wait()
    finally:
        # A few bytes to a local file as the child ends: nothing else waits on this loop.
        Path(payload["mark"]).write_text("stopped")  # noqa: ASYNC240


if __name__ == "__main__":
    child_main(work)
