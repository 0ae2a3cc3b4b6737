"""The queue's event ids (random version-4 UUIDs, made a run at a time) and its payloads
(`NotificationQueued` as JSON, written without the model)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.notification.queue import NewDelivery, _random_ids, queued_payload
from shared.contracts.notification import Channel, NotificationQueued


def test_event_ids_are_distinct_canonical_version_4_uuids() -> None:
    ids = list(_random_ids(5000))
    assert len(ids) == len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    assert list(_random_ids(0)) == []


def _modelled(r: NewDelivery, context: dict[str, Any]) -> Any:
    event = NotificationQueued(
        delivery_id=r.delivery_id,
        event_id=r.event_id,
        recipient_id=r.recipient,
        channel=r.channel,
        kind=r.template,
        cause_id=r.cause_id,
        meeting_id=r.meeting_id,
        context=context,
        message_id=r.message_id,
        digest=r.digest,
        due=r.due,
    )
    return json.loads(event.model_dump_json())


@dataclass(frozen=True)
class _Odd:
    name: str


_text = st.text(max_size=12)
_instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(minutes=-330))])
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | _text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=12,
)
# What a context may hold besides JSON: what pydantic writes otherwise than orjson.
_odd = st.sampled_from([datetime(2026, 3, 20, 8, tzinfo=UTC), _Odd("x"), 2**65])


@given(
    st.builds(
        NewDelivery,
        delivery_id=st.uuids().map(str),
        cause_id=_text,
        recipient=_text,
        channel=st.sampled_from(Channel),
        template=_text,
        event_id=_text,
        meeting_id=st.none() | _text,
        context=st.just({}),
        message_id=_text,
        digest=st.booleans(),
        due=st.none() | st.builds(lambda t, z: t.astimezone(z), _instants, _zones),
    ),
    st.dictionaries(_text, _json | _odd, max_size=4),
)
def test_a_queued_payload_is_what_the_model_writes(r: NewDelivery, context: dict[str, Any]) -> None:
    """The same JSON value as `NotificationQueued.model_dump_json` (a datetime as pydantic
    writes it, `Z` for UTC), whatever the context holds: what orjson would write otherwise
    goes through the model."""
    assert json.loads(queued_payload(r, context)) == _modelled(r, context)
