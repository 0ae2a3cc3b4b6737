"""The access model at the HTTP edge: every route declares an `Action`, and its
request is authorised before anything else happens to it.

    router = AccessRouter(prefix="/api")

    @router.get("/events/{event_id}/meetings", openapi_extra=requires(Action.VIEW_ACTIVITY))
    async def meetings(event_id: str, grant: Granted) -> ...

`GuardedRoute` runs the check before FastAPI reads the body, so a caller without
rights gets 401 or 403 and learns nothing from a 422. A route without a declared
action cannot be built. The declaration is also written into the OpenAPI document
(`x-access`), with the security schemes, so generated clients authenticate and the
tenant-isolation test knows what each route allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.responses import Response

from shared.access.policy import (
    ADMIN,
    RULES,
    Action,
    Denied,
    Grant,
    Principal,
    RegistrationStatus,
    Role,
    Standing,
    Subject,
    decide,
    standing_of,
)
from shared.auth import digest, same_secret
from shared.problems import ProblemError, problem_response

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
BEARER = HTTPBearer(auto_error=False, scheme_name="Bearer")

# Control characters (tab, newline and carriage return aside) never belong in an id,
# a query or a text field; PostgreSQL refuses NUL outright.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Target:
    """What a request concerns: an event and, possibly, some of its registrations."""

    event_id: str | None
    registrations: tuple[str, ...] = ()


# Finds a request's target from its path parameters and caller; None: not found.
Resolver = Callable[
    [asyncpg.Connection, Mapping[str, str], Principal | None], Awaitable[Target | None]
]


async def from_path(
    conn: asyncpg.Connection, path: Mapping[str, str], principal: Principal | None
) -> Target | None:
    """The default target: `event_id` and `registration_id` path parameters, when present."""
    event_id = path.get("event_id")
    registration_id = path.get("registration_id")
    if registration_id is not None:
        owner = await conn.fetchval(
            "SELECT event_id FROM access_registrations WHERE registration_id = $1",
            registration_id,
        )
        if owner is None or (event_id is not None and owner != event_id):
            return None
        return Target(owner, (registration_id,))
    if event_id is not None:
        known = await conn.fetchval("SELECT 1 FROM access_events WHERE event_id = $1", event_id)
        return Target(event_id) if known else None
    return Target(None)


async def own_registration(
    conn: asyncpg.Connection, path: Mapping[str, str], principal: Principal | None
) -> Target | None:
    """`/me/...` routes: the caller's own registration (only an organisation has one)."""
    if principal is None or principal.role is not Role.ORGANISATION:
        return Target(None)
    return await from_path(conn, {"registration_id": principal.id}, principal)


# The resolvers `authorise` does in the same statement as the key and the standing.
_IN_ONE_STATEMENT: frozenset[Resolver] = frozenset({from_path, own_registration})


@dataclass(frozen=True)
class RowTarget:
    """A resolver for a route whose target is one row of the service's own table, named
    by a path parameter (e.g. a meeting request: its event and its two participants):
    `authorise` reads the row in the same statement as the key and the standing (one
    round trip rather than three); called as a resolver, it reads the row alone.

    `table`, `key` and the columns are SQL names written by the service (never input)."""

    table: str
    key: str  # the path parameter, and the column it names the row by
    event_column: str
    registration_columns: tuple[str, ...]

    @cached_property
    def at_once_sql(self) -> str:
        """`_ROW_AT_ONCE` with this row's read (made once, not per request)."""
        return _ROW_AT_ONCE.replace("{row}", self.row_sql.replace("$1", "$2"))

    @property
    def row_sql(self) -> str:
        """The row's event and registrations ($1: the path parameter's value)."""
        registrations = ", ".join(self.registration_columns)
        return (
            f"SELECT {self.event_column} AS event_id, ARRAY[{registrations}]::text[]"
            f" AS registrations FROM {self.table} WHERE {self.key} = $1"
        )

    async def __call__(
        self, conn: asyncpg.Connection, path: Mapping[str, str], principal: Principal | None
    ) -> Target | None:
        row = await conn.fetchrow(self.row_sql, path[self.key])
        if row is None:
            return None
        return Target(row["event_id"], tuple(row["registrations"]))


# A signed link accepted instead of a key (e.g. the dashboard's): the grant it carries,
# None when the request has no such link; raises a problem when the link is not valid.
LinkOpener = Callable[[Request], Awaitable[Grant | None]]


@dataclass(frozen=True)
class Requirement:
    action: Action
    target: Resolver = from_path
    link: LinkOpener | None = None

    def describe(self) -> dict[str, Any]:
        rule = RULES[self.action]
        return {
            "action": self.action.name,
            "summary": self.action.value,
            "public": rule.public,
            "signed_link": self.link is not None,
            "allowed": {relation.name: grants.value for relation, grants in rule.by.items()},
        }


def requires(
    action: Action, *, target: Resolver = from_path, link: LinkOpener | None = None
) -> dict[str, Any]:
    """A route's declaration, passed as `openapi_extra=` (see the module's docstring)."""
    return {"x-access": Requirement(action, target, link)}


def presented_key(request: Request) -> str | None:
    """The key sent in `X-API-Key` or `Authorization: Bearer`, if any."""
    authorization = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or (
        authorization[7:] if authorization.lower().startswith("bearer ") else None
    )
    return key or None


def unknown_key() -> ProblemError:
    return ProblemError(401, "Unknown API key", "the API key is not valid (or was revoked)")


async def authorise(request: Request, requirement: Requirement) -> Grant:
    """Allow the request under the policy, or raise a 401/403/404 problem.

    Nothing is cached: a key revoked (or a registration decided) by a committed
    transaction counts from the next request on. A keyed request costs one statement
    for the routes whose target is in their path (`from_path`, `own_registration`) or
    one row of a table (`RowTarget`), three for those with a resolver of their own; an
    anonymous one costs none.
    """
    if requirement.link is not None:
        by_link = await requirement.link(request)
        if by_link is not None:
            return by_link
    key = presented_key(request)
    try:
        if key is None:
            return decide(requirement.action, None, standing_of(None, **_NOBODY))
        runtime = request.app.state.runtime
        admin = same_secret(key, runtime.settings.platform_admin_key)
        async with runtime.pool.acquire() as conn:
            if isinstance(requirement.target, RowTarget):
                principal, target, standing, subjects = await _row_at_once(
                    conn,
                    None if admin else digest(key),
                    requirement.target,
                    request.path_params,
                    where=request.url.path,
                )
            elif requirement.target in _IN_ONE_STATEMENT:
                principal, target, standing, subjects = await _all_at_once(
                    conn,
                    None if admin else digest(key),
                    request.path_params,
                    own=requirement.target is own_registration,
                    where=request.url.path,
                )
            else:
                principal = ADMIN if admin else await _principal(conn, digest(key))
                found = await requirement.target(conn, request.path_params, principal)
                if found is None:
                    raise ProblemError(404, "Not found", f"nothing at {request.url.path}")
                target = found
                standing, subjects = await _standing(conn, principal, target)
        request.state.target = target  # for the route (`target_of`)
        return decide(requirement.action, principal, standing, subjects)
    except Denied as denied:
        title = "API key required" if denied.status == 401 else "Forbidden"
        raise ProblemError(denied.status, title, denied.reason) from denied


def target_of(request: Request) -> Target | None:
    """What the guard found the request concerns, for a keyed request it allowed (None
    for one allowed by a signed link or without a key): read before the route's
    transaction, so only what never changes (e.g. a meeting request's two parties) may
    be taken from it."""
    target: Target | None = getattr(request.state, "target", None)
    return target


def anonymous_grant(requirement: Requirement) -> Grant | None:
    """What `authorise` grants a request that presents no key and no signed link, for a
    requirement without a link; None where it would refuse (or needs the link's
    opener). No I/O: for `shared.direct_routes`."""
    if requirement.link is not None:
        return None
    try:
        return decide(requirement.action, None, standing_of(None, **_NOBODY))
    except Denied:
        return None


# A key counts until it is revoked or, for one that expires (sign-in by e-mail), until then.
_LIVE = "NOT revoked AND (expires_at IS NULL OR expires_at > now())"


async def _principal(conn: asyncpg.Connection, key_digest: str) -> Principal:
    row = await conn.fetchrow(
        f"SELECT role, subject_id FROM api_keys WHERE key_digest = $1 AND {_LIVE}", key_digest
    )
    if row is None:
        raise unknown_key()
    return Principal(Role(row["role"]), row["subject_id"])


_NOBODY: dict[str, Any] = {"lead_organiser": None, "co_organiser_office": None, "own_status": None}

# The caller ($1: its key's digest, null for the admin), the target named by the path
# ($2 event id, $3 registration id; with $4, the caller's own registration instead) and
# the caller's standing in the target's event: `from_path`, `own_registration` and
# `_standing` in one round trip.
_AT_ONCE = (
    "WITH caller AS ("
    f"  SELECT role, subject_id FROM api_keys WHERE key_digest = $1 AND {_LIVE}),"
    " asked AS ("
    "  SELECT CASE WHEN $4 THEN (SELECT subject_id FROM caller WHERE role = 'organisation')"
    "  ELSE $3::text END AS registration_id),"
    " target AS ("
    "  SELECT asked.registration_id, CASE WHEN asked.registration_id IS NOT NULL"
    "   THEN (SELECT r.event_id FROM access_registrations r"
    "     WHERE r.registration_id = asked.registration_id)"
    "   ELSE (SELECT e.event_id FROM access_events e WHERE e.event_id = $2::text)"
    "  END AS event_id FROM asked)"
    " SELECT (SELECT role FROM caller) AS role, (SELECT subject_id FROM caller) AS subject_id,"
    " target.registration_id, target.event_id,"
    " (SELECT organiser_id FROM access_events WHERE event_id = target.event_id) AS lead,"
    " (SELECT office_id FROM access_co_organisers WHERE event_id = target.event_id"
    "   AND co_organiser_id = (SELECT subject_id FROM caller) AND NOT removed) AS office,"
    " (SELECT status FROM access_registrations WHERE event_id = target.event_id"
    "   AND registration_id = (SELECT subject_id FROM caller)) AS own_status,"
    " (SELECT office_id FROM access_registrations"
    "   WHERE registration_id = target.registration_id) AS subject_office"
    " FROM target"
)


async def _all_at_once(
    conn: asyncpg.Connection,
    key_digest: str | None,
    path: Mapping[str, str],
    *,
    own: bool,
    where: str,
) -> tuple[Principal, Target, Standing, tuple[Subject, ...]]:
    """What `_principal`, `from_path` (or `own_registration`) and `_standing` find."""
    event_id = None if own else path.get("event_id")
    row = await conn.fetchrow(
        _AT_ONCE, key_digest, event_id, None if own else path.get("registration_id"), own
    )
    assert row is not None
    principal = _caller(key_digest, row)
    registration_id = row["registration_id"]
    if registration_id is not None:
        owner = row["event_id"]
        if owner is None or (event_id is not None and owner != event_id):
            raise ProblemError(404, "Not found", f"nothing at {where}")
        target = Target(owner, (registration_id,))
        subjects: tuple[Subject, ...] = (Subject(registration_id, row["subject_office"]),)
    elif event_id is not None:
        if row["event_id"] is None:
            raise ProblemError(404, "Not found", f"nothing at {where}")
        target, subjects = Target(event_id), ()
    else:
        return principal, Target(None), standing_of(principal, **_NOBODY), ()
    return principal, target, _standing_from(principal, row), subjects


# `_principal`, a `RowTarget`'s row and `_standing` in one round trip: $1 the key's
# digest (null for the admin), $2 the path parameter naming the row.
_ROW_AT_ONCE = (
    "WITH caller AS ("
    f"  SELECT role, subject_id FROM api_keys WHERE key_digest = $1 AND {_LIVE}),"
    " target AS ({row})"
    " SELECT (SELECT role FROM caller) AS role, (SELECT subject_id FROM caller) AS subject_id,"
    " (SELECT count(*) FROM target) AS found,"
    " (SELECT event_id FROM target) AS event_id,"
    " (SELECT registrations FROM target) AS registrations,"
    " (SELECT organiser_id FROM access_events"
    "   WHERE event_id = (SELECT event_id FROM target)) AS lead,"
    " (SELECT office_id FROM access_co_organisers WHERE event_id = (SELECT event_id FROM target)"
    "   AND co_organiser_id = (SELECT subject_id FROM caller) AND NOT removed) AS office,"
    " (SELECT status FROM access_registrations WHERE event_id = (SELECT event_id FROM target)"
    "   AND registration_id = (SELECT subject_id FROM caller)) AS own_status,"
    " (SELECT coalesce(json_agg(json_build_array(registration_id, office_id)), '[]')"
    "   FROM access_registrations"
    # (an array-valued expression: `ANY (subquery)` would compare with its rows)
    "   WHERE registration_id = ANY(coalesce((SELECT registrations FROM target),"
    "   '{}'::text[])))::text AS subjects"
)


async def _row_at_once(
    conn: asyncpg.Connection,
    key_digest: str | None,
    resolver: RowTarget,
    path: Mapping[str, str],
    *,
    where: str,
) -> tuple[Principal, Target, Standing, tuple[Subject, ...]]:
    """What `_principal`, `resolver` and `_standing` find, in their order: an unknown key
    is a 401 before a missing row is a 404."""
    row = await conn.fetchrow(resolver.at_once_sql, key_digest, path[resolver.key])
    assert row is not None
    principal = _caller(key_digest, row)
    if row["found"] != 1:  # a key column names one row at most
        raise ProblemError(404, "Not found", f"nothing at {where}")
    target = Target(row["event_id"], tuple(row["registrations"]))
    subjects = tuple(Subject(rid, office) for rid, office in json.loads(row["subjects"]))
    if target.event_id is None:
        return principal, target, standing_of(principal, **_NOBODY), subjects
    return principal, target, _standing_from(principal, row), subjects


def _caller(key_digest: str | None, row: asyncpg.Record) -> Principal:
    """The principal of a combined read's `role` and `subject_id` (none: the admin)."""
    if key_digest is None:
        return ADMIN
    if row["role"] is None:
        raise unknown_key()
    return Principal(Role(row["role"]), row["subject_id"])


def _standing_from(principal: Principal, row: asyncpg.Record) -> Standing:
    office = row["office"] if principal.role is Role.CO_ORGANISER else None
    found = row["own_status"] if principal.role is Role.ORGANISATION else None
    return standing_of(
        principal,
        lead_organiser=row["lead"],
        co_organiser_office=office,
        own_status=RegistrationStatus(found) if found is not None else None,
    )


# The caller's standing in the event and the subjects' offices, in one round trip.
_STANDING = (
    "SELECT (SELECT organiser_id FROM access_events WHERE event_id = $1) AS lead,"
    " (SELECT office_id FROM access_co_organisers"
    "   WHERE co_organiser_id = $2 AND event_id = $1 AND NOT removed) AS office,"
    " (SELECT status FROM access_registrations"
    "   WHERE registration_id = $2 AND event_id = $1) AS own_status,"
    " (SELECT coalesce(json_agg(json_build_array(registration_id, office_id)), '[]')"
    "   FROM access_registrations WHERE registration_id = ANY($3::text[]))::text AS subjects"
)


async def _standing(
    conn: asyncpg.Connection, principal: Principal, target: Target
) -> tuple[Standing, tuple[Subject, ...]]:
    row = await conn.fetchrow(_STANDING, target.event_id, principal.id, list(target.registrations))
    assert row is not None
    subjects = tuple(Subject(rid, office) for rid, office in json.loads(row["subjects"]))
    if target.event_id is None:
        return standing_of(principal, **_NOBODY), subjects
    return _standing_from(principal, row), subjects


def _check_parameters(request: Request) -> None:
    for name, value in request.path_params.items():
        if isinstance(value, str) and CONTROL.search(value):
            raise ProblemError(404, "Not found", f"{name}: no such resource")
    for name, value in request.query_params.multi_items():
        if CONTROL.search(value) or CONTROL.search(name):
            raise ProblemError(
                422,
                "Invalid request",
                f"{name}: control characters are not allowed",
                errors=[{"field": name, "reason": "control characters are not allowed"}],
            )


# The security schemes of every guarded route, written into the OpenAPI document only:
# declared as FastAPI security dependencies they would run on every request (three
# dependencies solved, a fifth of a millisecond) after `GuardedRoute` has already
# checked the key. `create_app` adds their definitions to the document's components.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
    for scheme in (API_KEY, BEARER)
}
_SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]


class GuardedRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        extra = dict(kwargs.pop("openapi_extra", None) or {})
        requirement = extra.pop("x-access", None)
        if not isinstance(requirement, Requirement):
            raise TypeError(f"route {path} declares no access requirement (openapi_extra=requires)")
        self.requirement = requirement
        extra["x-access"] = requirement.describe()
        # The key is optional ({}) where the rule is public.
        extra["security"] = [*_SECURITY, {}] if RULES[requirement.action].public else _SECURITY
        super().__init__(path, endpoint, openapi_extra=extra, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        requirement = self.requirement

        async def guarded(request: Request) -> Response:
            try:
                _check_parameters(request)
                request.state.grant = await authorise(request, requirement)
            except ProblemError as problem:
                return problem_response(request, problem)
            return await handle(request)

        return guarded


class AccessRouter(APIRouter):
    """A router whose every route is guarded by the access model."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(route_class=GuardedRoute, **kwargs)


# Coroutines, though they do no I/O: FastAPI runs a plain function dependency in a
# worker thread, a thread hand-off per request for reading an attribute.
async def granted(request: Request) -> Grant:
    grant: Grant = request.state.grant
    return grant


async def caller(request: Request) -> Principal:
    """The authenticated caller of a route whose rule needs a key."""
    grant: Grant = request.state.grant
    assert grant.principal is not None
    return grant.principal


async def maybe_caller(request: Request) -> Principal | None:
    grant: Grant = request.state.grant
    return grant.principal


Granted = Annotated[Grant, Depends(granted)]
Caller = Annotated[Principal, Depends(caller)]
MaybeCaller = Annotated[Principal | None, Depends(maybe_caller)]
