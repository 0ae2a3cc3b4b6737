"""Reasons in plain words, with the real sentence model."""

from __future__ import annotations

from recommend_cases import profile

from services.matching.recommend import minilm, reasons
from services.matching.recommend.profiles import Participant, Profile, embed


def pair(me: Profile, them: Profile) -> tuple[Participant, Participant]:
    a, b = embed([me, them], minilm.encoder().encode)
    return a, b


def test_request_matching_an_offer_in_other_words() -> None:
    me, them = pair(
        profile(
            "me",
            requests=("partners to recycle end-of-life lithium-ion batteries",),
            offers=("electric scooters for sharing fleets",),
        ),
        profile(
            "them",
            offers=(
                "industrial cleaning",
                "hydrometallurgical recovery of cobalt, nickel and lithium from spent EV cells",
            ),
            requests=("urban micromobility vehicles for our staff",),
        ),
    )
    said = reasons.reasons(me, them)
    assert said[0] == (
        "your request for “partners to recycle end-of-life lithium-ion batteries” matches their"
        " offer of “hydrometallurgical recovery of cobalt, nickel and lithium from spent EV cells”"
    )
    assert said[1] == (
        "they are looking for “urban micromobility vehicles for our staff”, which matches your"
        " offer of “electric scooters for sharing fleets”"
    )


def test_value_chain_sector_and_country() -> None:
    me, them = pair(
        profile(
            "me",
            country="DE",
            sectors=("Automotive", "Energy"),
            technologies=("laser welding",),
            markets=("Nordics",),
            value_chain_position="Tier 2 supplier of battery trays",
        ),
        profile(
            "them",
            country="CZ",
            sectors=("automotive",),
            technologies=("Laser welding", "robotics"),
            markets=("nordics",),
            value_chain_position="car manufacturer (OEM)",
        ),
    )
    assert reasons.reasons(me, them) == [
        "complementary position in the Automotive value chain (you: a supplier,"
        " they: a manufacturer)",
        "same sector (Automotive), different country (Czechia)",
        "shared technologies: laser welding",
        "both focus on the same markets: Nordics",
    ]


def test_same_country_and_no_chain() -> None:
    me, them = pair(
        profile("me", sectors=("ICT",), value_chain_position="software developer"),
        profile("them", sectors=("ict",), value_chain_position="software house, development"),
    )
    assert reasons.reasons(me, them) == ["same sector (ICT)"]


def test_research_and_industry_complement_each_other() -> None:
    me, them = pair(
        profile("me", organisation_type="research"),
        profile("them", value_chain_position="manufacturer"),
    )
    assert reasons.reasons(me, them) == [
        "complementary position in the value chain (you: a research organisation,"
        " they: a manufacturer)"
    ]


def test_always_at_least_one_reason() -> None:
    me, them = pair(
        profile("me", requests=("bakery ovens",)),
        profile("them", offers=("quantum cryptography",)),
    )
    said = reasons.reasons(me, them)
    assert len(said) == 1 and "closest" in said[0]
    lonely, other = pair(profile("me"), profile("them"))
    assert reasons.reasons(lonely, other) == ["one of the closest profiles to yours at this event"]


def test_long_texts_are_shortened() -> None:
    assert reasons.quote("word " * 40).endswith("…”")
    assert len(reasons.quote("word " * 40)) <= 92
