"""The rebuild's read of the service's own events (`shared.rebuild.replay_own`): streamed
from the event store by a cursor, in windows that never split a live transaction, and
decoded with as little work per event as its handler allows.

- Streamed: the rows come in fetches of `FETCH` from a server-side cursor, read ahead
  of the windows being decoded as fast as the server sends them, so the server's sort
  and sending overlap the Python side's decoding (one `fetch` of every row left the
  Python side idle for its length).
- `payload_only` handlers (notification's, matching's, registration's and scheduling's
  own: they apply the payload to their tables and never read the envelope) get None for
  the envelope: the metadata is not fetched, and the payload is validated straight from
  its JSON text (`PayloadRegistry.parse_json`: pydantic's one pass, no dictionary built
  first; an old version still goes through its upcaster).

The payloads are validated here as everywhere else: an event store is written by the
service itself, but nothing is taken on trust on the way back in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection
from typing import cast

import asyncpg

from shared import json_codec
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.envelope import Envelope
from shared.inbox import Handler

# Rows per fetch from the cursor.
FETCH = 5000

_ROWS = (
    "SELECT event_id::text AS id, event_type, data, {metadata}recorded_at FROM public.events"
    " ORDER BY recorded_at, stream_id, version"
)


def payload_only(handler: Handler) -> Handler:
    """Marks `handler` (a plan's own) as one that reads the payload only, never the
    envelope: the rebuild passes None for it, and does not decode the metadata."""
    handler.payload_only = True  # type: ignore[attr-defined]
    return handler


def reads_envelope(handler: Handler) -> bool:
    return not getattr(handler, "payload_only", False)


class Reading:
    """The event store's rows being fetched by a cursor on `source` (started at once, so
    that the server sorts and sends them while the caller does other work), in fetches
    as they come; `own_windows` cuts them into windows. `source` is busy until all are
    read (or `stop`)."""

    def __init__(self, source: asyncpg.Connection, envelope: bool) -> None:
        self.envelope = envelope
        query = _ROWS.format(metadata="metadata, " if envelope else "")
        # Not bounded: the cursor is read as fast as the server sends (the rows are all
        # kept until the end anyway), so the reading of window N+1 never waits for N.
        self.fetched: asyncio.Queue[list[asyncpg.Record] | BaseException | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async with source.transaction():
                    cursor = await source.cursor(query)
                    while rows := await cursor.fetch(FETCH):
                        await self.fetched.put(rows)
            except Exception as exc:  # handed to the reader, which raises it
                await self.fetched.put(exc)
                return
            await self.fetched.put(None)

        self._pumping = asyncio.create_task(pump())

    async def stop(self) -> None:
        self._pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pumping


async def own_windows(
    source: asyncpg.Connection,
    envelope: bool,
    skip: Collection[str],
    size: int,
    reading: Reading | None = None,
) -> AsyncIterator[list[asyncpg.Record]]:
    """The event store's rows (without those whose id is in `skip`), in recorded order, in
    windows of about `size` that never split what one live transaction recorded (same
    `recorded_at`): a projection's deferred constraints hold at the end of each live
    transaction only (scheduling's one meeting per table, across a re-optimisation).
    With `envelope`, the rows have the metadata too. From `reading` if it was started
    already (with the same `envelope`), else from one started now."""
    if reading is None or reading.envelope != envelope:
        reading = Reading(source, envelope)
    filtering = bool(skip)  # (`skip` grows as the windows are committed: not these rows)
    try:
        pending: list[asyncpg.Record] = []
        while (rows := await reading.fetched.get()) is not None:
            if isinstance(rows, BaseException):
                raise rows
            pending += [r for r in rows if r["id"] not in skip] if filtering else rows
            while len(pending) > size:
                end = size
                while (
                    end < len(pending)
                    and pending[end]["recorded_at"] == pending[end - 1]["recorded_at"]
                ):
                    end += 1
                if end == len(pending):
                    break  # the transaction may go on in the next fetch
                yield pending[:end]
                pending = pending[end:]
        if pending:
            yield pending
    finally:
        await reading.stop()


Decoded = tuple[Envelope, EventPayload] | None


def decoder(registry: PayloadRegistry, envelope: bool) -> Callable[[asyncpg.Record], Decoded]:
    """A row of `own_windows` as the handler's arguments (None: a type this service's
    registry does not know, left out)."""
    knows, parse, parse_json = registry.knows, registry.parse, registry.parse_json
    loads, from_record = json_codec.loads, Envelope.from_record
    no_envelope = cast(Envelope, None)

    def payload(row: asyncpg.Record) -> Decoded:
        ce_type = row["event_type"]
        if not knows(ce_type):
            return None
        return no_envelope, parse_json(ce_type, row["data"])

    def both(row: asyncpg.Record) -> Decoded:
        ce_type = row["event_type"]
        if not knows(ce_type):
            return None
        data = loads(row["data"])
        record = loads(row["metadata"])
        record["data"] = data  # a fresh dict: no copy needed to add it
        return from_record(record), parse(ce_type, data)

    return both if envelope else payload
