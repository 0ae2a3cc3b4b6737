"""The access guard (`shared.access.guard.authorise`) against the real server: what a
keyed request costs (one statement), and that nothing about a key is kept between
requests, so a revoked key fails on the very next one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request

from shared.access import projection
from shared.access.guard import (
    AccessRouter,
    Granted,
    RowTarget,
    Target,
    own_registration,
    requires,
    target_of,
)
from shared.access.policy import Action, Principal, Role
from shared.auth import digest
from shared.contracts.registration import CoOrganiserAdded, CoOrganiserRemoved, OrganiserRegistered
from shared.db import create_pool
from tests.integration.support import FreshDatabase

pytestmark = pytest.mark.integration

ADMIN_KEY = "guard-test-admin-key"


async def first_of_event(
    conn: asyncpg.Connection, path: Mapping[str, str], principal: Principal | None
) -> Target | None:
    """A resolver of a route's own (not one `authorise` folds into its statement)."""
    found = await conn.fetchval(
        "SELECT registration_id FROM access_registrations WHERE event_id = $1"
        " ORDER BY registration_id LIMIT 1",
        path["event_id"],
    )
    return Target(path["event_id"], (found,)) if found else None


# A row of a service's own table that concerns an event and two registrations (as a
# meeting request does), and the same lookup as a resolver `authorise` cannot fold.
THING = RowTarget(
    table="things", key="thing_id", event_column="event_id", registration_columns=("a", "b")
)


async def thing_apart(
    conn: asyncpg.Connection, path: Mapping[str, str], principal: Principal | None
) -> Target | None:
    return await THING(conn, path, principal)


def guarded_app(pool: asyncpg.Pool) -> FastAPI:
    router = AccessRouter(prefix="/api")

    def answer(grant: Any) -> dict[str, Any]:
        return {"relation": grant.relation.value, "scope": grant.scope.value}

    @router.get("/events/{event_id}/activity", openapi_extra=requires(Action.VIEW_ACTIVITY))
    async def activity(event_id: str, grant: Granted) -> dict[str, Any]:
        return answer(grant)

    @router.get("/events/{event_id}", openapi_extra=requires(Action.VIEW_PUBLIC))
    async def public(event_id: str, grant: Granted) -> dict[str, Any]:
        return answer(grant)

    @router.get(
        "/events/{event_id}/registrations/{registration_id}",
        openapi_extra=requires(Action.VIEW_REGISTRATION),
    )
    async def registration(event_id: str, registration_id: str, grant: Granted) -> dict[str, Any]:
        return answer(grant)

    @router.get("/me", openapi_extra=requires(Action.ACT_AS_PARTICIPANT, target=own_registration))
    async def me(grant: Granted) -> dict[str, Any]:
        return answer(grant)

    @router.get(
        "/events/{event_id}/first",
        openapi_extra=requires(Action.VIEW_REGISTRATION, target=first_of_event),
    )
    async def first(event_id: str, grant: Granted) -> dict[str, Any]:
        return answer(grant)

    @router.get("/things/{thing_id}", openapi_extra=requires(Action.VIEW_ACTIVITY, target=THING))
    async def thing(request: Request, thing_id: str, grant: Granted) -> dict[str, Any]:
        target = target_of(request)
        assert target is not None and len(target.registrations) == 2
        return answer(grant)

    @router.get(
        "/things/{thing_id}/parties", openapi_extra=requires(Action.VIEW_ACTIVITY, target=THING)
    )
    async def parties(request: Request, thing_id: str) -> list[str]:
        target = target_of(request)
        return [] if target is None else list(target.registrations)

    @router.get(
        "/apart/{thing_id}", openapi_extra=requires(Action.VIEW_ACTIVITY, target=thing_apart)
    )
    async def apart(thing_id: str, grant: Granted) -> dict[str, Any]:
        return answer(grant)

    app = FastAPI()
    app.include_router(router)
    app.state.runtime = SimpleNamespace(
        pool=pool, settings=SimpleNamespace(platform_admin_key=ADMIN_KEY)
    )
    return app


@dataclass
class World:
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    statements: list[str]  # every statement the guard's pool sent, in order
    event_id: str
    other_event_id: str
    organiser: dict[str, str]
    co_organiser: dict[str, str]
    co_organiser_id: str
    registration_id: str
    registration: dict[str, str]  # the registration's own key
    other_registration_id: str

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        self.statements.clear()
        return await self.http.get(path, headers=dict(headers or {}))


@pytest.fixture
async def world(database: FreshDatabase) -> AsyncIterator[World]:
    statements: list[str] = []

    async def count(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda logged: statements.append(logged.query))

    pool = await create_pool(database.dsn, min_size=1, max_size=2, init=count)
    keys = {name: f"{name}-{uuid.uuid4().hex}" for name in ("org", "coorg", "reg", "other")}
    organiser_id, co_organiser_id = str(uuid.uuid4()), str(uuid.uuid4())
    event_id, other_event_id = str(uuid.uuid4()), str(uuid.uuid4())
    registration_id, other_registration_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with database.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "CREATE TABLE things (thing_id text PRIMARY KEY, event_id text, a text, b text)"
        )
        await conn.executemany(
            "INSERT INTO things VALUES ($1, $2, $3, $4)",
            [
                ("mine", event_id, registration_id, "someone"),
                ("theirs", event_id, "someone", "someone else"),
                ("elsewhere", other_event_id, other_registration_id, "someone"),
            ],
        )
        await projection.apply(
            conn,
            OrganiserRegistered(
                organiser_id=organiser_id, name="Org", api_key_digest=digest(keys["org"])
            ),
        )
        await conn.executemany(
            "INSERT INTO access_events (event_id, organiser_id) VALUES ($1, $2)",
            [(event_id, organiser_id), (other_event_id, "someone else")],
        )
        await conn.executemany(
            "INSERT INTO access_registrations (registration_id, event_id, status, office_id)"
            " VALUES ($1, $2, $3, $4)",
            [
                (registration_id, event_id, "approved", "office-a"),
                (other_registration_id, other_event_id, "approved", None),
            ],
        )
        await projection.record_key(conn, digest(keys["reg"]), Role.ORGANISATION, registration_id)
        await projection.apply(
            conn,
            CoOrganiserAdded(
                co_organiser_id=co_organiser_id,
                event_id=event_id,
                office_id="office-a",
                name="Office A",
                api_key_digest=digest(keys["coorg"]),
            ),
        )
    transport = httpx.ASGITransport(app=guarded_app(pool))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://guard") as http:
            yield World(
                http,
                pool,
                statements,
                event_id,
                other_event_id,
                {"X-API-Key": keys["org"]},
                {"Authorization": f"Bearer {keys['coorg']}"},
                co_organiser_id,
                registration_id,
                {"X-API-Key": keys["reg"]},
                other_registration_id,
            )
    finally:
        await pool.close()


async def test_a_keyed_request_costs_one_statement_and_an_anonymous_one_none(
    world: World,
) -> None:
    answer = await world.get(f"/api/events/{world.event_id}/activity", world.organiser)
    assert answer.status_code == 200, answer.text
    assert answer.json()["relation"] == "lead organiser"
    assert len(world.statements) == 1, world.statements

    answer = await world.get(
        f"/api/events/{world.event_id}/registrations/{world.registration_id}",
        world.co_organiser,
    )
    assert answer.json() == {
        "relation": "co-organiser",
        "scope": "its support office's participants",
    }
    assert len(world.statements) == 1, world.statements

    answer = await world.get(f"/api/events/{world.event_id}/activity", {"X-API-Key": ADMIN_KEY})
    assert answer.json()["relation"] == "platform admin"
    assert len(world.statements) == 1, world.statements  # is there such an event?

    answer = await world.get(f"/api/events/{world.event_id}")
    assert answer.json()["relation"] == "anonymous"
    assert world.statements == []


async def test_a_removed_co_organisers_key_fails_on_the_next_request(world: World) -> None:
    path = f"/api/events/{world.event_id}/activity"
    assert (await world.get(path, world.co_organiser)).status_code == 200
    async with world.pool.acquire() as conn, conn.transaction():
        removed = CoOrganiserRemoved(co_organiser_id=world.co_organiser_id, event_id=world.event_id)
        await projection.apply(conn, removed)
    answer = await world.get(path, world.co_organiser)
    assert answer.status_code == 401, answer.text
    assert answer.json()["title"] == "Unknown API key"


async def test_an_unknown_key_is_refused_before_anything_is_looked_for(world: World) -> None:
    answer = await world.get(f"/api/events/{uuid.uuid4()}/activity", {"X-API-Key": "forged"})
    assert answer.status_code == 401
    answer = await world.get(f"/api/events/{uuid.uuid4()}/activity", world.organiser)
    assert answer.status_code == 404


async def test_the_target_is_what_the_path_names_and_nothing_else(world: World) -> None:
    # A registration of another event, reached through this event's path: not found.
    answer = await world.get(
        f"/api/events/{world.event_id}/registrations/{world.other_registration_id}",
        world.organiser,
    )
    assert answer.status_code == 404
    # Its own registration a participant may read; another's it may not.
    own = f"/api/events/{world.event_id}/registrations/{world.registration_id}"
    assert (await world.get(own, world.registration)).json()["scope"] == "its own registration"
    answer = await world.get(
        f"/api/events/{world.other_event_id}/registrations/{world.other_registration_id}",
        world.registration,
    )
    assert answer.status_code == 403
    # /me: the caller's own registration; an organiser has none there.
    me = await world.get("/api/me", world.registration)
    assert me.json()["relation"] == "approved participant"
    assert len(world.statements) == 1
    assert (await world.get("/api/me", world.organiser)).status_code == 403


async def test_a_route_with_a_resolver_of_its_own_still_gets_the_standing(world: World) -> None:
    answer = await world.get(f"/api/events/{world.event_id}/first", world.co_organiser)
    assert answer.json()["relation"] == "co-organiser", answer.text
    assert len(world.statements) == 3  # the key, the route's resolver, the standing
    answer = await world.get(f"/api/events/{world.other_event_id}/first", world.co_organiser)
    assert answer.status_code == 403


async def test_a_row_target_is_read_with_the_key_and_the_standing_in_one_statement(
    world: World,
) -> None:
    """`RowTarget`: the same answers as the same lookup done apart (three statements),
    in one; an unknown key is refused before a missing row is looked for."""
    callers = {
        "organiser": world.organiser,
        "co-organiser": world.co_organiser,
        "participant": world.registration,
        "admin": {"X-API-Key": ADMIN_KEY},
        "forged": {"X-API-Key": "forged"},
    }
    for thing in ("mine", "theirs", "elsewhere", "missing"):
        for who, headers in callers.items():
            apart = await world.get(f"/api/apart/{thing}", headers)
            together = await world.get(f"/api/things/{thing}", headers)
            assert len(world.statements) == 1, (thing, who, world.statements)
            assert together.status_code == apart.status_code, (thing, who, together.text)
            key = "relation" if together.status_code == 200 else "title"
            assert together.json()[key] == apart.json()[key], (thing, who)
            if key == "relation":
                assert together.json() == apart.json(), (thing, who)
    seen = await world.get("/api/things/mine", world.registration)
    assert seen.json() == {"relation": "approved participant", "scope": "its own registration"}
    assert (await world.get("/api/things/missing", {"X-API-Key": "forged"})).status_code == 401
    assert (await world.get("/api/things/missing", world.organiser)).status_code == 404
    # The route is told what the guard read (a meeting request's parties, which never change).
    parties = await world.get("/api/things/mine/parties", world.organiser)
    assert parties.json() == [world.registration_id, "someone"]
