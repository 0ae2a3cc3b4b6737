"""Keeping every participant's top-K list current without recomputing the event.

When participant s joins, changes its profile, or leaves, only these lists can
change:

* s's own list: computed anew (one row of scores), or dropped when s left;
* the lists that hold s ("holders"): s's score in them changed or s is gone,
  so each is computed anew (a few rows of scores);
* any other list L: s was not in it, so L changes only if s now beats L's
  last entry (its "floor"), or L has room. One column of scores, score(· → s),
  decides that for every list at once: s is inserted, the last entry dropped.

Every other pair's score is unchanged, so the lists equal those computed from
scratch. The same holds when a pair's eligibility changes (a meeting requested,
or declined): the two lists are computed anew.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from services.matching.recommend.scoring import K, Ranker
from services.matching.recommend.topk import Entry, TopList, insert


@dataclass(frozen=True)
class Floor:
    """What the decision needs about a stored list: its length and last entry."""

    size: int
    last: Entry | None


@dataclass
class Plan:
    replace: dict[str, TopList] = field(default_factory=dict)  # lists computed anew
    insert: dict[str, Entry] = field(default_factory=dict)  # entry to put into a list
    drop: set[str] = field(default_factory=set)  # lists to delete (their owner left)

    @property
    def touched(self) -> int:
        return len(self.replace) + len(self.insert) + len(self.drop)


def plan(
    ranker: Ranker,
    subject: str,
    holders: set[str],
    floors: Mapping[str, Floor],
    k: int = K,
) -> Plan:
    """What to change after `subject` joined, changed or left (absent from `ranker`).

    `holders` are the owners of the lists that hold `subject`; `floors` describes
    every stored list (owners without one are treated as empty).
    """
    out = Plan()
    present = subject in ranker.index
    recompute = sorted(h for h in holders if h in ranker.index and h != subject)
    if present:
        recompute.append(subject)
    else:
        out.drop.add(subject)
    out.replace.update(ranker.lists_for(recompute, k))
    if not present:
        return out
    towards = ranker.scores_towards(ranker.index[subject])
    for i in np.flatnonzero(np.isfinite(towards)):
        owner = ranker.ids[i]
        if owner in out.replace:
            continue
        entry = Entry.of(subject, float(towards[i]))
        floor = floors.get(owner, Floor(0, None))
        if floor.size < k or floor.last is None or entry < floor.last:
            out.insert[owner] = entry
    return out


def plan_pair(ranker: Ranker, a: str, b: str, k: int = K) -> Plan:
    """A and B's eligibility for each other changed: compute both lists anew."""
    return Plan(replace=ranker.lists_for([r for r in (a, b) if r in ranker.index], k))


# -- in memory (tests, benchmark) ------------------------------------------------


def floors_of(lists: Mapping[str, TopList]) -> dict[str, Floor]:
    return {owner: Floor(len(e), e[-1] if e else None) for owner, e in lists.items()}


def holders_of(lists: Mapping[str, TopList], subject: str) -> set[str]:
    return {owner for owner, e in lists.items() if any(x.partner == subject for x in e)}


def apply(lists: dict[str, TopList], change: Plan, k: int = K) -> None:
    for owner in change.drop:
        lists.pop(owner, None)
    lists.update(change.replace)
    for owner, entry in change.insert.items():
        lists[owner] = insert(lists.get(owner, []), entry, k)


def update(lists: dict[str, TopList], ranker: Ranker, subject: str, k: int = K) -> Plan:
    """Bring in-memory `lists` up to date after `subject` changed; return what was done."""
    change = plan(ranker, subject, holders_of(lists, subject), floors_of(lists), k)
    apply(lists, change, k)
    return change
