"""The CloudEvents envelope in Kafka binary mode, and the payload registry."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import ClassVar

import pytest

from shared.asyncapi import OUT, documents, render
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry, UnknownEventType
from shared.envelope import Envelope, MalformedEnvelope


class ThingHappened(EventPayload):
    producer: ClassVar[str] = "things"
    event_name: ClassVar[str] = "ThingHappened"
    thing_id: str


class ThingHappenedV2(EventPayload):
    producer: ClassVar[str] = "things"
    event_name: ClassVar[str] = "ThingHappened"
    event_version: ClassVar[int] = 2
    thing_id: str
    colour: str


def test_round_trip_through_kafka_headers() -> None:
    envelope = Envelope.wrap(
        ThingHappened(thing_id="t1"),
        key="event-1",
        subject="thing-t1",
        correlation_id="c1",
        causation_id="x1",
    ).with_trace("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    headers = dict(envelope.kafka_headers())
    assert headers["ce_type"] == b"eu.matchmaking.things.ThingHappened.v1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == b"/services/things"
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"].startswith(b"00-0af7")
    back = Envelope.from_kafka(b"event-1", envelope.kafka_value(), envelope.kafka_headers())
    assert back == envelope
    assert Envelope.from_record(json.loads(json.dumps(envelope.to_record()))) == envelope


def test_an_envelope_made_without_init_is_the_same_as_one_made_with_it() -> None:
    """`Envelope._of` (decoding's fast path) against the dataclass's own constructor:
    equal, frozen, and a record the constructor refuses is refused as before."""
    envelope = Envelope.wrap(ThingHappened(thing_id="t1"), key="event-1", subject="thing-t1")
    record = json.loads(json.dumps(envelope.to_record()))
    made = Envelope.from_record(record)
    assert made == envelope and repr(made) == repr(envelope)
    assert vars(made) == vars(envelope)
    with pytest.raises(AttributeError):
        made.key = "other"  # type: ignore[misc]
    sparse = {k: v for k, v in record.items() if v is not None}  # optional fields left out
    assert Envelope.from_record(sparse) == envelope
    with pytest.raises(TypeError):
        Envelope.from_record({**record, "colour": "red"})  # a field it does not have
    with pytest.raises(TypeError):
        Envelope.from_record({k: v for k, v in record.items() if k != "source"})


def test_the_last_of_a_repeated_header_counts_as_in_a_mapping() -> None:
    """`from_kafka` reads the record's header list in one pass (`header_texts`): as the
    mapping `from_kafka_headers` takes, the last of a name counts, a value-less one too."""
    envelope = Envelope.wrap(ThingHappened(thing_id="t1"), key="event-1", subject="first")
    headers: list[tuple[str, bytes | None]] = [
        *envelope.kafka_headers(),
        ("ce_subject", b"second"),
        ("ce_correlationid", b"c1"),
        ("ce_correlationid", None),
    ]
    back = Envelope.from_kafka(b"event-1", envelope.kafka_value(), headers)
    assert back.subject == "second" and back.correlation_id is None
    assert back == Envelope.from_kafka_headers(b"event-1", envelope.kafka_value(), dict(headers))
    assert back == replace(envelope, subject="second")


@pytest.mark.parametrize("headers", [[], [("ce_id", b"1"), ("ce_source", b"/s")]])
def test_records_without_cloudevents_headers_are_malformed(
    headers: list[tuple[str, bytes]],
) -> None:
    with pytest.raises(MalformedEnvelope):
        Envelope.from_kafka(None, b"{}", headers)


def test_registry_upcasts_old_versions() -> None:
    registry = PayloadRegistry([ThingHappenedV2])
    registry.register_upcaster(
        ThingHappened.ce_type(),
        ThingHappenedV2.ce_type(),
        lambda data: {**data, "colour": "unknown"},
    )
    parsed = registry.parse(ThingHappened.ce_type(), {"thing_id": "t1"})
    assert parsed == ThingHappenedV2(thing_id="t1", colour="unknown")
    with pytest.raises(UnknownEventType):
        registry.parse("eu.matchmaking.things.Nothing.v1", {})


def test_checked_in_asyncapi_documents_match_the_models() -> None:
    for producer, doc in documents().items():
        path = OUT / f"{producer}.json"
        assert path.exists(), f"run `python -m shared.asyncapi` to write {path}"
        assert path.read_text() == render(doc), f"{path} is stale: run `python -m shared.asyncapi`"
