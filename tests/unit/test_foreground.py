"""Background work gives way to a consumer's batch (`shared.foreground`), for at most a
bounded time; notification's sender does so only while it is not behind."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from services.notification import sender
from services.notification.queue import Delivery
from shared.contracts.notification import Channel
from shared.foreground import FOREGROUND, Foreground


async def test_background_waits_until_the_batch_ends() -> None:
    foreground = Foreground()
    with foreground.running():
        waiting = asyncio.create_task(foreground.give_way(5.0))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        with foreground.running():  # a second consumer's batch overlaps the first
            pass
        await asyncio.sleep(0.02)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 1.0)


async def test_background_goes_on_after_at_most_its_limit() -> None:
    foreground = Foreground()
    with foreground.running():
        started = time.perf_counter()
        await foreground.give_way(0.05)
        assert 0.04 < time.perf_counter() - started < 1.0
        assert foreground.busy


async def test_nothing_running_nothing_waited_for() -> None:
    foreground = Foreground()
    started = time.perf_counter()
    await foreground.give_way(5.0)
    assert time.perf_counter() - started < 0.05


async def test_the_consumers_batch_is_foreground_while_it_is_applied() -> None:
    import asyncpg

    from shared.inbox import InboxCore, _Message

    seen: list[bool] = []

    class Core(InboxCore):
        async def _claim(
            self, conn: asyncpg.Connection, messages: list[_Message]
        ) -> list[_Message]:
            seen.append(FOREGROUND.busy)
            return []

    class Connection:
        def transaction(self) -> Connection:
            return self

        async def __aenter__(self) -> Connection:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    class Pool:
        def acquire(self) -> Connection:
            return Connection()

    core = Core.__new__(Core)
    core._pool = Pool()
    core._read_ahead = None
    core.read = lambda records: []  # type: ignore[method-assign]
    core._subscription = type("S", (), {"batch_handlers": {}})()
    await core.process([])
    assert seen == [True]
    assert not FOREGROUND.busy


def _delivery(due: datetime) -> Delivery:
    return Delivery(
        delivery_id="d",
        cause_id="c",
        recipient="r",
        channel=Channel.EMAIL,
        template="meeting.accepted",
        event_id="e",
        meeting_id=None,
        context={},
        message_id="<m@example.org>",
        digest=False,
        attempts=0,
        next_attempt_at=due,
        created_at=due,
    )


async def test_the_sender_gives_way_to_a_batch_unless_it_is_behind() -> None:
    now = datetime.now(UTC)
    with FOREGROUND.running():
        fresh = asyncio.create_task(sender.give_way(_delivery(now)))
        late = asyncio.create_task(sender.give_way(_delivery(now - timedelta(seconds=1))))
        await asyncio.sleep(0.01)
        assert late.done()
        assert not fresh.done()
    await asyncio.wait_for(fresh, 1.0)
