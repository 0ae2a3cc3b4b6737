"""Recall@10 on the labelled set: the sentence model finds partners described in other words.

tests/unit/matching_recommend/data/matching_labelled.json: 50 requesters, each
with one planted partner whose offer answers the request in different words,
and one lexical trap; 150 organisations in all (see its "about").
`python -m bench.recommendations` prints the same figures.
"""

from __future__ import annotations

import pytest
from recommend_cases import LABELLED, load_json

from services.matching.recommend import evaluation, minilm, tfidf
from services.matching.recommend.evaluation import Labelled


@pytest.fixture(scope="module")
def labelled() -> Labelled:
    return evaluation.load(load_json(LABELLED))


def test_the_set_is_what_it_says(labelled: Labelled) -> None:
    ids = {p.registration_id for p in labelled.profiles}
    assert len(labelled.pairs) == 50 and len(ids) == len(labelled.profiles) == 150
    assert all(r in ids and p in ids for r, p in labelled.pairs)


def test_sentence_model_recall_at_10(labelled: Labelled) -> None:
    encode = minilm.encoder().encode
    text_only = evaluation.recall_at(labelled, encode, 10, evaluation.TEXT_ONLY)
    full = evaluation.recall_at(labelled, encode, 10)
    assert text_only.value >= 0.9, text_only.ranks
    assert full.value >= 0.9, full.ranks


def test_word_overlap_does_much_worse(labelled: Labelled) -> None:
    encode = tfidf.tfidf_encoder(evaluation.corpus(labelled.profiles))
    words = evaluation.recall_at(labelled, encode, 10, evaluation.TEXT_ONLY)
    sentences = evaluation.recall_at(labelled, minilm.encoder().encode, 10, evaluation.TEXT_ONLY)
    assert words.value <= sentences.value - 0.5
