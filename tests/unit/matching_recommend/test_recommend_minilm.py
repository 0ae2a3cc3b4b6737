"""The numpy all-MiniLM-L6-v2 against reference outputs of sentence-transformers and tokenizers.

The reference file was made once with sentence-transformers (PyTorch) and the
`tokenizers` package from the same model files (see its "about").
"""

from __future__ import annotations

import numpy as np
import pytest
from recommend_cases import REFERENCE, load_json

from services.matching.recommend import minilm, wordpiece


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    data: dict[str, object] = load_json(REFERENCE)
    return data


def test_tokenizer_matches_the_reference(reference: dict[str, object]) -> None:
    tokenizer = minilm.encoder().tokenizer
    texts = reference["texts"]
    ids = reference["token_ids"]
    assert isinstance(texts, list) and isinstance(ids, list)
    for text, expected in zip(texts, ids, strict=True):
        truncated = expected if len(expected) <= 256 else [*expected[:255], expected[-1]]
        assert tokenizer.encode(text, 256) == truncated, text
    extra = reference["tokenizer_only"]
    assert isinstance(extra, dict)
    for text, expected in extra.items():
        assert tokenizer.encode(text, 256) == expected, text


def test_vectors_match_sentence_transformers(reference: dict[str, object]) -> None:
    texts = reference["texts"]
    assert isinstance(texts, list)
    expected = np.array(reference["vectors"], dtype=np.float32)
    got = minilm.encoder().encode(texts)
    assert got.shape == expected.shape == (len(texts), minilm.DIMENSION)
    assert np.abs(got - expected).max() < 2e-5
    assert (np.sum(got * expected, axis=1) > 0.99999).all()
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_a_vector() -> None:
    texts = ["short", "a somewhat longer text about laser welding of battery trays", "mid length"]
    encoder = minilm.encoder()
    together = encoder.encode(texts, batch_tokens=4096)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert np.abs(together - alone).max() < 1e-5


def test_no_texts_no_vectors() -> None:
    assert minilm.encoder().encode([]).shape == (0, minilm.DIMENSION)


def test_paraphrases_are_closer_than_shared_words() -> None:
    request, paraphrase, trap = minilm.encoder().encode(
        [
            "partners to recycle end-of-life lithium-ion batteries",
            "hydrometallurgical recovery of cobalt, nickel and lithium from spent EV cells",
            "lithium-ion battery packs for e-bikes",
        ]
    )
    assert float(request @ paraphrase) > 0.45
    assert float(request @ trap) > 0.3  # related, and the ranking must cope with that


def test_wordpiece_basics() -> None:
    vocab = {
        t: i
        for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", ","])
    }
    tokenizer = wordpiece.WordPiece(vocab)
    assert tokenizer.encode("UNAFFABLE, unaffable", 16) == [2, 4, 5, 6, 7, 4, 5, 6, 3]
    assert tokenizer.encode("xyz", 16) == [2, 1, 3]
    assert tokenizer.encode("unaffable " * 10, 5) == [2, 4, 5, 6, 3]
