"""Signed links: URLs that work without an API key (unsubscribe, calendar feed,
the organiser's dashboard).

A token carries its parts in the clear and an HMAC-SHA256 over them and the
link's purpose, so a token made for one purpose opens nothing else. Whoever holds
the link may use it; rotating the secret revokes every link signed with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_MAC_BYTES = 18  # 144 bits: unguessable, and short enough for a URL


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, body: str) -> bytes:
    digest = hmac.new(secret.encode(), f"{purpose}:{body}".encode(), hashlib.sha256).digest()
    return digest[:_MAC_BYTES]


def sign_link(secret: str, purpose: str, *parts: str) -> str:
    """A token for a link that works without logging in: the parts, and their HMAC."""
    body = ":".join(parts)
    return f"{_b64(body.encode())}.{_b64(_mac(secret, purpose, body))}"


def open_link(secret: str, purpose: str, token: str) -> list[str] | None:
    """The parts of a token signed for `purpose`, or None if it is not genuine."""
    try:
        encoded, mac = token.split(".", 1)
        body = _unb64(encoded).decode()
        if not hmac.compare_digest(_mac(secret, purpose, body), _unb64(mac)):
            return None
    except (ValueError, UnicodeDecodeError):
        return None
    return body.split(":")
