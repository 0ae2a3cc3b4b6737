"""The bench's API client: `RawHttpClient` per service, every command's times recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.backbone.load import RawHttpClient

SERVICES = ("registration", "matching", "scheduling", "notification", "reporting")


@dataclass
class Command:
    phase: str
    kind: str
    sent: float
    answered: float = 0.0
    status: int = 0
    error: str | None = None


class CommandFailed(RuntimeError):
    pass


@dataclass
class Api:
    """Calls the services at `urls` (service -> base URL); keeps one `Command` per call."""

    urls: dict[str, str]
    connections: int = 32
    commands: list[Command] = field(default_factory=list)
    _clients: dict[str, RawHttpClient] = field(default_factory=dict)

    def client(self, service: str) -> RawHttpClient:
        if service not in self._clients:
            self._clients[service] = RawHttpClient(self.urls[service], self.connections)
        return self._clients[service]

    async def call(
        self,
        phase: str,
        kind: str,
        service: str,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
    ) -> Any:
        """Send one command or query; its answer's JSON. Raises `CommandFailed` on >= 400."""
        payload = b"" if body is None else json.dumps(body).encode()
        headers = {"x-api-key": key} if key else None
        record = Command(phase, kind, time.time())
        self.commands.append(record)
        try:
            status, answer = await self.client(service).request(method, path, payload, headers)
        except Exception as exc:
            record.answered, record.error = time.time(), repr(exc)
            raise CommandFailed(f"{method} {service}{path}: {exc!r}") from exc
        record.answered, record.status = time.time(), status
        if status >= 400:
            record.error = answer[:300].decode(errors="replace")
            raise CommandFailed(f"{method} {service}{path}: {status} {record.error}")
        return json.loads(answer) if answer else None

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


async def each(
    items: Iterable[Any],
    work: Callable[[Any], Awaitable[None]],
    concurrency: int,
    rate: float | None = None,
) -> list[BaseException]:
    """`work(item)` for every item, at most `concurrency` at a time; the failures.

    With `rate` (commands per second) the i-th item starts no sooner than i / rate
    seconds after the first: an open loop, as users arrive, whatever the platform's
    pace; without it, a closed loop that sends as fast as the answers come.
    """
    gate = asyncio.Semaphore(concurrency)
    failures: list[BaseException] = []
    start = time.perf_counter()

    async def one(i: int, item: Any) -> None:
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with gate:
            try:
                await work(item)
            except CommandFailed as exc:
                failures.append(exc)

    await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    return failures
