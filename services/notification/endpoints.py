"""An organiser's webhook endpoint as a write model: the fold of its stream
(`webhook-<endpoint id>`), and the decisions taken from it. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared import crypto
from shared.contracts.base import EventPayload
from shared.contracts.notification import WebhookEndpointRegistered, WebhookEndpointRemoved
from shared.errors import NotFound


def stream(endpoint_id: str) -> str:
    return f"webhook-{endpoint_id}"


@dataclass
class Endpoint:
    """Where the endpoint stands: registered (for which event), removed, at which version."""

    version: int = 0
    event_id: str | None = None
    removed: bool = False

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, WebhookEndpointRegistered):
            self.event_id = event.event_id
        elif isinstance(event, WebhookEndpointRemoved):
            self.removed = True
        self.version += 1


def register(
    endpoint: Endpoint,
    *,
    endpoint_id: str,
    event_id: str,
    kinds: list[str],
    sealed: str,
    by: str,
    at: datetime,
) -> WebhookEndpointRegistered:
    """A new endpoint (its id is fresh: a stream that exists already is a conflict)."""
    assert endpoint.version == 0, "a new endpoint's stream is empty"
    return WebhookEndpointRegistered(
        endpoint_id=endpoint_id,
        event_id=event_id,
        kinds=sorted(set(kinds)),
        sealed=sealed,
        registered_by=by,
        registered_at=at,
    )


def remove(
    endpoint: Endpoint, *, endpoint_id: str, event_id: str, by: str
) -> list[WebhookEndpointRemoved]:
    """Removed once; removing it again changes nothing. Another event's endpoint is not
    found (as one that never existed)."""
    if endpoint.event_id is None or endpoint.event_id != event_id:
        raise NotFound("webhook", endpoint_id)
    if endpoint.removed:
        return []
    return [WebhookEndpointRemoved(endpoint_id=endpoint_id, event_id=event_id, removed_by=by)]


def opened(key: bytes | None, sealed: str, endpoint_id: str) -> tuple[str, str] | None:
    """The endpoint's URL and secret, or None once its key is destroyed (removed)."""
    try:
        value = crypto.open_sealed(key, sealed, subject=endpoint_id)
    except crypto.KeyErased:
        return None
    return str(value["url"]), str(value["secret"])
