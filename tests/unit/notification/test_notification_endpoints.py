"""Webhook endpoints as a write model: the fold of their stream and the decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notification import endpoints
from services.notification.endpoints import Endpoint
from shared import crypto
from shared.contracts.notification import WebhookEndpointRegistered, WebhookEndpointRemoved
from shared.errors import NotFound

AT = datetime(2031, 5, 1, 9, tzinfo=UTC)
ID = "6a3c9e5e-0b7e-4d44-9a0e-2f1f5d3c4b21"


def registered(key: bytes) -> WebhookEndpointRegistered:
    sealed = crypto.seal(
        key, {"url": "https://hooks.example/T1/secret-path", "secret": "whsec_x"}, subject=ID
    )
    return endpoints.register(
        Endpoint(),
        endpoint_id=ID,
        event_id="ev-1",
        kinds=["b", "a", "b"],
        sealed=sealed,
        by="organiser:o1",
        at=AT,
    )


def test_a_registration_carries_the_url_and_secret_sealed_only() -> None:
    key = crypto.new_key()
    event = registered(key)
    assert event.kinds == ["a", "b"] and event.registered_at == AT
    assert (
        "hooks.example" not in event.model_dump_json() and "whsec_x" not in event.model_dump_json()
    )
    assert endpoints.opened(key, event.sealed, ID) == (
        "https://hooks.example/T1/secret-path",
        "whsec_x",
    )
    assert endpoints.opened(None, event.sealed, ID) is None  # the key destroyed: unreadable


def test_removed_once_then_nothing_and_another_events_endpoint_is_not_found() -> None:
    endpoint = Endpoint()
    endpoint.apply(registered(crypto.new_key()))
    assert (endpoint.version, endpoint.event_id, endpoint.removed) == (1, "ev-1", False)
    with pytest.raises(NotFound):
        endpoints.remove(endpoint, endpoint_id=ID, event_id="ev-2", by="organiser:o2")
    with pytest.raises(NotFound):
        endpoints.remove(Endpoint(), endpoint_id=ID, event_id="ev-1", by="organiser:o1")
    (removed,) = endpoints.remove(endpoint, endpoint_id=ID, event_id="ev-1", by="organiser:o1")
    assert isinstance(removed, WebhookEndpointRemoved) and removed.removed_by == "organiser:o1"
    endpoint.apply(removed)
    assert endpoint.removed and endpoint.version == 2
    assert endpoints.remove(endpoint, endpoint_id=ID, event_id="ev-1", by="organiser:o1") == []
