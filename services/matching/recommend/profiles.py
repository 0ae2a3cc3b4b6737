"""What the recommender knows about a participant: its profile and its text vectors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
TextEncoder = Callable[[list[str]], Vectors]
"""Texts → one L2-normalised row per text (the sentence model, or TF-IDF for comparison)."""


@lru_cache(maxsize=65536)
def clean(value: str) -> str:
    """A label as compared: lower case, single spaces."""
    return " ".join(value.lower().split())


@dataclass(frozen=True)
class Profile:
    registration_id: str
    organisation_type: str  # cluster | business | research | other
    name: str
    country: str
    sectors: tuple[str, ...] = ()
    technologies: tuple[str, ...] = ()
    value_chain_position: str | None = None
    markets: tuple[str, ...] = ()
    offers: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Participant:
    """A profile with one vector per request and per offer (rows in the lists' order)."""

    profile: Profile
    request_vectors: Vectors
    offer_vectors: Vectors

    @property
    def id(self) -> str:
        return self.profile.registration_id


def embed(profiles: Sequence[Profile], encode: TextEncoder) -> list[Participant]:
    """Embed every request and offer of `profiles` in one call to the encoder."""
    texts: list[str] = []
    for p in profiles:
        texts.extend(p.requests)
        texts.extend(p.offers)
    vectors = encode(texts)
    out: list[Participant] = []
    at = 0
    for p in profiles:
        r, o = len(p.requests), len(p.offers)
        out.append(Participant(p, vectors[at : at + r].copy(), vectors[at + r : at + r + o].copy()))
        at += r + o
    return out


def to_bytes(vectors: Vectors) -> bytes:
    return np.ascontiguousarray(vectors, dtype="<f4").tobytes()


def from_bytes(raw: bytes, dimension: int) -> Vectors:
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dimension).astype(np.float32)
