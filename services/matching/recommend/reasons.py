"""Why a partner is recommended, in plain words, from both profiles and their vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycountry

from services.matching.recommend import chain
from services.matching.recommend.profiles import Participant, Vectors, clean

TEXT_MATCH = 0.35
"""Cosine similarity from which a request and an offer are said to match."""


@dataclass(frozen=True)
class Match:
    similarity: float
    first: int  # index of the text on the asking side
    second: int  # index of the text on the offering side


def best_match(asks: Vectors, offers: Vectors) -> Match | None:
    if not len(asks) or not len(offers):
        return None
    sims = asks @ offers.T
    a, b = np.unravel_index(int(np.argmax(sims)), sims.shape)
    return Match(float(sims[a, b]), int(a), int(b))


def quote(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return f"“{text if len(text) <= limit else text[: limit - 1].rstrip() + '…'}”"


def country_name(code: str) -> str:
    found = pycountry.countries.get(alpha_2=code.upper())
    return str(getattr(found, "common_name", None) or found.name) if found else code.upper()


def _shared(mine: tuple[str, ...], theirs: tuple[str, ...]) -> list[str]:
    theirs_clean = {clean(t) for t in theirs}
    seen: set[str] = set()
    out = []
    for value in mine:
        key = clean(value)
        if key in theirs_clean and key not in seen:
            seen.add(key)
            out.append(value.strip())
    return out


def _listing(values: list[str], most: int = 3) -> str:
    shown = ", ".join(values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def reasons(me: Participant, them: Participant) -> list[str]:
    """Reasons for `me` to meet `them`, the strongest first."""
    mine, theirs = me.profile, them.profile
    out: list[str] = []
    forward = best_match(me.request_vectors, them.offer_vectors)
    if forward and forward.similarity >= TEXT_MATCH:
        out.append(
            f"your request for {quote(mine.requests[forward.first])} matches their offer of"
            f" {quote(theirs.offers[forward.second])}"
        )
    backward = best_match(them.request_vectors, me.offer_vectors)
    if backward and backward.similarity >= TEXT_MATCH:
        out.append(
            f"they are looking for {quote(theirs.requests[backward.first])}, which matches your"
            f" offer of {quote(mine.offers[backward.second])}"
        )
    sectors = _shared(mine.sectors, theirs.sectors)
    my_stage = chain.stage_of(mine.value_chain_position, mine.organisation_type)
    their_stage = chain.stage_of(theirs.value_chain_position, theirs.organisation_type)
    if chain.complement(my_stage, their_stage) >= 0.6:
        where = f"the {sectors[0]} value chain" if sectors else "the value chain"
        out.append(
            f"complementary position in {where} (you: {chain.ROLE[my_stage]},"
            f" they: {chain.ROLE[their_stage]})"
        )
    if sectors:
        if mine.country.upper() != theirs.country.upper():
            out.append(
                f"same sector ({_listing(sectors)}), different country"
                f" ({country_name(theirs.country)})"
            )
        else:
            out.append(f"same sector ({_listing(sectors)})")
    technologies = _shared(mine.technologies, theirs.technologies)
    if technologies:
        out.append(f"shared technologies: {_listing(technologies)}")
    markets = _shared(mine.markets, theirs.markets)
    if markets:
        out.append(f"both focus on the same markets: {_listing(markets)}")
    if not out:
        if forward:
            out.append(
                f"their offer of {quote(theirs.offers[forward.second])} is among the closest"
                f" at this event to your request for {quote(mine.requests[forward.first])}"
            )
        else:
            out.append("one of the closest profiles to yours at this event")
    return out
