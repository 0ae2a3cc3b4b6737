"""Value-chain positions: a short ordered chain, and which positions complement each other.

`value_chain_position` is free text ("Tier 2 supplier of castings", "OEM",
"university lab"); it is mapped by keywords onto one stage of

    research → development → supply → manufacturing → distribution → service

Clusters (and other network organisations) sit beside the chain as
intermediaries. Two stages complement each other when one feeds the other:
neighbours in the chain (supplier ↔ manufacturer), research ↔ industry, and an
intermediary with any stage. The same stage twice (two suppliers) is not
complementary: they are more likely competitors.
"""

from __future__ import annotations

import re
from enum import IntEnum
from functools import lru_cache

import numpy as np
import numpy.typing as npt


class Stage(IntEnum):
    RESEARCH = 0
    DEVELOPMENT = 1
    SUPPLY = 2
    MANUFACTURING = 3
    DISTRIBUTION = 4
    SERVICE = 5
    INTERMEDIARY = 6
    UNKNOWN = 7


ROLE = {
    Stage.RESEARCH: "a research organisation",
    Stage.DEVELOPMENT: "a technology developer",
    Stage.SUPPLY: "a supplier",
    Stage.MANUFACTURING: "a manufacturer",
    Stage.DISTRIBUTION: "in distribution",
    Stage.SERVICE: "a service provider or user",
    Stage.INTERMEDIARY: "a cluster or network",
    Stage.UNKNOWN: "of unknown position",
}
"""How a stage is named in reasons ("you: a supplier, they: a manufacturer")."""

# For businesses and other organisations the first stage whose words appear wins,
# so the more specific stages come first ("component manufacturer" is a supplier).
# Clusters are intermediaries and research organisations research, whatever they write.
_KEYWORDS: list[tuple[Stage, list[str]]] = [
    (stage, words.split("|"))
    for stage, words in (
        (Stage.INTERMEDIARY, "cluster|network|association|chamber|agency"),
        (Stage.SUPPLY, "supplier|supply|tier |component|parts|material|subcontract|raw "),
        (
            Stage.MANUFACTURING,
            "manufactur|oem|producer|production|assembl|integrator|fabricat|maker|factory|plant",
        ),
        (
            Stage.DISTRIBUTION,
            "distribut|wholesale|retail|reseller|dealer|import|export|trade|trading|sales|logistic",
        ),
        (
            Stage.DEVELOPMENT,
            "develop|engineering|design|prototyp|consult|technology provider|start-up|startup"
            "|spin-off|software",
        ),
        (Stage.RESEARCH, "research|university|institute|academ|laborator| lab |r&d|scienti"),
        (
            Stage.SERVICE,
            "service|operator|user|maintenance|after-sales|utility|hospital|municipal|recycl"
            "|installer|customer",
        ),
    )
]

_INDUSTRY = (Stage.SUPPLY, Stage.MANUFACTURING, Stage.SERVICE)


@lru_cache(maxsize=8192)
def stage_of(position: str | None, organisation_type: str) -> Stage:
    if organisation_type == "cluster":
        return Stage.INTERMEDIARY
    if organisation_type == "research":
        return Stage.RESEARCH
    text = " " + re.sub(r"[^a-z0-9&-]+", " ", (position or "").lower()) + " "
    for stage, words in _KEYWORDS:
        if any(word in text for word in words):
            return stage
    return Stage.UNKNOWN


def _table() -> npt.NDArray[np.float32]:
    size = len(Stage)
    table = np.zeros((size, size), dtype=np.float32)
    chain = [s for s in Stage if s < Stage.INTERMEDIARY]
    for a in chain:
        for b in chain:
            gap = abs(int(a) - int(b))
            if gap == 1:
                table[a, b] = 1.0
            elif gap == 2:
                table[a, b] = 0.4
    for industry in _INDUSTRY:
        table[Stage.RESEARCH, industry] = table[industry, Stage.RESEARCH] = max(
            0.8, float(table[Stage.RESEARCH, industry])
        )
    for s in chain:
        table[Stage.INTERMEDIARY, s] = table[s, Stage.INTERMEDIARY] = 0.6
    return table


COMPLEMENT = _table()
"""COMPLEMENT[a, b] in [0, 1]: how well stage a complements stage b (symmetric)."""


def complement(a: Stage, b: Stage) -> float:
    return float(COMPLEMENT[a, b])
