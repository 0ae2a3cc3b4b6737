"""Ranked lists: the best K partners, highest score first, ties by partner id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float32]


@dataclass(frozen=True, order=True)
class Entry:
    """One partner in a list. Sorting entries puts the best first."""

    rank_key: tuple[float, str]  # (-score, partner): ascending order is the ranking

    @classmethod
    def of(cls, partner: str, score: float) -> Entry:
        return cls((-float(score), partner))

    @property
    def partner(self) -> str:
        return self.rank_key[1]

    @property
    def score(self) -> float:
        return -self.rank_key[0]


TopList = list[Entry]


def id_ranks(ids: Sequence[str]) -> npt.NDArray[np.intp]:
    """Position of each id in sorted order: ties are broken by it."""
    ranks = np.empty(len(ids), dtype=np.intp)
    ranks[np.argsort(np.array(ids, dtype=object))] = np.arange(len(ids))
    return ranks


def top_k_rows(
    scores: Scores, ids: Sequence[str], k: int, ranks: npt.NDArray[np.intp] | None = None
) -> list[TopList]:
    """The best `k` of each row of `scores` (-inf: not eligible), ties broken by id."""
    b, n = scores.shape
    if ranks is None:
        ranks = id_ranks(ids)
    if n > k:
        kth = np.partition(scores, n - k, axis=1)[:, n - k]
        rows, cols = np.nonzero(scores >= kth[:, None])  # every tie at the boundary too
    else:
        rows, cols = np.nonzero(np.ones_like(scores, dtype=bool))
    values = scores[rows, cols]
    finite = np.isfinite(values)
    rows, cols, values = rows[finite], cols[finite], values[finite]
    order = np.lexsort((ranks[cols], -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    bounds = np.searchsorted(rows, np.arange(b + 1))
    out: list[TopList] = []
    for at in range(b):
        start, end = int(bounds[at]), min(int(bounds[at + 1]), int(bounds[at]) + k)
        out.append(
            [
                Entry((-v, ids[c]))
                for v, c in zip(values[start:end].tolist(), cols[start:end].tolist(), strict=True)
            ]
        )
    return out


def top_k(scores: Scores, ids: Sequence[str], k: int) -> TopList:
    """The best `k` of `scores` (-inf: not eligible), ties broken by id."""
    return top_k_rows(scores[None, :], ids, k)[0]


def beats(entry: Entry, floor: Entry) -> bool:
    return entry < floor


def insert(entries: TopList, entry: Entry, k: int) -> TopList:
    """`entries` with `entry` in its place (replacing an older entry of the same partner)."""
    kept = [e for e in entries if e.partner != entry.partner]
    kept.append(entry)
    kept.sort()
    return kept[:k]
