"""Signing in by e-mail: the routes and their handlers (the rules: `sign_in_rules`).

1. `POST /api/sign-in-links {email}` (anyone): for each registration with a representative
   at that address that may sign in, a `SignInLinkRequested` on its stream. The answer is
   the same whether the address is registered or not; the rate limit counts every address.
2. Notification consumes the event and asks `GET /api/sign-in-links/{link_id}/message`
   (admin key) for the address and the signed link, which is never stored: it is signed
   again from the event's facts (`shared.links`, purpose `sign-in`), the same every time.
3. `POST /api/sign-in-links/redeem {token}` (the token is the credential): once, before it
   expires, a `SignedInByLink` with a new key for the organisation that expires with the
   portal's session; the portal keeps it in its session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import EmailStr, Field

from services.registration import addresses, handlers, sign_in_rules
from services.registration.sign_in_rules import PURPOSE, SignInState
from shared import crypto, eventstore, links
from shared.access.guard import AccessRouter, requires
from shared.access.policy import Action
from shared.api import Granted, run_command
from shared.auth import new_api_key
from shared.bodies import RequestBody
from shared.errors import Conflict, NotFound, RuleViolation, TooManyRequests
from shared.runtime import runtime_of
from shared.settings import RegistrationSettings

router = AccessRouter(prefix="/api")

ANSWER = (
    "If the address belongs to a registration, a sign-in link is on its way to it."
    " It works once, for 20 minutes."
)


class SignInRequest(RequestBody):
    email: EmailStr


class Redemption(RequestBody):
    token: str = Field(min_length=10, max_length=500)


def _secret(request: Request) -> str:
    settings = runtime_of(request).settings
    assert isinstance(settings, RegistrationSettings)
    return settings.registration_link_secret


def address_digest(secret: str, address: str) -> str:
    """The rate limit's name for an address: an HMAC, so the table holds no addresses."""
    return hmac.new(
        secret.encode(), b"sign-in-address\0" + address.encode(), hashlib.sha256
    ).hexdigest()


def sign(
    secret: str, registration_id: str, link_id: str, issued: datetime, expires: datetime
) -> str:
    """The link's token: the same for the same facts (nothing to store)."""
    return links.sign_link(
        secret, PURPOSE, registration_id, link_id, issued_at=issued, lifetime=expires - issued
    )


async def _load(conn: asyncpg.Connection, registration_id: str) -> SignInState:
    stream = f"registration-{registration_id}"
    return await eventstore.load_into(conn, stream, handlers.PAYLOADS, SignInState())


async def request_links(
    conn: asyncpg.Connection, secret: str, email: str, correlation_id: str | None
) -> dict[str, Any]:
    address = sign_in_rules.normalised(email)
    now = links.now_ms()
    digest = address_digest(secret, address)
    await conn.execute(
        "DELETE FROM sign_in_requests WHERE requested_at < $1", now - sign_in_rules.REQUEST_WINDOW
    )
    recent = await conn.fetchval(
        "SELECT count(*) FROM sign_in_requests WHERE address_digest = $1", digest
    )
    if sign_in_rules.too_many(recent):
        raise TooManyRequests("email", "too many sign-in links asked for lately; try again later")
    await conn.execute(
        "INSERT INTO sign_in_requests (address_digest, requested_at) VALUES ($1, $2)", digest, now
    )
    # Every registration whose representatives include the address, by the index of
    # their addresses' HMACs (erased ones have no rows there and no key).
    for row in await addresses.registrations_at(conn, address):
        state = await _load(conn, row["registration_id"])
        sealed = crypto.seal(row["key"], address, subject=row["registration_id"])
        requested = sign_in_rules.request_link(
            state, link_id=str(uuid.uuid4()), address_encrypted=sealed, now=now
        )
        if requested is None:
            continue
        try:
            # A savepoint: a registration changed meanwhile gets no link this time, and the
            # answer stays the same (a refusal would tell that the address is registered).
            async with conn.transaction():
                await handlers.record(
                    conn,
                    f"registration-{state.registration_id}",
                    state.version,
                    [requested],
                    key=state.event_id,
                    correlation_id=correlation_id,
                )
        except eventstore.ConcurrencyConflict:
            continue
    return {"detail": ANSWER}


async def message(conn: asyncpg.Connection, secret: str, link_id: str) -> dict[str, Any]:
    """What notification sends: the address and the link's token, while the link works."""
    row = await conn.fetchrow("SELECT * FROM sign_in_links WHERE link_id = $1", link_id)
    if row is None:
        raise NotFound("sign-in link", link_id)
    if row["used_at"] is not None:
        raise Conflict("link_id", "was used already")
    if row["expires_at"] <= links.now_ms():
        raise Conflict("link_id", "has expired")
    key = await conn.fetchval(
        "SELECT key FROM subject_keys WHERE subject_id = $1", row["registration_id"]
    )
    try:
        address = crypto.open_sealed(key, row["address_encrypted"], subject=row["registration_id"])
    except crypto.KeyErased as exc:
        raise Conflict("link_id", "the registration's personal data was erased") from exc
    token = sign(secret, row["registration_id"], link_id, row["issued_at"], row["expires_at"])
    return {
        "link_id": link_id,
        "registration_id": row["registration_id"],
        "event_id": row["event_id"],
        "email": address,
        "token": token,
        "expires_at": row["expires_at"].isoformat(),
    }


async def redeem(
    conn: asyncpg.Connection, secret: str, token: str, correlation_id: str | None
) -> dict[str, Any]:
    link = links.read_link(secret, PURPOSE, token)
    if link is None or len(link.parts) != 2:
        raise RuleViolation("token", "is not a genuine sign-in link")
    registration_id, link_id = link.parts
    now = links.now_ms()
    if link.expired(now):
        raise Conflict("token", "has expired: ask for a new link")
    state = await _load(conn, registration_id)
    api_key, key_digest = new_api_key("reg")
    used = sign_in_rules.use_link(state, link_id=link_id, api_key_digest=key_digest, now=now)
    try:
        await handlers.record(
            conn,
            f"registration-{registration_id}",
            state.version,
            [used],
            key=state.event_id,
            correlation_id=correlation_id,
        )
    except eventstore.ConcurrencyConflict as exc:
        raise Conflict("token", "was used already: ask for a new link") from exc
    name = await conn.fetchval(
        "SELECT name FROM registrations WHERE registration_id = $1", registration_id
    )
    return {
        "api_key": api_key,
        "role": "organisation",
        "registration_id": registration_id,
        "event_id": state.event_id,
        "name": name or "",
        "expires_at": used.key_expires_at.isoformat(),
    }


# -- routes ------------------------------------------------------------------------------


@router.post(
    "/sign-in-links",
    status_code=202,
    summary="Ask for a sign-in link by e-mail; the same answer whether the address is"
    " registered or not (at most 3 per address in 15 minutes)",
    openapi_extra=requires(Action.REQUEST_SIGN_IN_LINK),
)
async def ask(request: Request, body: SignInRequest, grant: Granted) -> JSONResponse:
    secret = _secret(request)
    return await run_command(
        request,
        grant.principal,
        None,
        None,
        lambda conn, cid: request_links(conn, secret, str(body.email), cid),
        202,
    )


@router.get(
    "/sign-in-links/{link_id}/message",
    summary="A sign-in link's address and token, to e-mail it (the notification service)",
    openapi_extra=requires(Action.WRITE_SIGN_IN_MESSAGE),
)
async def get_message(request: Request, link_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return await message(conn, _secret(request), link_id)


@router.post(
    "/sign-in-links/redeem",
    summary="Use a sign-in link (once, before it expires): a key for the organisation that"
    " expires with the portal's session",
    openapi_extra=requires(Action.FOLLOW_LINK),
)
async def use(request: Request, body: Redemption, grant: Granted) -> JSONResponse:
    secret = _secret(request)
    return await run_command(
        request,
        grant.principal,
        None,
        None,
        lambda conn, cid: redeem(conn, secret, body.token, cid),
    )
