"""`ServiceRuntime.readiness`: a consumer or relay task that ended makes the service
unready (a consumer that merely `started` once is not enough), and two processes of
one service never share a consumer member id."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shared.runtime import ServiceRuntime
from shared.settings import RegistrationSettings


class _Conn:
    async def fetchval(self, _sql: str) -> bool:
        return True

    async def __aenter__(self) -> _Conn:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


class _Pool:
    def acquire(self, timeout: float = 0) -> _Conn:
        return _Conn()


class _Producer:
    _closed = False


class _Consumer:
    started = True


async def _forever() -> None:
    await asyncio.Event().wait()


async def _crash() -> None:
    raise RuntimeError("consumer loop died")


def _runtime(**env: Any) -> ServiceRuntime:
    return ServiceRuntime("registration", RegistrationSettings(**env), migrations=Path("."))


async def _ready_with(consumer_task: Any) -> dict[str, bool]:
    runtime = _runtime()
    runtime._pool = _Pool()
    runtime._producer = _Producer()
    runtime.consumers = [_Consumer()]  # type: ignore[list-item]
    relay = asyncio.create_task(_forever())
    consumer = asyncio.create_task(consumer_task())
    runtime._tasks = [relay, consumer]
    await asyncio.sleep(0.01)
    try:
        return await runtime.readiness()
    finally:
        relay.cancel()
        consumer.cancel()


async def test_ready_while_every_task_runs() -> None:
    assert all((await _ready_with(_forever)).values())


async def test_unready_when_a_consumer_task_died() -> None:
    checks = await _ready_with(_crash)
    assert checks["consumers"] is False
    assert checks["relay"] is True


def test_member_ids_differ_per_process_and_follow_replica_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = _runtime()._instance_id
    monkeypatch.setattr("os.getpid", lambda: 424242)
    b = _runtime()._instance_id
    assert a != b and b.endswith("-424242")
    assert _runtime(replica_id="2")._instance_id == "registration-2"
