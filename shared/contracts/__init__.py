"""Event payload schemas shared between services (contracts only, no rules)."""

from shared.contracts.base import EventPayload
from shared.contracts.registration import REGISTRATION_EVENTS
from shared.contracts.registry import PayloadRegistry

ALL_EVENTS: list[type[EventPayload]] = [*REGISTRATION_EVENTS]


def registry() -> PayloadRegistry:
    return PayloadRegistry(ALL_EVENTS)


__all__ = ["ALL_EVENTS", "EventPayload", "PayloadRegistry", "registry"]
