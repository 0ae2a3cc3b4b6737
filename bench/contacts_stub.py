"""A stand-in for registration's contacts endpoint, for `bench.sender`: every
registration id has one representative, `rep-<id>@bench.example`.

A bare ASGI app (served by uvicorn in a process of its own, so that its CPU is not
counted as the sender's): `GET /api/registrations/<id>/contacts` answers as
registration does, and so does `GET /api/contacts?registration_id=...` (in bulk);
anything else 404.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Message = dict[str, Any]


def _representatives(registration_id: str) -> list[dict[str, str]]:
    return [{"name": "Representative", "email": f"rep-{registration_id}@bench.example"}]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    parts = scope["path"].strip("/").split("/")  # api/registrations/<id>/contacts
    if scope["path"] == "/api/contacts":  # in bulk: ?registration_id=...&registration_id=...
        ids = [v for k, v in parse_qsl(scope["query_string"].decode()) if k == "registration_id"]
        found = [{"registration_id": rid, "representatives": _representatives(rid)} for rid in ids]
        status, body = 200, json.dumps({"contacts": found, "unknown": []})
    elif len(parts) == 4 and parts[:2] == ["api", "registrations"] and parts[3] == "contacts":
        rid = parts[2]
        answer = {"registration_id": rid, "representatives": _representatives(rid)}
        status, body = 200, json.dumps(answer)
    else:
        status, body = 404, '{"title": "Not found"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
