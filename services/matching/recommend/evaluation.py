"""Recall@k on a labelled set: is each requester's planted partner in its top k?

The set (tests/unit/matching_recommend/data/matching_labelled.json) lists
organisations and (requester, partner) pairs; every organisation is a candidate
for every other, all meeting types allowed. `text_only` ranks by the text signal
alone (requests → offers, the part that TF-IDF and the sentence model do
differently); otherwise by the full score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.matching.recommend.profiles import Profile, TextEncoder, embed
from services.matching.recommend.scoring import Ranker, Weights
from shared.contracts.registration import MeetingType

TEXT_ONLY = Weights(
    request_to_offer=1.0,
    offer_to_request=0.0,
    sectors=0.0,
    technologies=0.0,
    value_chain=0.0,
    markets=0.0,
    country=0.0,
)


@dataclass(frozen=True)
class Labelled:
    profiles: list[Profile]
    pairs: list[tuple[str, str]]  # (requester, planted partner)


def load(data: Mapping[str, Any]) -> Labelled:
    profiles = [
        Profile(
            registration_id=o["id"],
            organisation_type=o["organisation_type"],
            name=o["name"],
            country=o["country"],
            sectors=tuple(o["sectors"]),
            technologies=tuple(o["technologies"]),
            value_chain_position=o["value_chain_position"],
            markets=tuple(o["markets"]),
            offers=tuple(o["offers"]),
            requests=tuple(o["requests"]),
        )
        for o in data["organisations"]
    ]
    return Labelled(profiles, [(p["requester"], p["partner"]) for p in data["pairs"]])


@dataclass(frozen=True)
class Recall:
    hits: int
    total: int
    ranks: dict[str, int]  # requester → rank of its partner (1 = first; ties ranked last)

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else 0.0


def recall_at(
    labelled: Labelled, encode: TextEncoder, k: int = 10, weights: Weights | None = None
) -> Recall:
    ranker = Ranker(
        embed(labelled.profiles, encode),
        [t.value for t in MeetingType],
        weights=weights or Weights(),
    )
    ranks: dict[str, int] = {}
    for requester, partner in labelled.pairs:
        row = np.array([ranker.index[requester]], dtype=np.intp)
        scores = ranker.scores_from(row)[0]
        mine = scores[ranker.index[partner]]
        # ties count against the partner: a score shared with others is no evidence
        ranks[requester] = int(np.sum(scores >= mine))
    return Recall(sum(r <= k for r in ranks.values()), len(labelled.pairs), ranks)


def corpus(profiles: Sequence[Profile]) -> list[str]:
    """Every request and offer: the documents a TF-IDF model is fitted on."""
    return [t for p in profiles for t in (*p.requests, *p.offers)]
