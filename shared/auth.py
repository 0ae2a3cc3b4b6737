"""API keys: random tokens shown once, stored only as their SHA-256 digest.

The keys carry 256 bits of randomness, so a fast digest is enough: there is no
password to brute-force. Which key belongs to whom is each service's business.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from shared.access.policy import ADMIN_ID, Principal, Role

__all__ = ["ADMIN_ID", "Principal", "Role", "digest", "new_api_key", "same_secret"]


def new_api_key(prefix: str) -> tuple[str, str]:
    """Return a new key and the digest to store."""
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, digest(key)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
