"""Step 5's load: registration bodies and two open-loop HTTP clients (httpx, raw)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx


def registration_body(i: int, tag: str) -> dict[str, Any]:
    return {
        "organisation_type": "business",
        "name": f"Bench Organisation {tag}-{i:06d}",
        "country": "DE",
        "sectors": ["ICT", "mechanical engineering"],
        "technologies": ["robotics", "machine vision"],
        "value_chain_position": "supplier",
        "markets": ["DE", "AT", "PL"],
        "offers": ["robot cells for small batches"],
        "requests": ["partners for industrial IoT pilots"],
        "attendance": "on_site",
        "representatives": [{"name": f"Representative {i}", "email": f"rep{i}@example.org"}],
    }


@dataclass
class Sent:
    index: int
    scheduled: float
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0
    registration_id: str | None = None
    error: str | None = None


class RawHttpClient:
    """A minimal HTTP/1.1 keep-alive client for JSON requests, at a fraction of httpx's CPU.

    Only what the load generator needs: a pool of persistent connections to
    one host, `Content-Length` bodies both ways (what uvicorn sends for a
    JSONResponse), no redirects, no TLS. Used with `--client raw` to show how
    much of a 2-core machine the load generator itself takes.
    """

    def __init__(self, base_url: str, max_connections: int) -> None:
        parts = httpx.URL(base_url)
        self._host, self._port = parts.host, parts.port or 80
        self._max = max_connections
        self._open = 0
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            if self._idle.empty() and self._open < self._max:
                self._open += 1
                try:
                    return await asyncio.open_connection(self._host, self._port)
                except BaseException:
                    self._open -= 1
                    raise
            reader, writer = await self._idle.get()
            if not reader.at_eof():
                return reader, writer
            # The server closed it while idle (uvicorn's keep-alive timeout): a new one.
            writer.close()
            self._open -= 1

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """One request (`headers` beside host, content-type and content-length)."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        reader, writer = await self._connection()
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n{extra}"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            keep_alive = True
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    keep_alive = False
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            self._open -= 1
            raise
        if keep_alive:
            self._idle.put_nowait((reader, writer))
        else:
            writer.close()
            self._open -= 1
        return status, payload

    async def close(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


class LoadClient:
    """POSTs through httpx (several AsyncClients with small pools) or `RawHttpClient`.

    httpx keeps one list of connections per client and rescans it on every
    request, so one client with hundreds of connections burns CPU quadratically
    once a backlog builds; sharding over small pools keeps its cost per request flat.
    """

    def __init__(
        self, kind: str, base_urls: Sequence[str], *, shards: int = 16, per_shard: int = 16
    ) -> None:
        """Requests go round-robin over `base_urls` (instances of one service)."""
        self.kind = kind
        self._next = 0
        self._httpx: list[httpx.AsyncClient] = []
        self._raw: list[RawHttpClient] = []
        if kind == "raw":
            self._raw = [RawHttpClient(url, shards * per_shard) for url in base_urls]
        else:
            limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
            self._httpx = [
                httpx.AsyncClient(
                    base_url=base_urls[i % len(base_urls)], timeout=180, limits=limits
                )
                for i in range(max(shards, len(base_urls)))
            ]

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self._next += 1
        if self._raw:
            return await self._raw[self._next % len(self._raw)].post(path, body)
        response = await self._httpx[self._next % len(self._httpx)].post(
            path, content=body, headers={"content-type": "application/json"}
        )
        return response.status_code, response.content

    async def close(self) -> None:
        for raw in self._raw:
            await raw.close()
        for client in self._httpx:
            await client.aclose()


async def fire(
    client: LoadClient, path: str, count: int, rate: float, tag: str, offset: int
) -> list[Sent]:
    """Open loop: request i is sent at t0 + i/rate whatever the earlier ones do.

    `sent` is taken when the request is due and handed to the client, so time
    spent waiting for a free connection counts as latency (no coordinated omission).
    """
    results = [Sent(offset + i, 0.0) for i in range(count)]
    bodies = [json.dumps(registration_body(s.index, tag)).encode() for s in results]

    async def one(s: Sent, body: bytes) -> None:
        s.sent = time.time()
        try:
            status, payload = await client.post(path, body)
            s.answered = time.time()
            s.status = status
            if status == 201:
                s.registration_id = json.loads(payload)["registration_id"]
            else:
                s.error = payload[:300].decode(errors="replace")
        except Exception as exc:
            s.answered = time.time()
            s.error = repr(exc)

    tasks = []
    t0 = time.time() + 0.05
    for i, s in enumerate(results):
        s.scheduled = t0 + i / rate
        delay = s.scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(s, bodies[i])))
    await asyncio.gather(*tasks)
    return results
