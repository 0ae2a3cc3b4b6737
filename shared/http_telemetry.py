"""A server span and a duration sample per HTTP request, for little more than the sample.

OpenTelemetry's ASGI instrumentation did the same for about a third of a millisecond
of CPU per request even when the trace was not sampled (it builds every attribute,
matches the route a second time and feeds four metric instruments through the SDK):
as much as the rest of FastAPI's request handling. Here a request that is not
sampled costs a non-recording span (its ids still propagate: the correlation id and
the events' `traceparent`) and one Prometheus histogram observation; attributes and
the span's route name are filled in only for a recorded span.

The duration goes to `http_server_duration_milliseconds` (the series the Grafana
dashboards read), labelled by method, status code and route template.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import HTTP_SERVER_DURATION

# Request headers that carry a trace context (W3C trace context and baggage).
_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
UNMATCHED = "(unmatched)"  # the route label of a request no route took (a 404)


class RequestTelemetry:
    """ASGI middleware: each HTTP request but those to `excluded` paths gets a server
    span, continuing the caller's trace, and a sample of its duration."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded: Iterable[str] = (),
        tracer_provider: trace.TracerProvider | None = None,  # None: the global one
    ) -> None:
        self.app = app
        self._excluded = frozenset(excluded)
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._excluded:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _CONTEXT_HEADERS
        }
        parent = propagate.extract(carrier) if carrier else None
        status = 500  # unless a response starts

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self._tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, send_noting_status)
            except Exception as exc:
                if span.is_recording():
                    span.record_exception(exc)
                raise
            finally:
                route = route_of(scope)
                if span.is_recording():
                    describe(span, scope, route, status)
                HTTP_SERVER_DURATION.labels(method, str(status), route).observe(
                    1000 * (time.perf_counter() - started)
                )


def route_of(scope: Scope) -> str:
    """The template of the route that took the request (set on the scope by routing)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


def describe(span: trace.Span, scope: Scope, route: str, status: int) -> None:
    """Name a recorded server span after its route and give it the HTTP attributes."""
    method = scope["method"]
    span.update_name(f"{method} {route}" if route != UNMATCHED else method)
    headers = dict(scope["headers"])
    client = scope.get("client")
    server = scope.get("server")
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "http.route": route,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
        "http.response.status_code": status,
    }
    if scope.get("query_string"):
        attributes["url.query"] = scope["query_string"].decode("latin-1")
    if client:
        attributes["client.address"] = client[0]
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    if b"user-agent" in headers:
        attributes["user_agent.original"] = headers[b"user-agent"].decode("latin-1")
    span.set_attributes(attributes)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
