"""Recall@10 on the labelled set: the sentence model finds partners described in other words.

tests/unit/matching_recommend/data/matching_labelled.json: 50 requesters, each
with one planted partner whose offer answers the request in different words,
and one lexical trap; 150 organisations in all (see its "about").
`python -m bench.recommendations` prints the same figures.
"""

from __future__ import annotations

import pytest
from recommend_cases import HELD_OUT, LABELLED, load_json

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


# -- the held-out set: written apart from the tuned one, never used to tune ------------


@pytest.fixture(scope="module")
def held_out() -> Labelled:
    return evaluation.load(load_json(HELD_OUT))


def test_the_held_out_set_shares_no_organisation_or_sector_with_the_tuned_one(
    labelled: Labelled, held_out: Labelled
) -> None:
    ids = {p.registration_id for p in held_out.profiles}
    assert len(held_out.pairs) == 40 and len(ids) == len(held_out.profiles) == 120
    assert all(r in ids and p in ids for r, p in held_out.pairs)
    assert not ids & {p.registration_id for p in labelled.profiles}
    tuned_sectors = {s for p in labelled.profiles for s in p.sectors}
    assert not tuned_sectors & {s for p in held_out.profiles for s in p.sectors}


def test_sentence_model_recall_at_10_on_the_held_out_set(held_out: Labelled) -> None:
    """The figure to expect on profiles nobody tuned for (README: tuned vs held out)."""
    encode = minilm.encoder().encode
    assert evaluation.recall_at(held_out, encode, 10, evaluation.TEXT_ONLY).value >= 0.9
    full = evaluation.recall_at(held_out, encode, 10)
    assert full.value >= 0.9, full.ranks
