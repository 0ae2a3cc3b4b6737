"""BERT's uncased WordPiece tokenizer, as all-MiniLM-L6-v2 was trained with it.

Normalisation (the model's `BertNormalizer`: clean text, space around CJK
ideographs, lower case, accents stripped), pre-tokenisation on white space and
punctuation, then greedy longest-match-first word pieces (`##` marks a piece
that continues a word). A test checks the ids against the `tokenizers` package
on a varied corpus.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"
MAX_CHARS_PER_WORD = 100


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_whitespace(ch: str) -> bool:
    if ch in " \t\n\r":
        return True
    return unicodedata.category(ch) == "Zs"


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def normalise(text: str) -> str:
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    decomposed = unicodedata.normalize("NFD", "".join(out).lower())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def pre_tokenise(text: str) -> Iterator[str]:
    """Words of normalised text: runs of non-space, each punctuation mark on its own."""
    for chunk in text.split():
        start = 0
        for i, ch in enumerate(chunk):
            if _is_punctuation(ch):
                if start < i:
                    yield chunk[start:i]
                yield ch
                start = i + 1
        if start < len(chunk):
            yield chunk[start:]


class WordPiece:
    def __init__(self, vocab: Mapping[str, int]) -> None:
        self.vocab = dict(vocab)
        self.cls_id = self.vocab[CLS]
        self.sep_id = self.vocab[SEP]
        self.pad_id = self.vocab[PAD]
        self.unk_id = self.vocab[UNK]
        self._word_cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_vocab_file(cls, path: Path) -> WordPiece:
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls({token: index for index, token in enumerate(lines)})

    def _word(self, word: str) -> tuple[int, ...]:
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        pieces: list[int] = []
        if len(word) > MAX_CHARS_PER_WORD:
            pieces = [self.unk_id]
        else:
            start = 0
            while start < len(word):
                end = len(word)
                found = None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    found = self.vocab.get(piece)
                    if found is not None:
                        break
                    end -= 1
                if found is None:
                    pieces = [self.unk_id]
                    break
                pieces.append(found)
                start = end
        result = tuple(pieces)
        if len(self._word_cache) < 200_000:
            self._word_cache[word] = result
        return result

    def encode(self, text: str, max_length: int) -> list[int]:
        """[CLS] word pieces [SEP], truncated to `max_length` ids in all."""
        ids = [self.cls_id]
        limit = max_length - 1
        for word in pre_tokenise(normalise(text)):
            ids.extend(self._word(word))
            if len(ids) >= limit:
                del ids[limit:]
                break
        ids.append(self.sep_id)
        return ids


@lru_cache(maxsize=4)
def load(path: Path) -> WordPiece:
    return WordPiece.from_vocab_file(path)
