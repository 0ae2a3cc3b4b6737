"""Helpers of the recommendation tests: profiles, a fast fake encoder, the data files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from services.matching.recommend.profiles import Profile, Vectors

DATA = Path(__file__).parent / "data"
LABELLED = DATA / "matching_labelled.json"
HELD_OUT = DATA / "matching_heldout.json"  # written apart, never tuned on
REFERENCE = DATA / "minilm_reference.json"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def profile(rid: str, **changes: Any) -> Profile:
    fields: dict[str, Any] = dict(
        registration_id=rid,
        organisation_type="business",
        name=f"Organisation {rid}",
        country="DE",
        sectors=(),
        technologies=(),
        value_chain_position=None,
        markets=(),
        offers=(),
        requests=(),
    )
    fields.update(changes)
    return Profile(**fields)


def hashed_encoder(dimension: int = 16) -> Any:
    """Deterministic random unit vectors per text: fast, for tests about the bookkeeping."""

    def encode(texts: list[str]) -> Vectors:
        out = np.zeros((len(texts), dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(dimension)
            out[row] = v / np.linalg.norm(v)
        return out

    return encode
