"""Signed links: URLs that work without an API key (unsubscribe, calendar feed,
the organiser's dashboard).

A token carries its parts in the clear, when it was issued and when it expires
(milliseconds since the epoch), and an HMAC-SHA256 over all of them and the link's
purpose, so a token made for one purpose opens nothing else and its dates cannot be
changed. Whoever holds the link may use it until it expires or is revoked.

Revocation is per (purpose, subject), the subject being the link's first part (an
event for the dashboard, a registration for the feed and unsubscribe links): the
`link_revocations` table (shared/sql/004_link_revocations.sql, in every service's
database) holds a "revoked before" time, and every link of that subject issued
before it is void. Links issued from that instant on work. Rotating the secret
still revokes every link signed with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

_MAC_BYTES = 18  # 144 bits: unguessable, and short enough for a URL
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# How long a link works unless the signer says otherwise, by purpose.
LIFETIMES: dict[str, timedelta] = {
    "dashboard": timedelta(days=30),
    "feed": timedelta(days=365),
    "unsubscribe": timedelta(days=365),
}
DEFAULT_LIFETIME = timedelta(days=30)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, body: str) -> bytes:
    digest = hmac.new(secret.encode(), f"{purpose}:{body}".encode(), hashlib.sha256).digest()
    return digest[:_MAC_BYTES]


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def _moment(millis: int) -> datetime:
    return _EPOCH + millis * _MS


def now_ms() -> datetime:
    """The current time, to the millisecond (the precision a token carries)."""
    return _moment(_millis(datetime.now(UTC)))


class LinkState(StrEnum):
    VALID = "valid"
    FORGED = "not genuine"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class SignedLink:
    """A genuine token's contents."""

    parts: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime

    @property
    def subject(self) -> str:
        return self.parts[0]

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at


def sign_link(
    secret: str,
    purpose: str,
    *parts: str,
    issued_at: datetime | None = None,
    lifetime: timedelta | None = None,
) -> str:
    """A token for a link that works without logging in: parts, dates and their HMAC."""
    if not parts or any(":" in part for part in parts):
        raise ValueError("a signed link needs parts, without ':'")
    issued = _millis(issued_at or datetime.now(UTC))
    expires = issued + (lifetime or LIFETIMES.get(purpose, DEFAULT_LIFETIME)) // _MS
    body = ":".join((*parts, str(issued), str(expires)))
    return f"{_b64(body.encode())}.{_b64(_mac(secret, purpose, body))}"


def read_link(secret: str, purpose: str, token: str) -> SignedLink | None:
    """The contents of a genuine token signed for `purpose` (expired or not), else None."""
    try:
        encoded, mac = token.split(".", 1)
        body = _unb64(encoded).decode()
        if not hmac.compare_digest(_mac(secret, purpose, body), _unb64(mac)):
            return None
        *parts, issued, expires = body.split(":")
        if not parts:
            return None
        return SignedLink(tuple(parts), _moment(int(issued)), _moment(int(expires)))
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None


def open_link(
    secret: str, purpose: str, token: str, *, now: datetime | None = None
) -> list[str] | None:
    """The parts of a genuine, unexpired token signed for `purpose`, else None.

    Revocation needs the database: see `check_link`.
    """
    link = read_link(secret, purpose, token)
    if link is None or link.expired(now):
        return None
    return list(link.parts)


async def revoked_before(
    db: asyncpg.Pool | asyncpg.Connection, purpose: str, subject: str
) -> datetime | None:
    found: datetime | None = await db.fetchval(
        "SELECT revoked_before FROM link_revocations WHERE purpose = $1 AND subject = $2",
        purpose,
        subject,
    )
    return found


async def check_link(
    db: asyncpg.Pool | asyncpg.Connection, secret: str, purpose: str, token: str
) -> tuple[LinkState, SignedLink | None]:
    """Whether a token opens now: genuine, unexpired and not revoked; and its contents."""
    link = read_link(secret, purpose, token)
    if link is None:
        return LinkState.FORGED, None
    if link.expired():
        return LinkState.EXPIRED, link
    cutoff = await revoked_before(db, purpose, link.subject)
    if cutoff is not None and link.issued_at < cutoff:
        return LinkState.REVOKED, link
    return LinkState.VALID, link


async def revoke_links(
    db: asyncpg.Pool | asyncpg.Connection, purposes: list[str], subject: str
) -> datetime:
    """Void every link of `subject` for these purposes issued before now; returns "now".

    Links signed with `issued_at=` the returned time (or later) work.
    """
    cutoff = now_ms()
    for purpose in purposes:
        stored: datetime = await db.fetchval(
            "INSERT INTO link_revocations (purpose, subject, revoked_before) VALUES ($1, $2, $3)"
            " ON CONFLICT (purpose, subject) DO UPDATE SET revoked_before ="
            " GREATEST(link_revocations.revoked_before, EXCLUDED.revoked_before)"
            " RETURNING revoked_before",
            purpose,
            subject,
            cutoff,
        )
        cutoff = max(cutoff, stored)
    return cutoff
