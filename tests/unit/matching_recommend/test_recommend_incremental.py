"""Incremental upkeep of the lists equals computing them from scratch, exactly, at every step."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from services.matching.recommend import incremental
from services.matching.recommend.profiles import Participant, Profile, embed
from services.matching.recommend.scoring import Ranker
from services.matching.recommend.topk import TopList
from tests.unit.matching_recommend.recommend_cases import hashed_encoder, profile

TYPES = ["Business2Business", "Business2Cluster"]
WORDS = ["laser", "battery", "software", "sensor", "recycling", "design", "testing", "food"]
K = 5  # small, so that lists fill up and spill over often


def random_profile(rng: random.Random, rid: str) -> Profile:
    def texts() -> tuple[str, ...]:
        return tuple(" ".join(rng.sample(WORDS, 2)) for _ in range(rng.randint(0, 2)))

    return profile(
        rid,
        organisation_type=rng.choice(["cluster", "business", "business", "research"]),
        country=rng.choice(["DE", "FR", "PL", "IT"]),
        sectors=tuple(rng.sample(["auto", "food", "ict", "energy"], rng.randint(0, 2))),
        technologies=tuple(rng.sample(["ai", "iot", "laser"], rng.randint(0, 2))),
        value_chain_position=rng.choice([None, "supplier", "manufacturer", "distributor"]),
        requests=texts(),
        offers=texts(),
    )


class World:
    """Approved participants, engaged pairs, and lists kept incrementally."""

    def __init__(self) -> None:
        self.encode = hashed_encoder()
        self.approved: dict[str, Participant] = {}
        self.engaged: set[tuple[str, str]] = set()
        self.lists: dict[str, TopList] = {}

    def ranker(self) -> Ranker:
        ordered = [self.approved[k] for k in sorted(self.approved)]
        return Ranker(ordered, TYPES, sorted(self.engaged))

    def change(self, subject: str) -> incremental.Plan:
        return incremental.update(self.lists, self.ranker(), subject, K)

    def join(self, p: Profile) -> incremental.Plan:
        self.approved[p.registration_id] = embed([p], self.encode)[0]
        return self.change(p.registration_id)

    def leave(self, rid: str) -> incremental.Plan:
        del self.approved[rid]
        return self.change(rid)

    def engage(self, a: str, b: str) -> None:
        self.engaged.add((a, b))
        incremental.apply(self.lists, incremental.plan_pair(self.ranker(), a, b, K), K)

    def check(self) -> None:
        expected = self.ranker().all_lists(K, block=7)
        assert set(self.lists) == set(expected)
        for owner, entries in expected.items():
            assert self.lists[owner] == entries, owner  # same partners, order and scores


@pytest.mark.parametrize("seed", range(10))
def test_any_sequence_of_changes_matches_from_scratch(seed: int) -> None:
    rng = random.Random(seed)
    world = World()
    next_id = 0
    for _ in range(70):
        roll = rng.random()
        ids = sorted(world.approved)
        if roll < 0.55 or len(ids) < 3:
            world.join(random_profile(rng, f"p{next_id:03d}"))
            next_id += 1
        elif roll < 0.75:
            world.leave(rng.choice(ids))
        elif roll < 0.9:
            rid = rng.choice(ids)
            changed = random_profile(rng, rid)
            world.join(
                replace(changed, organisation_type=world.approved[rid].profile.organisation_type)
            )
        else:
            a, b = rng.sample(ids, 2)
            world.engage(a, b)
        world.check()


def test_a_newcomer_enters_only_lists_it_beats() -> None:
    world = World()
    for i in range(12):
        world.join(profile(f"p{i:02d}", requests=(f"need {i}",), offers=(f"offer {i}",)))
    before = {k: list(v) for k, v in world.lists.items()}
    change = world.join(profile("zz", requests=("need 3",), offers=("need 1", "need 2")))
    assert set(change.replace) == {"zz"}  # only its own list is computed anew
    for owner, entry in change.insert.items():
        floor = before[owner][-1] if len(before[owner]) == K else None
        assert floor is None or entry < floor
    assert {"p01", "p02"} <= set(change.insert)  # they asked for what it offers
    world.check()


def test_a_leaver_disappears_and_its_holders_are_refilled() -> None:
    world = World()
    for i in range(12):
        world.join(profile(f"p{i:02d}", requests=("laser welding",), offers=(f"offer {i}",)))
    world.join(profile("star", offers=("laser welding",)))
    holders = incremental.holders_of(world.lists, "star")
    assert len(holders) == 12
    change = world.leave("star")
    assert change.drop == {"star"} and set(change.replace) == holders
    assert all(len(world.lists[h]) == K for h in holders)
    assert not incremental.holders_of(world.lists, "star")
    world.check()
