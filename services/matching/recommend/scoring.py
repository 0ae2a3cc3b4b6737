"""Scores between the approved participants of one event, and their top-K lists.

score(i → j), how much participant i should meet j, is

    0.70 · text(i's requests → j's offers)  +  0.30 · text(j's requests → i's offers)
  + 0.08 · sectors shared      + 0.06 · technologies shared   (Jaccard, 0..1)
  + 0.06 · value-chain complementarity (0..1, see `chain`)
  + 0.03 · markets shared      + 0.03 · different country

where text(A → B) is the best cosine similarity between any one of A and any
one of B (sentence vectors; 0 when either side is empty or unrelated). The
text dominates: the structured signals together add at most 0.26, enough to
order partners of similar relevance, not to lift an unrelated one.

A pair is eligible when the event allows its meeting type and neither side has
a pending or accepted meeting with the other; only approved participants are
given to the ranker. Everything is computed in blocks of rows with numpy: the
lists of 5,000 participants from scratch in about 3 s, one participant against
all (a row and a column of scores) in about 15 ms, on 2 busy cores
(`python -m bench.recommendations`).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.matching.domain import meeting_type_for
from services.matching.recommend import blas, chain
from services.matching.recommend.profiles import Participant, Vectors, clean
from services.matching.recommend.topk import Scores, TopList, id_ranks, top_k_rows
from shared.contracts.registration import OrganisationType

Rows = npt.NDArray[np.intp]
K = 20
"""Entries kept per list: the 10 shown by default, and spares for when partners leave."""

_TYPES = list(OrganisationType)
_TYPE_CODE = {t.value: i for i, t in enumerate(_TYPES)}


@dataclass(frozen=True)
class Weights:
    request_to_offer: float = 0.70
    offer_to_request: float = 0.30
    sectors: float = 0.08
    technologies: float = 0.06
    value_chain: float = 0.06
    markets: float = 0.03
    country: float = 0.03


def meeting_type(a: str, b: str) -> str:
    return meeting_type_for(OrganisationType(a), OrganisationType(b)).value


def allowed_types(meeting_types: Iterable[str]) -> npt.NDArray[np.bool_]:
    """ALLOWED[type a, type b]: may organisations of these types meet at this event."""
    allowed = set(meeting_types)
    return np.array(
        [[meeting_type_for(a, b).value in allowed for b in _TYPES] for a in _TYPES], dtype=bool
    )


class _Labels:
    """Multi-hot rows of one list-valued field (sectors, ...), for overlap counts."""

    def __init__(self, values: Sequence[Collection[str]]) -> None:
        sets = [{clean(v) for v in vs if v.strip()} for vs in values]
        holders: dict[str, int] = {}
        for s in sets:
            for label in s:
                holders[label] = holders.get(label, 0) + 1
        # a label only one participant has cannot be shared: leave it out of the matrix
        shared = sorted(label for label, n in holders.items() if n > 1)
        column = {label: i for i, label in enumerate(shared)}
        self.matrix = np.zeros((len(sets), len(shared)), dtype=np.float32)
        for row, s in enumerate(sets):
            for label in s:
                if label in column:
                    self.matrix[row, column[label]] = 1.0
        self.sizes = np.array([len(s) for s in sets], dtype=np.float32)

    def jaccard(self, rows: Rows) -> npt.NDArray[np.float32]:
        inter = self.matrix[rows] @ self.matrix.T
        union = self.sizes[rows, None] + self.sizes[None, :]
        union -= inter
        np.maximum(union, 1, out=union)  # no labels on either side: 0 / 1
        inter /= union
        return inter


_GRID = 4096.0  # vector components are kept as multiples of 1/4096 ...
_SHRINK = 0.99  # ... of the vector times 0.99, so that its norm stays below 1
_UNSHRINK = np.float32(1 / (_SHRINK * _SHRINK))


def _exact(vectors: Vectors) -> Vectors:
    """Vectors whose float32 dot products are exact, hence independent of summation order.

    Each component becomes m/4096 with |m| ≤ 4055: every product is a multiple of
    2^-24 below 1 in size, and so is every partial sum (Cauchy-Schwarz, norms < 1),
    all exactly representable in float32. A block of rows, one row or one column
    of the same matrix product therefore give bit-identical similarities, and
    lists kept incrementally equal lists computed from scratch, ties included.
    The rounding moves a cosine by about 1e-4.
    """
    out = np.array(vectors, dtype=np.float32)  # a copy, rounded in place
    out *= np.float32(_SHRINK * _GRID)
    np.rint(out, out=out)
    out *= np.float32(1 / _GRID)  # a power of two: exact
    return out


def _stack(blocks: Sequence[Vectors], dimension: int) -> tuple[Vectors, Rows]:
    """Rows of all blocks (an empty block becomes one zero row), and where each starts."""
    parts = [b if len(b) else np.zeros((1, dimension), dtype=np.float32) for b in blocks]
    starts = np.zeros(len(parts), dtype=np.intp)
    if parts:
        starts[1:] = np.cumsum([len(p) for p in parts])[:-1]
        return _exact(np.concatenate(parts, dtype=np.float32)), starts
    return np.zeros((0, dimension), dtype=np.float32), starts


Slots = list[tuple[Rows, Vectors]]


def _slots(vectors: Vectors, starts: Rows, ends: Rows) -> Slots:
    """For s = 0, 1, ...: the participants with more than s items, and their s-th vectors.

    A maximum over each participant's items is then a maximum over a few
    matrices of whole rows, which numpy does much faster than `reduceat`.
    """
    counts = ends - starts
    out: Slots = []
    for s in range(int(counts.max()) if counts.size else 0):
        who = np.flatnonzero(counts > s)
        out.append((who, np.ascontiguousarray(vectors[starts[who] + s])))
    return out


def _best_per_owner(items: Vectors, slots: Slots) -> Scores:
    """(items, owners): each of `items`' best similarity with each owner's vectors."""
    _, first = slots[0]  # slot 0 holds everyone
    best: Scores = items @ first.T
    for who, vectors in slots[1:]:
        best[:, who] = np.maximum(best[:, who], items @ vectors.T)
    return best


def _best_per_row_group(by_item: Scores, local: Rows, counts: Rows) -> Scores:
    """(groups, N) from (items, N): the maximum over each group's consecutive items."""
    out = by_item[local]
    for s in range(1, int(counts.max()) if counts.size else 0):
        who = np.flatnonzero(counts > s)
        out[who] = np.maximum(out[who], by_item[local[who] + s])
    out *= _UNSHRINK
    return np.maximum(out, 0, out=out)


def _transpose(matrix: Scores, tile: int = 256) -> Scores:
    """A contiguous transpose, tile by tile (a plain one misses the cache on every element)."""
    rows, cols = matrix.shape
    out = np.empty((cols, rows), dtype=matrix.dtype)
    for r in range(0, rows, tile):
        for c in range(0, cols, tile):
            out[c : c + tile, r : r + tile] = matrix[r : r + tile, c : c + tile].T
    return out


class Ranker:
    """All that scoring needs about an event's approved participants, in arrays."""

    def __init__(
        self,
        participants: Sequence[Participant],
        meeting_types: Iterable[str],
        engaged: Iterable[tuple[str, str]] = (),
        weights: Weights = Weights(),
    ) -> None:
        self.participants = list(participants)
        self.ids = [p.id for p in self.participants]
        self.index = {rid: i for i, rid in enumerate(self.ids)}
        self._ranks = id_ranks(self.ids)
        self.weights = weights
        profiles = [p.profile for p in self.participants]
        self._types = np.array([_TYPE_CODE[p.organisation_type] for p in profiles], dtype=np.intp)
        self._allowed = allowed_types(meeting_types)
        countries = {c: i for i, c in enumerate(sorted({p.country.upper() for p in profiles}))}
        self._country = np.array([countries[p.country.upper()] for p in profiles], dtype=np.intp)
        self._stage = np.array(
            [chain.stage_of(p.value_chain_position, p.organisation_type) for p in profiles],
            dtype=np.intp,
        )
        self._sectors = _Labels([p.sectors for p in profiles])
        self._technologies = _Labels([p.technologies for p in profiles])
        self._markets = _Labels([p.markets for p in profiles])
        dimension = next(
            (v.shape[1] for p in self.participants for v in (p.request_vectors, p.offer_vectors)),
            1,
        )
        self._requests, self._r_starts = _stack(
            [p.request_vectors for p in self.participants], dimension
        )
        self._offers, self._o_starts = _stack(
            [p.offer_vectors for p in self.participants], dimension
        )
        self._r_ends = np.append(self._r_starts[1:], len(self._requests)).astype(np.intp)
        self._o_ends = np.append(self._o_starts[1:], len(self._offers)).astype(np.intp)
        self._request_slots = _slots(self._requests, self._r_starts, self._r_ends)
        self._offer_slots = _slots(self._offers, self._o_starts, self._o_ends)
        self.meeting_types = tuple(meeting_types)
        self._engaged = self._engaged_of(engaged)

    def _engaged_of(self, engaged: Iterable[tuple[str, str]]) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for a, b in engaged:
            if a in self.index and b in self.index:
                ia, ib = self.index[a], self.index[b]
                found.setdefault(ia, []).append(ib)
                found.setdefault(ib, []).append(ia)
        return found

    def built_from(self, participants: Sequence[Participant], meeting_types: Iterable[str]) -> bool:
        """Whether this ranker's arrays were made from these very participants (the same
        objects, in order) and meeting types: then only the engaged pairs can differ."""
        return (
            len(participants) == len(self.participants)
            and all(a is b for a, b in zip(participants, self.participants, strict=True))
            and tuple(meeting_types) == self.meeting_types
        )

    def with_engaged(self, engaged: Iterable[tuple[str, str]]) -> Ranker:
        """The same ranker with other engaged pairs (its arrays shared, not copied: a
        ranker is never changed after it is made). Building the arrays is most of a
        ranker's cost (some 60 ms at 3,500 participants); the pairs are not."""
        other = copy.copy(self)
        other._engaged = self._engaged_of(engaged)
        return other

    def __len__(self) -> int:
        return len(self.ids)

    # -- text ---------------------------------------------------------------------

    @staticmethod
    def _item_rows(rows: Rows, starts: Rows, ends: Rows) -> tuple[Rows, Rows, Rows]:
        """Item rows of `rows` (consecutive per participant), where each starts, how many."""
        counts = ends[rows] - starts[rows]
        local = np.zeros(len(rows), dtype=np.intp)
        local[1:] = np.cumsum(counts)[:-1]
        spans = [np.arange(starts[r], ends[r]) for r in rows]
        items = np.concatenate(spans) if spans else np.zeros(0, dtype=np.intp)
        return items, local, counts

    def request_to_offer(self, rows: Rows) -> Scores:
        """text(r's requests → j's offers) for r in rows, j in all: (len(rows), N)."""
        items, local, counts = self._item_rows(rows, self._r_starts, self._r_ends)
        per_offerer = _best_per_owner(self._requests[items], self._offer_slots)  # (items, N)
        return _best_per_row_group(per_offerer, local, counts)

    def offer_from_request(self, rows: Rows) -> Scores:
        """text(j's requests → r's offers) for r in rows, j in all: (len(rows), N)."""
        items, local, counts = self._item_rows(rows, self._o_starts, self._o_ends)
        per_requester = _best_per_owner(self._offers[items], self._request_slots)  # (items, N)
        return _best_per_row_group(per_requester, local, counts)

    # -- scores -------------------------------------------------------------------

    def _structure(self, rows: Rows) -> Scores:
        w = self.weights
        out = w.sectors * self._sectors.jaccard(rows)
        out += w.technologies * self._technologies.jaccard(rows)
        out += w.markets * self._markets.jaccard(rows)
        out += w.value_chain * chain.COMPLEMENT[self._stage[rows]][:, self._stage]
        out += w.country * (self._country[rows, None] != self._country[None, :])
        return out.astype(np.float32, copy=False)

    def _mask(self, rows: Rows, scores: Scores) -> Scores:
        allowed = self._allowed[self._types[rows]][:, self._types]
        scores[~allowed] = -np.inf
        for at, r in enumerate(rows):
            scores[at, r] = -np.inf
            for other in self._engaged.get(int(r), ()):
                scores[at, other] = -np.inf
        return scores

    def _combine(self, rows: Rows, forward: Scores, backward: Scores) -> Scores:
        w = self.weights
        scores = (w.request_to_offer * forward + w.offer_to_request * backward).astype(np.float32)
        scores += self._structure(rows)
        return self._mask(rows, scores)

    @blas.single_thread
    def scores_from(self, rows: Rows) -> Scores:
        """score(r → j) for r in rows, every j; -inf where not eligible."""
        return self._combine(rows, self.request_to_offer(rows), self.offer_from_request(rows))

    @blas.single_thread
    def scores_towards(self, j: int) -> Scores:
        """score(i → j) for every i (how much each would want to meet j)."""
        rows = np.array([j], dtype=np.intp)
        forward, backward = self.offer_from_request(rows), self.request_to_offer(rows)
        # score(i → j) uses text(i → j) = backward-of-j and text(j → i) = forward-of-j;
        # the structured signals and the eligibility are symmetric.
        column: Scores = self._combine(rows, forward, backward)[0]
        return column

    # -- lists --------------------------------------------------------------------

    def _lists(self, rows: Rows, scores: Scores, k: int) -> dict[str, TopList]:
        tops = top_k_rows(scores, self.ids, k, self._ranks)
        return {self.ids[r]: entries for r, entries in zip(rows, tops, strict=True)}

    def list_for(self, registration_id: str, k: int = K) -> TopList:
        return self.lists_for([registration_id], k)[registration_id]

    @blas.single_thread
    def lists_for(self, registration_ids: Sequence[str], k: int = K) -> dict[str, TopList]:
        rows = np.array([self.index[r] for r in registration_ids], dtype=np.intp)
        out: dict[str, TopList] = {}
        for start in range(0, len(rows), 256):
            block = rows[start : start + 256]
            out.update(self._lists(block, self.scores_from(block), k))
        return out

    @blas.single_thread
    def all_lists(self, k: int = K, block: int = 512) -> dict[str, TopList]:
        """Every participant's list, from scratch: text(→) for all pairs once, then blocks."""
        n = len(self.ids)
        forward = np.empty((n, n), dtype=np.float32)
        for start in range(0, n, block):
            rows = np.arange(start, min(n, start + block), dtype=np.intp)
            forward[rows] = self.request_to_offer(rows)
        backward = _transpose(forward)  # text(j → i) at [i, j]
        out: dict[str, TopList] = {}
        for start in range(0, n, block):
            rows = np.arange(start, min(n, start + block), dtype=np.intp)
            out.update(self._lists(rows, self._combine(rows, forward[rows], backward[rows]), k))
        return out
