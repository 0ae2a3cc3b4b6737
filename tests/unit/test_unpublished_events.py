"""Event types kept in their producer's event store only (`EventPayload.published`): no
outbox row is written for them, by any path of `shared.outbox`, and the AsyncAPI
documents still describe them, as no longer published."""

from __future__ import annotations

from typing import Any

from shared import json_codec, outbox
from shared.asyncapi import documents
from shared.contracts import ALL_EVENTS, UNPUBLISHED
from shared.contracts.notification import Channel, NotificationQueued, NotificationSent
from shared.envelope import Envelope

_COMMON: dict[str, Any] = {
    "delivery_id": "d1",
    "event_id": "ev",
    "recipient_id": "r1",
    "channel": Channel.EMAIL,
    "kind": "meeting.placed",
    "cause_id": "/services/scheduling#e1",
}


def _envelopes() -> list[Envelope]:
    queued = NotificationQueued(**_COMMON, context={}, message_id="<m1@x>")
    sent = NotificationSent(**_COMMON, attempts=1, message_id="<m1@x>")
    return [
        Envelope.wrap(queued, key="ev", subject="delivery-d1"),
        Envelope.wrap(sent, key="ev", subject="delivery-d1"),
    ]


def test_only_the_decision_to_send_is_kept_unpublished() -> None:
    assert {m.ce_type() for m in ALL_EVENTS if not m.published} == UNPUBLISHED
    assert UNPUBLISHED == {NotificationQueued.ce_type()}


def test_no_outbox_row_is_made_for_an_unpublished_event() -> None:
    queued, sent = _envelopes()
    assert outbox.published([queued, sent]) == [sent]
    assert outbox.references([queued, sent]) == [[sent.id], ["notification.events"], ["ev"]]
    ids, topics, keys, records = outbox.columns([queued, sent])
    assert (ids, topics, keys) == ([sent.id], ["notification.events"], ["ev"])
    assert [json_codec.loads(r)["id"] for r in records] == [sent.id]
    # A list with nothing to leave out is taken as it is.
    only_sent = [sent]
    assert outbox.published(only_sent) is only_sent


def test_the_asyncapi_document_says_it_is_no_longer_published() -> None:
    channels = documents()["notification"]["channels"]
    described = {name.split(":")[1]: c["description"] for name, c in channels.items()}
    assert described["NotificationQueued"].startswith("Not published any more")
    assert not described["NotificationSent"].startswith("Not published")
