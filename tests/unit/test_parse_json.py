"""`PayloadRegistry.parse_json` (the rebuild's own events, validated from their JSON
text by pydantic) gives what `parse` of the decoded dictionary gives, for every event
of a generated brokerage event and for a superseded version (its upcaster runs); what
`parse` refuses, it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bench.rebuild_events import Size, generate
from shared import json_codec
from shared.contracts import registry
from shared.contracts.matching import MeetingRequested, MeetingRequestedV1
from shared.contracts.registration import MeetingType
from shared.contracts.registry import UnknownEventType

PAYLOADS = registry()


def test_every_generated_event_reads_the_same_from_its_json_text() -> None:
    timeline = generate(Size(participants=40, accepted=60, declined=10, burst=20), seed=5)
    envelopes = [env for events in timeline.events.values() for _, env in events]
    assert len({env.type for env in envelopes}) > 10
    for env in envelopes:
        text = json_codec.dumps(env.data)
        assert PAYLOADS.parse_json(env.type, text) == PAYLOADS.parse(env.type, env.data)
        assert PAYLOADS.parse_json(env.type, text.encode()) == PAYLOADS.parse(env.type, env.data)


def test_a_superseded_version_is_upcast() -> None:
    old = MeetingRequestedV1(
        request_id="r1",
        event_id="e1",
        requester_id="a",
        recipient_id="b",
        meeting_type=MeetingType.CLUSTER2CLUSTER,
        message="Guten Tag",
        expires_at=datetime(2026, 12, 24, tzinfo=UTC),
    )
    text = old.model_dump_json()
    parsed = PAYLOADS.parse_json(old.ce_type(), text)
    assert isinstance(parsed, MeetingRequested)
    assert parsed == PAYLOADS.parse(old.ce_type(), json_codec.loads(text))
    assert parsed.message is not None and parsed.message.text == "Guten Tag"


def test_what_parse_refuses_it_refuses() -> None:
    with pytest.raises(ValidationError):
        PAYLOADS.parse_json(MeetingRequested.ce_type(), '{"request_id": "r1"}')
    with pytest.raises(ValidationError):
        PAYLOADS.parse_json(MeetingRequested.ce_type(), "not json")
    with pytest.raises(UnknownEventType):
        PAYLOADS.parse_json("eu.matchmaking.nobody.Nothing.v1", "{}")
