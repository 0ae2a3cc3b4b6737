"""`shared.rebuild_topics.consumed_events`: which records of the consumed topics a rebuild
keeps, and how. A record is passed over by its raw `ce_type` header alone when no
handler here takes the type (the last of a repeated header counting, an old version
counting as the type it upcasts to), or when the live consumer did not apply it; a
type folded from the envelope (`Plan.inserts`) is kept apart, unvalidated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord

from services.registration import contacts
from services.registration.rebuild import PLAN as REGISTRATION
from shared.contracts import registry
from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    MeetingDeclined,
    MeetingRequested,
    MeetingRequestedV1,
)
from shared.envelope import Envelope
from shared.rebuild import Plan
from shared.rebuild_topics import consumed_events
from tests.unit.scheduling_service.factories import accepted, cancelled

Headers = list[tuple[str, bytes | None]]


async def _reads(*_: Any) -> None:
    return None


_PLAN = Plan("x", Path("."), ("t",), None, consumed={MeetingRequested.ce_type(): _reads})


def _record(envelope: Envelope, offset: int, headers: Headers | None = None) -> ConsumerRecord:
    value = envelope.kafka_value()
    return ConsumerRecord(
        "matching.events",
        0,
        offset,
        1_000 + offset,
        0,
        envelope.key.encode(),
        value,
        None,
        len(envelope.key),
        len(value),
        tuple(envelope.kafka_headers() if headers is None else headers),
    )


def _requested(n: int, *, old: bool = False) -> Envelope:
    fields = {
        "request_id": f"q-{n}",
        "event_id": "e-1",
        "requester_id": "a",
        "recipient_id": "b",
        "meeting_type": "Business2Business",
        "expires_at": "2026-01-01T00:00:00+00:00",
    }
    payload: EventPayload = (
        MeetingRequestedV1.model_validate({**fields, "message": "hello"})
        if old
        else MeetingRequested.model_validate(fields)
    )
    return Envelope.wrap(payload, key="e-1")


def _applied(*envelopes: Envelope) -> set[str]:
    return {f"{e.source}#{e.id}" for e in envelopes}


def test_records_for_no_handler_here_are_passed_over_by_their_raw_type() -> None:
    current, old = _requested(1), _requested(2, old=True)
    declined = Envelope.wrap(
        MeetingDeclined(request_id="q-3", event_id="e-1", requester_id="a", recipient_id="b"),
        key="e-1",
    )
    retyped = _requested(4)  # a later ce_type header names a type no handler here takes
    retyped_headers: Headers = [*retyped.kafka_headers(), ("ce_type", declined.type.encode())]
    untyped = _requested(5)
    untyped_headers: Headers = [(n, v) for n, v in untyped.kafka_headers() if n != "ce_type"]
    unreadable = _requested(6)
    unreadable_headers: Headers = [*unreadable.kafka_headers(), ("ce_type", b"\xff\xfe")]
    not_applied = _requested(7)
    everything = (current, old, declined, retyped, untyped, unreadable, not_applied)
    found, every, add, inserted = consumed_events(_PLAN, registry(), _applied(*everything[:-1]))
    add(
        [
            _record(current, 0),
            _record(old, 1),
            _record(declined, 2),
            _record(retyped, 3, retyped_headers),
            _record(untyped, 4, untyped_headers),
            _record(unreadable, 5, unreadable_headers),
            _record(not_applied, 6),
        ]
    )
    assert [envelope.id for _, (envelope, _) in found] == [current.id, old.id]
    assert [place[3] for place, _ in found] == [0, 1]
    assert all(isinstance(payload, MeetingRequested) for _, (_, payload) in found)
    assert every == [] and inserted == {}


def test_registration_folds_its_accepted_pairs_from_the_envelopes() -> None:
    """An accepted meeting's pair is an insert from the envelope (no payload model); its
    cancellation goes through its handler, after the inserts."""
    met = Envelope.wrap(accepted("e-1", "q-1", "a", "b"), key="e-1")
    gone = Envelope.wrap(cancelled("e-1", "q-1", "a", "b"), key="e-1")
    found, _, add, inserted = consumed_events(REGISTRATION, registry(), _applied(met, gone))
    add([_record(met, 0), _record(gone, 1)])
    assert [envelope.id for _, (envelope, _) in found] == [gone.id]
    assert {insert: [e.id for e in kept] for insert, kept in inserted.items()} == {
        contacts.ACCEPTED_PAIRS: [met.id]
    }
    assert contacts.ACCEPTED_PAIRS.args(met) == ("q-1", "e-1", "a", "b")
    assert REGISTRATION.consumed[met.type] is contacts.ACCEPTED_PAIRS.handler
