"""One handler per event type, looked up by the event's class (then its bases).

An aggregate's `apply` and a projection's `apply` each keep one table of this kind,
so adding an event type is one function per concern, not another branch in a chain
of type checks (the message-bus registry of cosmicpython, for state changes).

    CHANGES = StateChanges[Registration]()

    @CHANGES.on(RegistrationApproved)
    def _approved(state: Registration, event: RegistrationApproved) -> None: ...

    CHANGES.apply(state, event)     # events without a handler change nothing
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import asyncpg

from shared.contracts.base import EventPayload

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


class _ByType(Generic[F]):
    def __init__(self) -> None:
        self._by_type: dict[type[EventPayload], F] = {}

    def on(self, *types: type[EventPayload]) -> Callable[[F], F]:
        """Register the decorated function for `types` (one function per type)."""

        def register(handler: F) -> F:
            for event_type in types:
                if event_type in self._by_type:
                    raise ValueError(f"{event_type.__name__} has a handler already")
                self._by_type[event_type] = handler
            return handler

        return register

    def handler_for(self, event: EventPayload) -> F | None:
        for cls in type(event).__mro__:
            found = self._by_type.get(cls)
            if found is not None:
                return found
        return None

    @property
    def types(self) -> list[type[EventPayload]]:
        return list(self._by_type)


class StateChanges(_ByType[Callable[[S, Any], None]], Generic[S]):
    """How each event changes an aggregate's state (pure)."""

    def apply(self, state: S, event: EventPayload) -> None:
        handler = self.handler_for(event)
        if handler is not None:
            handler(state, event)


Projector = Callable[[asyncpg.Connection, Any], Awaitable[None]]


class Projection(_ByType[Projector]):
    """How each event changes a service's tables, in the transaction that records it."""

    async def apply(self, conn: asyncpg.Connection, event: EventPayload) -> None:
        handler = self.handler_for(event)
        if handler is not None:
            await handler(conn, event)
