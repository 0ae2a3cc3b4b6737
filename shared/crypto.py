"""Crypto-shredding: personal data sealed with a key per data subject.

Erasing the subject destroys the key; every copy of the ciphertext, in events,
projections and Kafka topics, becomes unreadable at once.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class KeyErased(LookupError):
    """The subject's key was destroyed: its personal data can no longer be read."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, value: Any, *, subject: str) -> str:
    """Encrypt `value` (JSON-serialisable) for `subject`, bound to it as associated data."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(value).encode(), subject.encode())
    return base64.b64encode(nonce + ciphertext).decode()


def open_sealed(key: bytes | None, sealed: str, *, subject: str) -> Any:
    if key is None:
        raise KeyErased(subject)
    raw = base64.b64decode(sealed)
    plaintext = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subject.encode())
    return json.loads(plaintext)
