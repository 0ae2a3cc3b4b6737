"""JSON on the event path (envelopes, event store, history): orjson where it gives the
same result as the standard library, the standard library where it might not.

orjson is 3-10x faster, but differs on some inputs, each sent to the standard library:
- decoding, it refuses NaN / Infinity, lone surrogates and nesting past 1,024 levels
  (which `json` accepts or answers with its own error), and it reads an integer beyond
  64 bits as a float, silently: a value with a run of 19 digits or more (every such
  integer has one) is decoded by `json` instead;
- encoding, it refuses integers beyond 64 bits, keys that are not strings and lone
  surrogates (`json` then writes ASCII with `\\uXXXX` escapes, as before).
Encoded text is compact and keeps non-ASCII characters as they are (`json` escaped them
as `\\uXXXX`): the same JSON value, different bytes. NaN and infinities, which are not
JSON, come out as `null` (where `json` wrote `NaN`, which PostgreSQL's jsonb refused).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Digits kept, everything else a space: an integer orjson would read as a float shows
# up as nineteen zeros in a row.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19


def loads(raw: bytes | str) -> Any:
    """`raw` decoded as `json.loads` would; ValueError on what is not JSON, nesting too
    deep for `json` included (it raised RecursionError)."""
    encoded = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _LONG_NUMBER not in encoded.translate(_DIGITS):
        try:
            return orjson.loads(encoded)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def loads_keeping_strict(raw: bytes) -> tuple[Any, bytes | None]:
    """`loads`, and `raw` itself when orjson read it: strict JSON (RFC 8259) in valid
    UTF-8 (orjson refuses anything else), which PostgreSQL's jsonb reads too, so it can be
    stored as it came. None when the standard library read it (NaN, a long integer, a
    lone surrogate: `dumps` writes those as jsonb takes them)."""
    if _LONG_NUMBER not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw), raw
        except orjson.JSONDecodeError:
            pass
    return loads(raw), None


def dumps_bytes(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"))
