"""Step 6 of `bench.recommendations`: recall on the tuned set and on the held-out set.

tests/unit/matching_recommend/data/matching_labelled.json has 50 pairs and is the
set the weights were tuned on; matching_heldout.json has 40 pairs written apart
(other subjects, sectors and wording; every attribute but the texts random), so
its figure is the one to expect on profiles nobody tuned for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from services.matching.recommend import evaluation, minilm, tfidf

DATA = Path(__file__).resolve().parents[1] / "tests" / "unit" / "matching_recommend" / "data"
LABELLED = DATA / "matching_labelled.json"
HELD_OUT = DATA / "matching_heldout.json"


class Figures(Protocol):
    data: dict[str, Any]

    def add(self, key: str, label: str, value: Any, shown: str) -> None: ...


def step_quality(f: Figures) -> None:
    """recall@10 (and @1) of TF-IDF and the sentence model, text only and full score."""
    sentences = minilm.encoder().encode
    for prefix, name, path in (("", "tuned", LABELLED), ("heldout_", "held-out", HELD_OUT)):
        labelled = evaluation.load(json.loads(path.read_text(encoding="utf-8")))
        words = tfidf.tfidf_encoder(evaluation.corpus(labelled.profiles))
        for model_name, encode in (("TF-IDF", words), ("all-MiniLM-L6-v2", sentences)):
            for mode, weights in (("text only", evaluation.TEXT_ONLY), ("full score", None)):
                r = evaluation.recall_at(labelled, encode, 10, weights)
                missed = sorted(k for k, v in r.ranks.items() if v > 10)
                key = f"{prefix}recall10_{model_name.split('-')[0].lower()}_{mode.split()[0]}"
                at1 = sum(rank == 1 for rank in r.ranks.values()) / r.total
                f.data[key.replace("recall10", "recall1")] = at1
                shown = f"{r.value:.2f} ({r.hits}/{r.total}), @1 {at1:.2f}"
                if missed and len(missed) <= 5:
                    shown += f"; missed {', '.join(f'{m}@{r.ranks[m]}' for m in missed)}"
                f.add(key, f"recall@10, {name} set, {model_name}, {mode}", r.value, shown)
