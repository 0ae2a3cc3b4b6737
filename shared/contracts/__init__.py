"""Event payload schemas shared between services (contracts only, no rules)."""

from shared.contracts.base import EventPayload
from shared.contracts.matching import MATCHING_EVENTS
from shared.contracts.notification import NOTIFICATION_EVENTS
from shared.contracts.registration import REGISTRATION_EVENTS
from shared.contracts.registry import PayloadRegistry
from shared.contracts.reporting import REPORTING_EVENTS
from shared.contracts.scheduling import SCHEDULING_EVENTS

ALL_EVENTS: list[type[EventPayload]] = [
    *REGISTRATION_EVENTS,
    *MATCHING_EVENTS,
    *SCHEDULING_EVENTS,
    *NOTIFICATION_EVENTS,
    *REPORTING_EVENTS,
]


def registry() -> PayloadRegistry:
    return PayloadRegistry(ALL_EVENTS)


__all__ = ["ALL_EVENTS", "EventPayload", "PayloadRegistry", "registry"]
