"""Tenant isolation, generated from the five live OpenAPI documents (issue 10).

Every operation of every service (plumbing aside) is called on event A's ids by
callers who have no business there: anonymous, another event's organiser, another
event's participant, A's co-organiser of office "north" on a participant of office
"south", and A's participant of "north" on the participant of "south". What each
caller may do is read from the operation's `x-access` declaration (the policy table),
so a new route is covered without editing this test. A caller the declaration does
not allow must get no 2xx, and on a route that needs a key 401 (no key) or 403 (a
key without rights) before its body is looked at: never 422. No call answers 5xx.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.access_world import (
    PLUMBING,
    SERVICES,
    World,
    build_world,
    five_services,
    key,
    ok,
)
from tests.integration.support import Infra

# The module's platform may wait for the scheduler lock (up to 240 s) before it starts.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

ADMIN_KEY = "tenant-isolation-admin-key"
METHODS = frozenset({"get", "post", "put", "patch", "delete"})


@dataclass(frozen=True)
class Live:
    urls: dict[str, str]
    world: World
    documents: dict[str, dict[str, Any]]  # service -> its OpenAPI document


@pytest.fixture(scope="module")
async def live(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, scheduler_lock: None
) -> AsyncIterator[Live]:
    log_dir = tmp_path_factory.mktemp("tenant-isolation")
    async with (
        five_services(infra, log_dir, label="tenant-isolation", admin_key=ADMIN_KEY) as p,
        httpx.AsyncClient(timeout=30) as http,
    ):
        world = await build_world(http, p.urls, ADMIN_KEY)
        documents = {svc: ok(await http.get(f"{url}/openapi.json")) for svc, url in p.urls.items()}
        yield Live(p.urls, world, documents)


# -- the callers, and what the policy says about them ------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    api_key: str | None
    # The caller's relation (a name of shared.access.policy.Relation) to event A, and,
    # for routes without an event or registration in their path, to what they concern.
    relation: str
    unscoped_relation: str


def callers(world: World) -> list[Caller]:
    return [
        Caller("anonymous", None, "ANONYMOUS", "ANONYMOUS"),
        Caller("B's organiser", world.organiser_b, "ORGANISER_ACCOUNT", "ORGANISER_ACCOUNT"),
        # On /me/... routes B's participant acts on its own registration in B.
        Caller("B's participant", world.participant_b.api_key, "OUTSIDER", "PARTICIPANT"),
        Caller("A's north co-organiser", world.co_organiser_north, "CO_ORGANISER", "OUTSIDER"),
        Caller("A's north participant", world.north.api_key, "PARTICIPANT", "PARTICIPANT"),
    ]


def targets_event_a(path: str) -> bool:
    return "{" in path


def forbidden(access: Mapping[str, Any], caller: Caller, path: str) -> bool:
    """Whether the declaration denies `caller` this operation on event A's ids.

    The path's `registration_id` is always A's participant of office "south": neither
    a co-organiser of "north" nor another participant may act on it. Without one, a
    co-organiser's or participant's grant ("own office", "self") applies to what it
    may see of the event, which is allowed (and filtered, not checked here).
    """
    if access["public"]:
        return False
    relation = caller.relation if targets_event_a(path) else caller.unscoped_relation
    grants = access["allowed"].get(relation)
    if grants is None:
        return True
    if grants in ("own office", "self"):
        return "{registration_id}" in path
    return False


# -- requests built from the documents --------------------------------------------------


def _resolve(document: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        found: Any = document
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            found = found[part]
        schema = found
    return schema


def minimal(document: Mapping[str, Any], schema: Mapping[str, Any], depth: int = 0) -> Any:
    """A small value valid for `schema` where that is easy (required fields only)."""
    schema = _resolve(document, schema)
    if depth > 6:
        return None
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            options = [o for o in schema[combined] if _resolve(document, o).get("type") != "null"]
            return minimal(document, options[0] if options else {}, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {
            name: minimal(document, props.get(name, {}), depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [minimal(document, schema.get("items", {}), depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "string":
        soon = datetime.now(UTC) + timedelta(days=30)
        by_format = {
            "email": "someone@example.com",
            "date-time": soon.isoformat(),
            "date": soon.date().isoformat(),
            "uri": "https://example.invalid/x",
            "uuid": str(uuid.uuid4()),
        }
        return by_format.get(str(schema.get("format")), "x" * int(schema.get("minLength", 1)))
    return {}


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    access: Mapping[str, Any]
    query: dict[str, Any]
    body: Any  # None: no request body

    @property
    def label(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"


def operations(documents: Mapping[str, Mapping[str, Any]]) -> list[Operation]:
    found: list[Operation] = []
    for service, document in documents.items():
        for path, item in document["paths"].items():
            if path in PLUMBING:
                continue
            for method, op in item.items():
                if method not in METHODS:
                    continue
                assert "x-access" in op, f"{service} {method} {path} declares no x-access"
                query = {
                    p["name"]: minimal(document, p.get("schema", {}))
                    for p in op.get("parameters", [])
                    if p.get("in") == "query" and p.get("required")
                }
                body = None
                if "requestBody" in op:
                    content = op["requestBody"].get("content", {})
                    schema = content.get("application/json", {}).get("schema", {})
                    body = minimal(document, schema)
                found.append(Operation(service, method, path, op["x-access"], query, body))
    return found


def path_values(world: World) -> dict[str, str]:
    """Event A's ids for the path parameters; a random one where A has none."""
    return {
        "event_id": world.event_a,
        "registration_id": world.south.registration_id,
        "request_id": world.request_id,
        "meeting_id": world.request_id,
        "endpoint_id": world.endpoint_id,
        "item_id": world.item_id,
        "co_organiser_id": world.co_organiser_north_id,
        "meeting_type": "Business2Cluster",
        "token": uuid.uuid4().hex,  # a signed link nobody issued
        "link_id": str(uuid.uuid4()),  # a sign-in link nobody asked for
        "fmt": "xlsx",  # exports: one of their formats
    }


def fill(path: str, values: Mapping[str, str]) -> str:
    filled = path
    for name, value in values.items():
        filled = filled.replace("{" + name + "}", value)
    assert "{" not in filled, f"{path}: a path parameter this test has no value for"
    return filled


# -- the tests ------------------------------------------------------------------------


async def test_positives_the_owners_see_their_data(live: Live) -> None:
    """The ids are right and the callers' keys work: the sweep's refusals mean something."""
    w, reg = live.world, live.urls["registration"]
    async with httpx.AsyncClient(timeout=30) as http:
        everyone = ok(
            await http.get(f"{reg}/api/events/{w.event_a}/registrations", headers=key(w.lead_a))
        )
        ids = {r["registration_id"] for r in everyone}
        assert {w.north.registration_id, w.south.registration_id} <= ids

        north_only = ok(
            await http.get(
                f"{reg}/api/events/{w.event_a}/registrations", headers=key(w.co_organiser_north)
            )
        )
        assert [r["registration_id"] for r in north_only] == [w.north.registration_id]

        south_for_lead = await http.get(
            f"{reg}/api/registrations/{w.south.registration_id}", headers=key(w.lead_a)
        )
        assert south_for_lead.status_code == 200
        own = await http.get(
            f"{reg}/api/registrations/{w.south.registration_id}", headers=key(w.south.api_key)
        )
        assert own.status_code == 200
        north_for_co = await http.get(
            f"{reg}/api/registrations/{w.north.registration_id}",
            headers=key(w.co_organiser_north),
        )
        assert north_for_co.status_code == 200

        request = await http.get(
            f"{live.urls['matching']}/api/meeting-requests/{w.request_id}",
            headers=key(w.south.api_key),
        )
        assert request.status_code == 200
        hooks = ok(
            await http.get(
                f"{live.urls['notification']}/api/events/{w.event_a}/webhooks",
                headers=key(w.lead_a),
            )
        )
        assert [h["id"] for h in hooks] == [w.endpoint_id]
        own_link = await http.get(
            f"{live.urls['reporting']}/api/events/{w.event_b}/dashboard",
            params={"token": w.dashboard_token_b},
        )
        assert own_link.status_code == 200, own_link.text


async def test_no_caller_reaches_event_a_without_rights(live: Live) -> None:
    ops = operations(live.documents)
    # Every service is in the sweep, with its routes (a broken document cannot pass).
    assert {op.service for op in ops} == set(SERVICES)
    assert len(ops) >= 60, [op.label for op in ops]

    values = path_values(live.world)
    wrong: list[str] = []
    checked = 0
    async with httpx.AsyncClient(timeout=30) as http:
        for op in ops:
            url = live.urls[op.service] + fill(op.path, values)
            for caller in callers(live.world):
                denied = forbidden(op.access, caller, op.path)
                link_only = "{token}" in op.path  # a signed link nobody issued
                if not denied and not link_only and not op.access["public"]:
                    continue  # allowed (and scoped): nothing to check here
                response = await http.request(
                    op.method,
                    url,
                    params=op.query,
                    json=op.body,
                    headers=key(caller.api_key) if caller.api_key else {},
                )
                checked += 1
                status = response.status_code
                said = f"{op.label} by {caller.name}: {status} {response.text[:200]}"
                if status >= 500:
                    wrong.append(f"server error: {said}")
                elif (denied or link_only) and response.is_success:
                    wrong.append(f"answered a caller it must refuse: {said}")
                elif denied:
                    expected = 401 if caller.api_key is None else 403
                    if status != expected:
                        wrong.append(f"expected {expected} before the body is read: {said}")
        # A signed link stands for a key only for its own event: B's dashboard link, or
        # a token nobody signed, opens nothing of A.
        for op in ops:
            if not op.access["signed_link"]:
                continue
            url = live.urls[op.service] + fill(op.path, values)
            for token in (live.world.dashboard_token_b, uuid.uuid4().hex):
                response = await http.request(op.method, url, params={"token": token})
                checked += 1
                said = f"{op.label}?token=... (not A's): {response.status_code}"
                if response.is_success or response.status_code >= 500:
                    wrong.append(f"a signed link of another event (or none) opened: {said}")
    assert checked >= 150, checked
    assert not wrong, "\n".join(wrong)
