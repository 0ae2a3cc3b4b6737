"""The sender's workers wake one at a time (`Sender._wake_one`): a NOTIFY costs one
claim, not one per worker, and a wake-up while every worker is busy is not lost."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace

from services.notification.sender import Sender


def idle_sender() -> Sender:
    sender = Sender.__new__(Sender)  # only the wake-up machinery, no pool or SMTP
    sender._idle = deque()
    sender._missed = False
    sender._s = SimpleNamespace(delivery_poll_seconds=30.0)  # type: ignore[assignment]
    return sender


async def test_a_notification_wakes_one_waiting_worker() -> None:
    sender = idle_sender()
    workers = [asyncio.create_task(sender._idle_until_woken()) for _ in range(4)]
    await asyncio.sleep(0.01)
    sender._notified()
    await asyncio.sleep(0.01)
    assert sum(w.done() for w in workers) == 1
    sender._wake_one()  # a worker whose claim came back full brings one more in
    await asyncio.sleep(0.01)
    assert sum(w.done() for w in workers) == 2
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert not sender._idle  # a cancelled wait leaves no alarm behind


async def test_a_wake_up_while_all_are_busy_makes_the_next_idle_one_claim_again() -> None:
    sender = idle_sender()
    sender._notified()  # nobody waiting
    await asyncio.wait_for(sender._idle_until_woken(), 1.0)  # returns at once
    waiting = asyncio.create_task(sender._idle_until_woken())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the missed wake-up was used once, not kept
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
