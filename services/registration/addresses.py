"""The index of representatives' addresses that signing in by e-mail looks up.

A row per registration and address: an HMAC of the normalised address, keyed with the
server's sign-in secret (`registration_link_secret`), so the table holds no addresses
and a lookup is one indexed query instead of opening every registration's sealed
contacts. Kept by registration's projection: a registration's rows are replaced when it
registers or updates its profile (the sealed representatives are opened with its key)
and deleted when its personal data is erased (the key is gone then too).

Why not an HMAC in the events: it would outlive erasure on the topic and in every
consumer, an identifier of the person that crypto-shredding could not reach.

Changing the secret invalidates the index: `python -m services.registration.rebuild
--switch` computes it again. Registrations from before the index get their rows when the
service starts (`index_missing`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from services.registration.sign_in_rules import normalised
from shared import crypto
from shared.contracts.base import EventPayload
from shared.contracts.registration import PersonalDataErased, ProfileUpdated, RegisteredBase
from shared.settings import RegistrationSettings

_secret: str | None = None


def configure(secret: str) -> None:
    """The service's sign-in secret (bootstrap and the rebuild set it from their settings)."""
    global _secret
    _secret = secret


def secret() -> str:
    """The secret configured, else the one the environment gives the service: the
    projection runs inside commands, which have no settings of their own."""
    if _secret is None:
        configure(RegistrationSettings().registration_link_secret)
    assert _secret is not None
    return _secret


def digest(address: str) -> str:
    """The index's name for an address (normalised first)."""
    return hmac.new(
        secret().encode(), b"registered-address\0" + normalised(address).encode(), hashlib.sha256
    ).hexdigest()


# A registration's sealing key, or None once erased.
Keys = Callable[[asyncpg.Connection, str], Awaitable[bytes | None]]


async def live_key(conn: asyncpg.Connection, registration_id: str) -> bytes | None:
    """The key as the command's transaction sees it (a new registration's is inserted
    before its events are projected)."""
    key: bytes | None = await conn.fetchval(
        "SELECT key FROM subject_keys WHERE subject_id = $1", registration_id
    )
    return key


class StoredKeys:
    """The live keys for a rebuild into another schema (`subject_keys` is not a projection:
    it stays in `public`), read once per rebuild (`forget` at its start) and then from
    memory, so that the rebuild's runs of events need no read per event.

    A key is stored before its registration's first event, and never comes back once
    erased: a key missing from the first read is read again on its own (a registration
    recorded since, or an erased one: None, and the erasure's event deletes its rows).
    No keys at all in `public` (a benchmark's generated events, a test's schemas side by
    side): none this run, and no read per registration.

    The rebuild reads them first (`load`, its plan's `preload`): a handler that reads on
    its connection cannot be recorded, and the first one to do so sends every folded
    table to the server for the rest of the replay (`shared.batching.NotRecordable`)."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes | None] | None = None
        self._none = False

    def forget(self) -> None:
        self._keys, self._none = None, False

    async def load(self, conn: asyncpg.Connection) -> None:
        """Every live key, read now (on any connection to the service's database)."""
        found = await conn.fetchval("SELECT to_regclass('public.subject_keys')")
        rows = await conn.fetch("SELECT subject_id, key FROM public.subject_keys") if found else []
        self._keys = {r["subject_id"]: r["key"] for r in rows}
        self._none = not rows

    async def __call__(self, conn: asyncpg.Connection, registration_id: str) -> bytes | None:
        if self._keys is None:
            await self.load(conn)
            assert self._keys is not None
        if registration_id not in self._keys and not self._none:
            self._keys[registration_id] = await conn.fetchval(
                "SELECT key FROM public.subject_keys WHERE subject_id = $1", registration_id
            )
        return self._keys.get(registration_id)


# Representatives a command has just sealed, by registration id: what opening them
# with the key would give (the command need not decrypt what it encrypted).
Opened = Mapping[str, list[dict[str, Any]]]


async def _index(
    conn: asyncpg.Connection,
    registration_id: str,
    sealed: str,
    keys: Keys,
    *,
    replace: bool,
    opened: Opened | None = None,
) -> None:
    digests: list[str] = []
    people: list[dict[str, Any]] | None = (opened or {}).get(registration_id)
    if people is None:
        key = await keys(conn, registration_id)
        if key is not None:
            people = crypto.open_sealed(key, sealed, subject=registration_id)
    if people is not None:
        digests = sorted({digest(p["email"]) for p in people if p.get("email")})
    if replace:  # a new registration has no rows yet: its command stays one statement
        await conn.execute(
            "DELETE FROM registration_addresses WHERE registration_id = $1", registration_id
        )
    if digests:
        await conn.execute(
            "INSERT INTO registration_addresses (registration_id, address_digest)"
            " SELECT $1, unnest($2::text[])",
            registration_id,
            digests,
        )


async def apply(
    conn: asyncpg.Connection,
    event: EventPayload,
    keys: Keys = live_key,
    opened: Opened | None = None,
) -> None:
    """Keep the index with the registration's events (others change nothing here)."""
    if isinstance(event, RegisteredBase | ProfileUpdated):
        sealed = event.profile.representatives_encrypted
        replace = isinstance(event, ProfileUpdated)
        await _index(conn, event.registration_id, sealed, keys, replace=replace, opened=opened)
    elif isinstance(event, PersonalDataErased):
        await conn.execute(
            "DELETE FROM registration_addresses WHERE registration_id = $1",
            event.registration_id,
        )


async def registrations_at(conn: asyncpg.Connection, address: str) -> list[asyncpg.Record]:
    """The live registrations (not withdrawn, not erased) with a representative at
    `address`, with their keys: one indexed lookup."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT r.registration_id, k.key FROM registration_addresses a"
        " JOIN registrations r USING (registration_id)"
        " JOIN subject_keys k ON k.subject_id = r.registration_id"
        " WHERE a.address_digest = $1 AND r.status <> 'withdrawn'"
        " ORDER BY r.registration_id",
        digest(address),
    )
    return rows


async def index_missing(conn: asyncpg.Connection) -> int:
    """Index the live registrations that have no rows yet (those from before the index
    existed), each under its row lock so that a profile update waits; how many. Run at
    start-up; a registration without any address is opened again each time (cheap)."""
    count = 0
    ids = await conn.fetch(
        "SELECT r.registration_id FROM registrations r"
        " JOIN subject_keys k ON k.subject_id = r.registration_id"
        " WHERE NOT r.erased AND NOT EXISTS (SELECT 1 FROM registration_addresses a"
        " WHERE a.registration_id = r.registration_id)"
    )
    for row in ids:
        async with conn.transaction():
            sealed = await conn.fetchval(
                "SELECT profile->>'representatives_encrypted' FROM registrations"
                " WHERE registration_id = $1 FOR UPDATE",
                row["registration_id"],
            )
            await _index(conn, row["registration_id"], sealed, live_key, replace=True)
            count += 1
    return count
