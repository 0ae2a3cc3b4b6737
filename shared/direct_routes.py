"""The plain requests of a busy route, served without FastAPI's machinery in between.

A request to a FastAPI route passes Starlette's exception middleware, FastAPI's exit
stack, route matching (a check per route of the app), the access guard, dependency
solving and body validation through a `TypeAdapter`, and a `JSONResponse` back through
the same layers: in registration's profile at 30 commands/s about a third of the
process's CPU for `POST .../registrations`, more than the command's own work.

A `DirectRoute` names a route the app declares as usual (its OpenAPI document, access
declaration and access table stay that route's) and a `serve` function for its plain
requests. `DirectRoutes`, an ASGI middleware inside `RequestTelemetry`, gives `serve`
each request whose method and path are the route's, with its body read. `serve`
answers it, or returns None before doing anything (a header it does not handle, a body
that does not validate, a caller who needs the guard's database lookups...): the
request then goes to the app as if nothing had happened, its body replayed, and the
app answers as it always did (a 422 problem, for instance, is the app's own). What
`serve` raises goes to the app's exception handlers, as a route's would; what none of
them handles goes up to `ServerErrorMiddleware`, as before.

So callers see no difference: the same answers and headers, the same problem
documents; `tests/integration/test_direct_routes.py` compares both paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import DIRECT_ROUTE_REQUESTS

# What `serve` answers: status code, JSON payload, extra headers (name: value).
Answer = tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class DirectRequest:
    """A request to a direct route, its body read (not parsed)."""

    scope: Scope
    path_params: dict[str, str]
    headers: dict[bytes, bytes]  # lower-case names; a repeated header: its first value
    body: bytes

    @property
    def app(self) -> Any:
        return self.scope["app"]


@dataclass(frozen=True)
class DirectRoute:
    """`serve` answers the plain requests of the route whose endpoint is `endpoint`."""

    endpoint: Callable[..., Any]
    method: str
    serve: Callable[[DirectRequest], Awaitable[Answer | None]]


@dataclass(frozen=True)
class Learned:
    """A direct route's app route (as routing puts it in the scope), path pattern and
    counters of the requests answered directly and by the app."""

    route: Any
    pattern: re.Pattern[str]
    direct: Any
    app: Any


class DirectRoutes:
    """ASGI middleware: each request of a `DirectRoute` goes to its `serve` first.

    The route's path pattern is the one FastAPI's routing chose for the first request
    that reached the endpoint (read from the scope, where telemetry reads it too): that
    request, and any before it, go to the app. Routing's structures are not read."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[DirectRoute] = ()) -> None:
        self.app = app
        self._unlearned = list(routes)
        self._by_method: dict[str, list[tuple[DirectRoute, Learned]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for direct, learned in self._by_method.get(scope["method"], ()):
                matched = learned.pattern.match(scope["path"])
                if matched is not None:
                    await self._serve(direct, learned, matched.groupdict(), scope, receive, send)
                    return
        await self.app(scope, receive, send)
        if self._unlearned and scope["type"] == "http":
            self._learn(scope)

    def _learn(self, scope: Scope) -> None:
        route = scope.get("route")
        for direct in self._unlearned:
            if getattr(route, "endpoint", None) is direct.endpoint and direct.method in (
                getattr(route, "methods", None) or ()
            ):
                template = f"{direct.method} {route.path}"  # type: ignore[union-attr]
                learned = Learned(
                    route,
                    route.path_regex,  # type: ignore[union-attr]
                    DIRECT_ROUTE_REQUESTS.labels(template, "direct"),
                    DIRECT_ROUTE_REQUESTS.labels(template, "app"),
                )
                self._unlearned.remove(direct)
                self._by_method.setdefault(direct.method, []).append((direct, learned))
                return

    async def _serve(
        self,
        direct: DirectRoute,
        learned: Learned,
        path_params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        received: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":  # a disconnect: the app's to handle
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first, as Starlette's `Headers` reads it
        request = DirectRequest(scope, path_params, headers, b"".join(chunks))
        try:
            answer = None
            if received[-1]["type"] == "http.request":
                # Routing would set these; telemetry names the span and metric by the route.
                scope["route"] = learned.route
                scope["path_params"] = path_params
                answer = await direct.serve(request)
        except Exception as exc:
            handler = _handler_for(scope["app"], exc)
            if handler is None:
                raise
            learned.direct.inc()
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        if answer is None:
            learned.app.inc()
            await self.app(scope, _replaying(received, receive), send)
            return
        learned.direct.inc()
        status, payload, extra = answer
        body = _json(payload)
        # As Starlette's JSONResponse sends them: given headers, then length and type.
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in extra.items()
        ]
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _json(payload: Any) -> bytes:
    """`payload` as Starlette's `JSONResponse.render` writes it (the same bytes)."""
    return json.dumps(
        payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _handler_for(app: Any, exc: Exception) -> Callable[..., Any] | None:
    """The app's handler of `exc` (by its class's MRO), as Starlette's
    `ExceptionMiddleware` finds it; None where it would let it through."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls is Exception:  # ServerErrorMiddleware's, outside: it still gets it
            return None
        if cls in handlers:
            handler: Callable[..., Any] = handlers[cls]
            return handler
    return None


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """`receive` with the messages already taken given again first."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
