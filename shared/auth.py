"""API keys: random tokens shown once, stored only as their SHA-256 digest.

The keys carry 256 bits of randomness, so a fast digest is enough: there is no
password to brute-force. Which key belongs to whom is each service's business.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "organiser", "organisation"]


@dataclass(frozen=True)
class Principal:
    role: Role
    id: str  # organiser id, registration id, or "admin"

    @property
    def label(self) -> str:
        return f"{self.role}:{self.id}"


ADMIN_ID = "admin"


def new_api_key(prefix: str) -> tuple[str, str]:
    """Return a new key and the digest to store."""
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, digest(key)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
