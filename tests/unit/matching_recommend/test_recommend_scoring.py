"""Scores, eligibility and lists of the pure recommender (no database)."""

from __future__ import annotations

import numpy as np
import pytest
from recommend_cases import hashed_encoder, profile

from services.matching.recommend import chain, scoring
from services.matching.recommend.chain import Stage
from services.matching.recommend.profiles import Profile, embed
from services.matching.recommend.scoring import Ranker, Weights
from services.matching.recommend.topk import Entry, insert, top_k

ALL_TYPES = ["Cluster2Cluster", "Business2Cluster", "Business2Business"]


def ranker(profiles: list[Profile], types: list[str] = ALL_TYPES, **kw: object) -> Ranker:
    return Ranker(embed(profiles, hashed_encoder()), types, **kw)  # type: ignore[arg-type]


def partners(r: Ranker, rid: str) -> list[str]:
    return [e.partner for e in r.list_for(rid)]


MIXED = [
    profile("c1", organisation_type="cluster"),
    profile("c2", organisation_type="cluster"),
    profile("b1", organisation_type="business"),
    profile("r1", organisation_type="research"),
    profile("o1", organisation_type="other"),
]


def test_meeting_type_derivation() -> None:
    assert scoring.meeting_type("cluster", "cluster") == "Cluster2Cluster"
    assert scoring.meeting_type("cluster", "research") == "Business2Cluster"
    assert scoring.meeting_type("business", "cluster") == "Business2Cluster"
    assert scoring.meeting_type("research", "other") == "Business2Business"


def test_a_cluster2cluster_event_recommends_only_clusters_to_clusters() -> None:
    r = ranker(MIXED, ["Cluster2Cluster"])
    assert partners(r, "c1") == ["c2"]
    assert partners(r, "b1") == [] and partners(r, "r1") == []


def test_a_business2cluster_event_pairs_clusters_with_the_others() -> None:
    r = ranker(MIXED, ["Business2Cluster"])
    assert sorted(partners(r, "c1")) == ["b1", "o1", "r1"]
    assert sorted(partners(r, "b1")) == ["c1", "c2"]


def test_a_business2business_event_leaves_clusters_out() -> None:
    r = ranker(MIXED, ["Business2Business"])
    assert sorted(partners(r, "b1")) == ["o1", "r1"]
    assert partners(r, "c1") == []


def test_self_and_engaged_pairs_are_left_out() -> None:
    r = ranker(MIXED, ALL_TYPES, engaged=[("b1", "c1"), ("r1", "b1")])
    assert "b1" not in partners(r, "b1")
    assert sorted(partners(r, "b1")) == ["c2", "o1"]
    assert "b1" not in partners(r, "c1") and "b1" not in partners(r, "r1")


def test_requests_matching_offers_rank_first() -> None:
    ps = [
        profile("me", requests=("laser welding",)),
        profile("fit", offers=("laser welding",)),
        profile("other", offers=("bakery supplies",)),
    ]
    r = ranker(ps)
    assert partners(r, "me")[0] == "fit"
    # identical texts: cosine 1 (to 1e-4: vectors are rounded) on the 0.70 weight
    assert r.list_for("me")[0].score == pytest.approx(0.70, abs=1e-3)


def test_both_directions_count_the_asker_more() -> None:
    ps = [
        profile("me", requests=("x",), offers=("y",)),
        profile("serves_me", offers=("x",)),
        profile("needs_me", requests=("y",)),
    ]
    r = ranker(ps)
    scores = {e.partner: e.score for e in r.list_for("me")}
    assert scores["serves_me"] == pytest.approx(0.70, abs=1e-3)
    assert scores["needs_me"] == pytest.approx(0.30, abs=1e-3)
    towards = r.scores_towards(r.index["me"])
    assert towards[r.index["needs_me"]] == pytest.approx(0.70, abs=1e-3)


def test_structured_signals() -> None:
    w = Weights()
    base = dict(offers=(), requests=())
    ps = [
        profile("me", sectors=("Automotive",), technologies=("AI", "IoT"), markets=("EU",),
                value_chain_position="tier 2 supplier", country="DE", **base),
        profile("same", sectors=("automotive ",), technologies=("ai",), markets=("eu", "Asia"),
                value_chain_position="car manufacturer (OEM)", country="FR", **base),
        profile("none", sectors=("food",), value_chain_position="tier 1 supplier", country="DE",
                **base),
    ]  # fmt: skip
    r = ranker(ps)
    scores = {e.partner: e.score for e in r.list_for("me")}
    expected = w.sectors * 1 + w.technologies * 0.5 + w.markets * 0.5 + w.value_chain + w.country
    assert scores["same"] == pytest.approx(expected, abs=1e-5)
    assert scores["none"] == pytest.approx(0.0, abs=1e-6)  # same stage, same country


def test_value_chain_stages_and_complements() -> None:
    assert chain.stage_of("Tier 2 supplier of castings", "business") == Stage.SUPPLY
    assert chain.stage_of("OEM of electric scooters", "business") == Stage.MANUFACTURING
    assert chain.stage_of("importer and wholesaler", "business") == Stage.DISTRIBUTION
    assert chain.stage_of("anything", "research") == Stage.RESEARCH
    assert chain.stage_of("a manufacturer", "cluster") == Stage.INTERMEDIARY
    assert chain.stage_of(None, "business") == Stage.UNKNOWN
    assert chain.complement(Stage.SUPPLY, Stage.MANUFACTURING) == 1.0
    assert chain.complement(Stage.RESEARCH, Stage.MANUFACTURING) == pytest.approx(0.8)
    assert chain.complement(Stage.SUPPLY, Stage.SUPPLY) == 0.0
    assert chain.complement(Stage.UNKNOWN, Stage.SUPPLY) == 0.0
    assert (chain.COMPLEMENT == chain.COMPLEMENT.T).all()


def test_top_k_keeps_ties_by_id_and_skips_the_ineligible() -> None:
    scores = np.array([0.5, 0.9, 0.5, -np.inf, 0.5], dtype=np.float32)
    ids = ["e", "a", "d", "b", "c"]
    assert [e.partner for e in top_k(scores, ids, 3)] == ["a", "c", "d"]
    assert [e.partner for e in top_k(scores, ids, 10)] == ["a", "c", "d", "e"]


def test_insert_replaces_and_truncates() -> None:
    entries = [Entry.of("a", 0.9), Entry.of("b", 0.5)]
    assert [e.partner for e in insert(entries, Entry.of("c", 0.7), 2)] == ["a", "c"]
    assert [e.partner for e in insert(entries, Entry.of("b", 0.95), 3)] == ["b", "a"]


def test_all_lists_equal_one_row_at_a_time() -> None:
    rng = np.random.default_rng(7)
    words = ["laser", "battery", "software", "sensor", "recycling", "design", "testing"]
    ps = [
        profile(
            f"p{i:03d}",
            organisation_type=str(rng.choice(["cluster", "business", "research", "other"])),
            country=str(rng.choice(["DE", "FR", "PL"])),
            sectors=tuple(rng.choice(["auto", "food", "ict"], size=rng.integers(0, 3))),
            requests=tuple(" ".join(rng.choice(words, 2)) for _ in range(rng.integers(0, 3))),
            offers=tuple(" ".join(rng.choice(words, 2)) for _ in range(rng.integers(0, 3))),
        )
        for i in range(60)
    ]
    r = ranker(ps, ALL_TYPES, engaged=[("p001", "p002")])
    everything = r.all_lists(k=12, block=16)
    for rid in r.ids:
        one = r.list_for(rid, 12)
        assert [e.partner for e in everything[rid]] == [e.partner for e in one]
        assert [e.score for e in everything[rid]] == pytest.approx([e.score for e in one], abs=1e-5)
