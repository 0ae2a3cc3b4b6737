"""Work a process's event loop serves first, and background work that gives way to it.

A service's consumers, its relay and its background workers share one event loop, which
serves ready callbacks in turn, first come first served. Notification's sender (four
workers, each SMTP command an await) kept that loop busy nine tenths of the time at
bremen's peak rate: each statement of a consumer's transaction, once answered, waited
behind the sender's callbacks, and its batch took 49 ms (p50) where the same statements
took 3-15 ms in the other services. A consumer marks its batch `running`; a background
worker calls `give_way` between two units of its own work (a message), and waits there
until no batch runs, or `at_most` seconds: what was under way goes on, nothing new
starts while a batch waits for its statements. The limit keeps the background's work
going when batches follow each other without a pause (a backlog caught up), and makes
a wait on a row lock that the worker holds end (the worker goes on, commits, unlocks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Foreground:
    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> bool:
        return self._running > 0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Mark foreground work under way for the block's duration (nestable)."""
        self._running += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()

    async def give_way(self, at_most: float) -> None:
        """Return once no foreground work runs, or after `at_most` seconds."""
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), at_most)


# The process's: its consumers' batches, and what gives way to them.
FOREGROUND = Foreground()
