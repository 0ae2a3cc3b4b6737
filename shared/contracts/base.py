"""Base class of every event payload that crosses a service boundary.

A payload names its producer, its event name and its version; together they
give the CloudEvents `type`, e.g. `eu.matchmaking.registration.ClusterRegistered.v1`.
A changed payload gets a new class with a higher version and an upcaster from
the previous one (see `shared.contracts.registry`); stored events are never
rewritten.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

TYPE_PREFIX = "eu.matchmaking"


class EventPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    producer: ClassVar[str]
    event_name: ClassVar[str]
    event_version: ClassVar[int] = 1
    # False: kept in its producer's event store, never put on its topic (no outbox row,
    # `shared.outbox`): a decision inside one service that no other acts on, whose
    # publication cost more than the rest of its work (`NotificationQueued`).
    published: ClassVar[bool] = True

    @classmethod
    def ce_type(cls) -> str:
        return f"{TYPE_PREFIX}.{cls.producer}.{cls.event_name}.v{cls.event_version}"

    @classmethod
    def topic(cls) -> str:
        return f"{cls.producer}.events"
