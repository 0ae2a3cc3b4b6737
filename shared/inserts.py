"""A projection that is one INSERT per event, from the envelope alone (`Insert`): the live
consumer runs it as a handler, a rebuild folds it straight from the envelopes it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import asyncpg

from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from shared.inbox import Handler


@dataclass(frozen=True)
class Insert:
    """A projection that is one INSERT per event, its arguments from the envelope alone
    (`args`, over `envelope.data` as its producer wrote it) and idempotent (ON CONFLICT DO
    NOTHING on a key of the event's own: a repeat changes nothing), into a table no other
    handler's statement reads, nor changes but to delete the row of a later event of the
    same key, after which no insert of that key comes: reporting's history (every event)
    and its notification outcomes; registration's accepted pairs, which a cancellation of
    the meeting deletes. Its rows do not depend on the order of the events, so a rebuild
    folds them straight from the envelopes it reads (`shared.rebuild`'s
    `Plan.every_record` and `Plan.inserts`), without the payload model or the handlers'
    runs, before the other events are applied; the live consumer runs `handler`."""

    table: str
    query: str
    args: Callable[[Envelope], tuple[Any, ...]]

    @cached_property
    def handler(self) -> Handler:
        """The live handler: the statement with `args`; an event of an older version is
        read as its upcast payload (`args` reads the current version's fields)."""
        query, args = self.query, self.args

        async def insert(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
            if event is not None and envelope.type != (current := event.ce_type()):
                envelope = replace(envelope, type=current, data=event.model_dump(mode="json"))
            await conn.execute(query, *args(envelope))

        return insert
