"""Event payload schemas shared between services (contracts only, no rules)."""

from shared.contracts.base import EventPayload
from shared.contracts.matching import MATCHING_EVENTS, MATCHING_UPCASTERS
from shared.contracts.notification import NOTIFICATION_EVENTS
from shared.contracts.registration import REGISTRATION_EVENTS
from shared.contracts.registry import PayloadRegistry, Upcaster
from shared.contracts.reporting import REPORTING_EVENTS
from shared.contracts.scheduling import SCHEDULING_EVENTS

# The current version of every event type.
ALL_EVENTS: list[type[EventPayload]] = [
    *REGISTRATION_EVENTS,
    *MATCHING_EVENTS,
    *SCHEDULING_EVENTS,
    *NOTIFICATION_EVENTS,
    *REPORTING_EVENTS,
]

# The types kept in their producer's event store only (`EventPayload.published`); records
# of them from before may still be on the topics.
UNPUBLISHED: frozenset[str] = frozenset(m.ce_type() for m in ALL_EVENTS if not m.published)

# Superseded versions, still in streams and topics: read as the current one.
UPCASTERS: list[tuple[type[EventPayload], type[EventPayload], Upcaster]] = [
    *MATCHING_UPCASTERS,
]
SUPERSEDED: list[type[EventPayload]] = [old for old, _, _ in UPCASTERS]


def registry() -> PayloadRegistry:
    payloads = PayloadRegistry(ALL_EVENTS)
    for old, new, upcast in UPCASTERS:
        payloads.register_upcaster(old.ce_type(), new.ce_type(), upcast)
    return payloads


__all__ = [
    "ALL_EVENTS",
    "SUPERSEDED",
    "UNPUBLISHED",
    "UPCASTERS",
    "EventPayload",
    "PayloadRegistry",
    "registry",
]
