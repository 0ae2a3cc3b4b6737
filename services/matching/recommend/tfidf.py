"""Word-overlap baseline: TF-IDF vectors (the comparison in the quality benchmark).

Lower-cased word tokens without English stop words, sublinear term frequency,
smoothed inverse document frequency over the texts given, L2-normalised rows:
the usual set-up (scikit-learn's `TfidfVectorizer(sublinear_tf=True,
stop_words="english")` is close), written out here to avoid the dependency.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from services.matching.recommend.profiles import TextEncoder, Vectors

_WORD = re.compile(r"\b\w\w+\b")  # scikit-learn's default token pattern
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its itself just me more
    most my no nor not now of off on once only or other our ours out over own same she should
    so some such than that the their theirs them then there these they this those through to
    too under until up very was we were what when where which while who whom why will with
    would you your yours""".split()
)


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def tfidf_encoder(corpus: Sequence[str]) -> TextEncoder:
    """An encoder whose vocabulary and document frequencies come from `corpus`."""
    documents = [set(words(text)) for text in corpus]
    frequency = Counter(w for doc in documents for w in doc)
    vocabulary = {w: i for i, w in enumerate(sorted(frequency))}
    n = len(documents)
    idf = np.array(
        [math.log((1 + n) / (1 + frequency[w])) + 1 for w in sorted(frequency)], dtype=np.float32
    )

    def encode(texts: list[str]) -> Vectors:
        out = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            for word, count in Counter(words(text)).items():
                column = vocabulary.get(word)
                if column is not None:
                    out[row, column] = (1 + math.log(count)) * idf[column]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: Vectors = out / np.maximum(norms, 1e-12)
        return normalised

    return encode
