"""`shared.http_telemetry.RequestTelemetry`: a server span and a duration per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from shared.http_telemetry import UNMATCHED, RequestTelemetry
from shared.runtime import NO_FASTAPI_TELEMETRY
from shared.telemetry import sampler

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def duration_count(method: str, status: str, route: str) -> float:
    labels = {"http_method": method, "http_status_code": status, "http_target": route}
    value = REGISTRY.get_sample_value("http_server_duration_milliseconds_count", labels)
    return value or 0.0


@asynccontextmanager
async def served(ratio: float) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler("parentbased_traceidratio", ratio))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    app = FastAPI(telemetry=NO_FASTAPI_TELEMETRY)

    @app.post("/items/{item_id}")
    async def item(item_id: str) -> dict[str, object]:
        context = trace.get_current_span().get_span_context()
        return {
            "item": item_id,
            "trace": format(context.trace_id, "032x"),
            "valid": context.is_valid,
        }

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(RequestTelemetry, excluded=("/health",), tracer_provider=provider)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, exported


async def test_a_sampled_caller_gets_a_server_span_named_after_the_route() -> None:
    before = duration_count("POST", "200", "/items/{item_id}")
    async with served(ratio=0.0) as (client, exported):
        answer = await client.post(
            "/items/42?x=1",
            headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "user-agent": "t"},
        )
    assert answer.status_code == 200
    assert answer.json()["trace"] == CALLER_TRACE  # the handler runs inside the span
    (span,) = exported.get_finished_spans()
    assert span.name == "POST /items/{item_id}"
    assert span.kind is SpanKind.SERVER
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["url.path"] == "/items/42"
    assert span.attributes["url.query"] == "x=1"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["user_agent.original"] == "t"
    assert duration_count("POST", "200", "/items/{item_id}") == before + 1


async def test_an_unsampled_request_records_no_span_but_keeps_a_trace_id_and_its_duration() -> None:
    before = duration_count("POST", "200", "/items/{item_id}")
    async with served(ratio=0.0) as (client, exported):
        answer = await client.post("/items/7")
    assert answer.json()["valid"] is True
    assert exported.get_finished_spans() == ()
    assert duration_count("POST", "200", "/items/{item_id}") == before + 1


async def test_a_failing_request_is_an_error_span_and_a_500_sample() -> None:
    before = duration_count("GET", "500", "/broken")
    async with served(ratio=1.0) as (client, exported):
        answer = await client.get("/broken")
    assert answer.status_code == 500
    (span,) = exported.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    assert duration_count("GET", "500", "/broken") == before + 1


async def test_unmatched_paths_share_one_label_and_excluded_paths_are_not_seen() -> None:
    unmatched = duration_count("GET", "404", UNMATCHED)
    health = duration_count("GET", "200", "/health")
    async with served(ratio=1.0) as (client, exported):
        assert (await client.get("/no/such/thing")).status_code == 404
        assert (await client.get("/health")).status_code == 200
    assert [span.name for span in exported.get_finished_spans()] == ["GET"]
    assert duration_count("GET", "404", UNMATCHED) == unmatched + 1
    assert duration_count("GET", "200", "/health") == health
