"""Registration's direct route (`shared.direct_routes`): a plain anonymous registration is
answered past FastAPI's request handling, every other request by the route as before,
and a caller cannot tell which answered.

The real registration app (`build_app`) runs in-process on a fresh database with its
relay and consumer (the tests' topic prefix); requests go through ASGI.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.registration.bootstrap import build_app
from shared.metrics import DIRECT_ROUTE_REQUESTS
from shared.settings import RegistrationSettings
from tests.integration.support import TEST_TOPIC_PREFIX, FreshDatabase, Infra

pytestmark = pytest.mark.integration

ADMIN_KEY = "direct-route-admin-key"
ROUTE = "POST /api/events/{event_id}/registrations"


def served(by: str) -> float:
    """Requests of the registration route answered `by` "direct" or the "app" so far."""
    return DIRECT_ROUTE_REQUESTS.labels(ROUTE, by)._value.get()  # type: ignore[no-any-return]


@pytest.fixture
async def app(infra: Infra, database: FreshDatabase) -> AsyncIterator[FastAPI]:
    settings = RegistrationSettings(
        kafka_bootstrap_servers=infra.bootstrap_servers,
        registration_database_url=database.dsn,
        platform_admin_key=ADMIN_KEY,
        otel_traces_exporter="none",
        topic_prefix=TEST_TOPIC_PREFIX,
        consumer_group_suffix=f"-direct-{uuid.uuid4().hex[:8]}",
    )
    application = build_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registration") as client:
        yield client


async def new_event(http: httpx.AsyncClient, **changes: Any) -> str:
    r = await http.post("/api/organisers", json={"name": "EEN"}, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 201, r.text
    key = {"X-API-Key": r.json()["api_key"]}
    first = date.today() + timedelta(days=30)
    r = await http.post(
        "/api/events",
        headers=key,
        json={
            "name": "Direct fair",
            "venue": "Hall",
            "time_zone": "Europe/Berlin",
            "days": [first.isoformat()],
            "sessions": [{"start": "09:00", "end": "12:00"}],
            "slot_minutes": 30,
            "tables": 10,
            "meeting_types": ["Business2Business"],
            "registration_deadline": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
            "support_offices": [{"office_id": "office-de", "name": "DE", "countries": ["DE"]}],
            **changes,
        },
    )
    assert r.status_code == 201, r.text
    event_id: str = r.json()["event_id"]
    return event_id


def organisation(**changes: Any) -> dict[str, Any]:
    return {
        "organisation_type": "business",
        "name": f"Org {uuid.uuid4().hex[:8]}",
        "country": "DE",
        "sectors": ["biotech"],
        "representatives": [{"name": "Ada", "email": "ada@example.org"}],
        **changes,
    }


def shape(response: httpx.Response) -> tuple[int, list[bytes], str, list[str]]:
    """What a caller sees, ids aside: status, header names in order, content type, keys."""
    body = response.json()
    return (
        response.status_code,
        [name for name, _ in response.headers.raw],
        response.headers["content-type"],
        sorted(body) if isinstance(body, dict) else [],
    )


async def test_a_plain_registration_is_answered_directly_as_the_route_answers_it(
    http: httpx.AsyncClient,
) -> None:
    event_id = await new_event(http)
    path = f"/api/events/{event_id}/registrations"
    # The first request reaches the route through the app: the direct path learns it.
    first = await http.post(path, json=organisation())
    assert first.status_code == 201, first.text
    direct, by_app = served("direct"), served("app")

    plain = await http.post(path, json=organisation(), headers={"X-Correlation-Id": "corr-1"})
    assert (served("direct"), served("app")) == (direct + 1, by_app)
    # With an Idempotency-Key the route answers (its claim runs in a transaction).
    keyed = await http.post(
        path, json=organisation(), headers={"X-Correlation-Id": "corr-2", "Idempotency-Key": "k1"}
    )
    assert (served("direct"), served("app")) == (direct + 1, by_app + 1)

    assert plain.status_code == keyed.status_code == 201, (plain.text, keyed.text)
    assert shape(plain) == shape(keyed) == shape(first)
    assert [n for n, _ in plain.headers.raw] == [
        b"x-correlation-id",
        b"content-length",
        b"content-type",
    ]
    assert plain.headers["x-correlation-id"] == "corr-1"
    answer = plain.json()
    assert answer["event_id"] == event_id and answer["status"] == "pending"
    assert answer["support_office"] == "office-de"  # the country rule, as the route assigns it
    assert answer["api_key"].startswith("reg")
    # The body bytes are what Starlette's JSONResponse writes.
    assert plain.content == json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()

    # The key it returned works: the registration is recorded and projected.
    me = await http.get("/api/me", headers={"X-API-Key": answer["api_key"]})
    assert me.status_code == 200, me.text
    assert me.json()["id"] == answer["registration_id"]
    assert me.json()["status"] == "pending"


async def test_refusals_are_the_routes_problem_documents(http: httpx.AsyncClient) -> None:
    event_id = await new_event(http)
    path = f"/api/events/{event_id}/registrations"
    assert (await http.post(path, json=organisation())).status_code == 201  # learnt

    # A domain refusal raised on the direct path goes to the app's handler: the same
    # 409 problem as on the route's own path (with an Idempotency-Key).
    taken = organisation()
    assert (await http.post(path, json=taken)).status_code == 201
    direct = served("direct")
    again = await http.post(path, json=taken)
    assert served("direct") == direct + 1
    keyed = await http.post(path, json=taken, headers={"Idempotency-Key": "k2"})
    assert again.status_code == keyed.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json() == keyed.json()
    assert again.json()["errors"][0]["field"] == "name"

    # An unknown event: 404 from the domain, either way.
    other = "/api/events/no-such-event/registrations"
    missing = await http.post(other, json=organisation())
    assert missing.status_code == 404, missing.text
    keyed_missing = await http.post(other, json=organisation(), headers={"Idempotency-Key": "k3"})
    assert missing.json() == keyed_missing.json()

    # What does not validate is passed to the route, which answers its 422 as before.
    by_app = served("app")
    for body, field in (
        ({**organisation(), "representatives": []}, "representatives"),
        ({**organisation(), "country": "DEU"}, "country"),
        ({**organisation(), "surprise": 1}, "surprise"),
        ({**organisation(), "name": "bad\x00name"}, "name"),
    ):
        r = await http.post(path, json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == field
    not_json = await http.post(path, content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422, not_json.text
    as_text = await http.post(path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 422, as_text.text
    assert served("app") == by_app + 6

    # A key the guard does not know: its 401, from the route.
    unknown = await http.post(path, json=organisation(), headers={"X-API-Key": "nope"})
    assert unknown.status_code == 401, unknown.text
    assert served("app") == by_app + 7


async def test_no_other_route_takes_what_the_direct_path_answers(app: FastAPI) -> None:
    """The direct path matches the route's own pattern; no route declared before it may
    match a POST to the same paths (FastAPI would take the first)."""
    paths = app.openapi()["paths"]
    template = "/api/events/{event_id}/registrations"
    assert "post" in paths[template]
    sample = "/api/events/some-event/registrations"
    for other, operations in paths.items():
        if other == template or "post" not in operations:
            continue
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", other) + "$"
        assert not re.match(pattern, sample), other
