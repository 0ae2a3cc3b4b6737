"""A server that does nothing: the baseline's other end.

    python -m bench.event.stub PORT

Answers every HTTP/1.1 request on 127.0.0.1:PORT at once with 201 and one JSON
body that has every field the driver reads (ids, keys), keeping the connection
open. What the bench times against it is the API client's own cost: building,
sending and reading the same commands as in the real run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys

_ids = itertools.count(1)


def answer() -> bytes:
    n = next(_ids)
    body = json.dumps(
        {
            "api_key": f"stub-key-{n}",
            "event_id": "stub-event",
            "registration_id": f"stub-registration-{n}",
            "request_id": f"stub-request-{n}",
            "status": "ok",
        }
    ).encode()
    return (
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class StubProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(answer())


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StubProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
