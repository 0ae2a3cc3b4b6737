"""JSON on the event path (`shared.json_codec`): orjson's speed, the standard library's
results, and no input that crashes whoever decodes a Kafka record."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import json_codec
from shared.envelope import Envelope, MalformedEnvelope

HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e1"),
    ("ce_source", b"/services/things"),
    ("ce_type", b"eu.matchmaking.things.ThingHappened.v1"),
    ("ce_time", b"2026-12-05T01:00:00+00:00"),
]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 123456789012345678901234567890}',  # beyond 64 bits: orjson makes it a float
        b'{"n": -9223372036854775809}',  # just below int64
        b'{"n": 18446744073709551616}',  # just above uint64
        b'{"x": NaN, "y": Infinity}',  # not JSON, accepted by `json`
        b'{"s": "\\ud800"}',  # a lone surrogate, escaped
        b'{"a": 1, "a": 2}',  # repeated key: the last one
        '{"s": "caf\u00e9 \U0001f600"}'.encode(),
        '{"s": "caf\u00e9"}'.encode("utf-16"),  # `json` detects UTF-16 too
    ],
)
def test_decodes_as_the_standard_library(raw: bytes) -> None:
    expected, got = json.loads(raw), json_codec.loads(raw)
    assert repr(got) == repr(expected)  # NaN != NaN, but their reprs are equal
    if isinstance(raw, bytes) and raw.isascii():
        assert repr(json_codec.loads(raw.decode())) == repr(expected)  # str input


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 123456789012345678901234567890}',
        b'{"x": NaN, "y": Infinity}',
        b'{"s": "\\ud800"}',
        '{"s": "caf\u00e9"}'.encode("utf-16"),
    ],
)
def test_the_text_is_kept_only_when_orjson_read_it(raw: bytes) -> None:
    value, text = json_codec.loads_keeping_strict(raw)
    assert repr(value) == repr(json.loads(raw)) and text is None  # `dumps` writes it again


def test_strict_json_keeps_its_own_text() -> None:
    raw = '{"p": 0.10000000000000001, "s": "caf\u00e9", "e": "\\u00e9"}'.encode()
    value, text = json_codec.loads_keeping_strict(raw)
    assert value == json.loads(raw) and text == raw
    envelope = Envelope.from_kafka(b"k", raw, HEADERS)
    assert envelope.data == value and envelope.data_json == raw
    # The text is of the data it came with: a changed envelope does not keep it.
    assert replace(envelope, data={"p": 1}).data_json is None
    assert replace(envelope) == envelope  # and it is not compared


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"a": 1,}', b"\xff\xfe\x00", b'{"a": "\x01"}', b"[" * 5000 + b"]" * 5000]
)
def test_what_is_not_json_is_a_value_error(raw: bytes) -> None:
    # Nested past the recursion limit, `json` raised RecursionError: a ValueError here.
    with pytest.raises(ValueError):
        json_codec.loads(raw)


@pytest.mark.parametrize(
    "value",
    [
        {"n": 10**30},  # orjson refuses
        {1: "non-str key", None: 2},  # orjson refuses; `json` writes "1", "null"
        {"s": "\ud800"},  # orjson refuses a lone surrogate
        {"s": "caf\u00e9", "l": [1, 2.5, None, True]},
    ],
)
def test_encodes_what_the_standard_library_encodes(value: dict[Any, Any]) -> None:
    assert json.loads(json_codec.dumps(value)) == json.loads(json.dumps(value))
    assert json.loads(json_codec.dumps_bytes(value)) == json.loads(json.dumps(value))


def test_refuses_what_the_standard_library_refuses() -> None:
    with pytest.raises(TypeError):
        json_codec.dumps({"x": {1, 2}})
    with pytest.raises(TypeError):
        json_codec.dumps_bytes({"x": object()})


def test_non_finite_floats_become_null() -> None:
    # `json` wrote NaN, which is not JSON (PostgreSQL's jsonb refused it).
    assert json_codec.dumps({"x": math.nan, "y": math.inf}) == '{"x":null,"y":null}'


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_round_trips_like_the_standard_library(value: Any) -> None:
    text = json.dumps(value)
    assert repr(json_codec.loads(text)) == repr(json.loads(text))
    assert repr(json_codec.loads(text.encode("utf-8", "surrogatepass"))) == repr(json.loads(text))
    assert repr(json_codec.loads(json_codec.dumps(value))) == repr(json.loads(text))


@given(st.binary(max_size=64))
def test_no_record_value_crashes_the_envelope(value: bytes) -> None:
    try:
        envelope = Envelope.from_kafka(b"k", value, HEADERS)
    except MalformedEnvelope:
        return
    assert isinstance(envelope.data, dict)


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"n": 123456789012345678901234567890}',
        b'{"x": NaN}',
        b"\xff",
        b"null",
        b"[1]",
    ],
)
def test_hostile_values_are_malformed_or_read_as_before(value: bytes) -> None:
    try:
        expected: Any = json.loads(value)
    except (ValueError, RecursionError):
        expected = MalformedEnvelope
    if not isinstance(expected, dict):
        with pytest.raises(MalformedEnvelope):
            Envelope.from_kafka(b"k", value, HEADERS)
        return
    assert repr(Envelope.from_kafka(b"k", value, HEADERS).data) == repr(expected)


def test_headers_with_no_value_or_bad_utf8_do_not_crash() -> None:
    headers = [*HEADERS, ("ce_subject", b"\xff"), ("content-type", None)]
    envelope = Envelope.from_kafka(None, b"{}", headers)
    assert envelope.subject == "\ufffd"
    assert envelope.key == ""
