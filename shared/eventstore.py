"""Append-only event store with optimistic concurrency, one table per service database.

Appending happens inside the caller's transaction together with the outbox rows
and projection updates, so the three commit or vanish together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import asyncpg

from shared import json_codec, outbox
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.envelope import Envelope
from shared.errors import Conflict

# The statement part that fails (SQLSTATE STREAM_MOVED) unless stream $1 still stands at
# version $2 (`shared/sql/008_stream_still_at.sql`): a command that decided on a state it
# kept adds it to the statement that records the decision, instead of reading first.
STILL_AT = "SELECT stream_still_at($1, $2)"
STREAM_MOVED = "EV001"


def stream_moved(exc: BaseException) -> bool:
    """Whether `exc` is `STILL_AT` failing: the stream has events the command did not see."""
    return getattr(exc, "sqlstate", None) == STREAM_MOVED


class ConcurrencyConflict(Conflict):
    """The stream moved on since the caller read it; nothing was written (a 409 if
    nobody retries: the caller read an older state)."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None) -> None:
        super().__init__("stream", "changed meanwhile by another command; try again")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class StoredEvent:
    stream_id: str
    version: int
    envelope: Envelope


async def current_version(conn: asyncpg.Connection, stream_id: str) -> int:
    version = await conn.fetchval(
        "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
    )
    return int(version)


async def append(
    conn: asyncpg.Connection,
    stream_id: str,
    expected_version: int,
    envelopes: Sequence[Envelope],
    *,
    publish: bool = True,
) -> int:
    """Append `envelopes` after `expected_version`; return the stream's new version.

    Must run inside a transaction. Re-appending events whose ids are all stored
    already is a no-op (a retried command). With `publish`, each event also gets
    an outbox row carrying the current trace context.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("append must run inside a transaction")
    if not envelopes:
        return expected_version
    return await send_append(
        conn, prepare_append(stream_id, expected_version, envelopes, publish=publish)
    )


@dataclass(frozen=True)
class Append:
    """An `append` worked out before its round trip (`prepare_append`): a caller can build
    the next one while the server stores this one (`send_append`)."""

    stream_id: str
    expected_version: int
    envelopes: Sequence[Envelope]
    publish: bool
    arguments: list[object]

    @property
    def new_version(self) -> int:
        return self.expected_version + len(self.envelopes)


def prepare_append(
    stream_id: str, expected_version: int, envelopes: Sequence[Envelope], *, publish: bool = True
) -> Append:
    """`append`'s statement arguments, stamped with the current trace context (no I/O)."""
    envelopes = [outbox.stamp_trace(e) for e in envelopes]
    arguments: list[object] = [
        *_event_columns([(stream_id, expected_version + 1, envelopes)]),
        expected_version,
    ]
    if publish:
        arguments += outbox.references(envelopes)
    return Append(stream_id, expected_version, envelopes, publish, arguments)


async def send_append(conn: asyncpg.Connection, prepared: Append) -> int:
    """Store `prepared` (in the caller's transaction); the stream's new version."""
    if not conn.is_in_transaction():
        raise RuntimeError("append must run inside a transaction")
    stream_id, expected_version, envelopes = (
        prepared.stream_id,
        prepared.expected_version,
        prepared.envelopes,
    )
    if not envelopes:
        return expected_version
    try:
        # The primary key (stream_id, version) makes a concurrent writer wait for
        # us and then fail here: exactly one append wins each version.
        query = _APPEND_AT_PUBLISHING if prepared.publish else _APPEND_AT_ONLY
        stored: int = await conn.fetchval(query, *prepared.arguments)
    except asyncpg.UniqueViolationError as exc:
        raise ConcurrencyConflict(stream_id, expected_version) from exc
    if stored != len(envelopes):
        # Nothing stored (or, never seen, part of them): the events were stored already
        # (a retried command: a no-op) or the stream has moved on. Only then a second look.
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events WHERE event_id = ANY($2::uuid[])) AS stored,"
            " (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1) AS actual",
            stream_id,
            [e.id for e in envelopes],
        )
        assert row is not None
        if stored == 0 and row["stored"] == len(envelopes):
            return int(row["actual"])
        raise ConcurrencyConflict(stream_id, expected_version, row["actual"])
    return prepared.new_version


# The events as six arrays (one element per event), unnested into rows.
_STORE_EVENTS = (
    "INSERT INTO events (stream_id, version, event_id, event_type, data, metadata)"
    " SELECT * FROM unnest($1::text[], $2::integer[], $3::uuid[], $4::text[],"
    " $5::jsonb[], $6::jsonb[])"
)
# ... and their outbox rows in the same statement (one round trip; the CTE runs to
# completion although nothing reads it, and a conflict undoes both).
_STORE_AND_PUBLISH = (
    f"WITH stored AS ({_STORE_EVENTS}) " + outbox.REFERRING_ROWS_FROM_ARRAYS.format(7, 8, 9)
)


# One stream's events after version $7, only if the stream stands there, each unless
# stored already (a retried command), with the outbox rows of those stored: the check
# and the write in one round trip. Returns how many it stored.
_APPEND_AT = (
    "WITH stored AS ("
    + _STORE_EVENTS
    + " WHERE (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1[1]) = $7"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id){publish}"
    " SELECT count(*) FROM stored"
)
_APPEND_AT_PUBLISHING = _APPEND_AT.format(
    publish=", published AS (INSERT INTO outbox (event_id, topic, key)"
    " SELECT event_id, topic, key FROM unnest($8::text[], $9::text[], $10::text[])"
    " WITH ORDINALITY AS row (event_id, topic, key, n)"
    " WHERE row.event_id::uuid IN (SELECT event_id FROM stored) ORDER BY n)"
)
_APPEND_AT_ONLY = _APPEND_AT.format(publish="")


def _event_columns(
    streams: Sequence[tuple[str, int, Sequence[Envelope]]],
) -> list[list[object]]:
    """The six arrays `_STORE_EVENTS` reads, one element per event."""
    columns: list[list[object]] = [[], [], [], [], [], []]
    for stream_id, first_version, envelopes in streams:
        for version, e in enumerate(envelopes, start=first_version):
            for column, value in zip(
                columns,
                (
                    stream_id,
                    version,
                    e.id,
                    e.type,
                    json_codec.dumps(e.data),
                    json_codec.dumps({k: v for k, v in e.to_record().items() if k != "data"}),
                ),
                strict=True,
            ):
                column.append(value)
    return columns


async def _store(
    conn: asyncpg.Connection,
    streams: Sequence[tuple[str, int, Sequence[Envelope]]],
    *,
    publish: bool,
) -> None:
    """Insert each stream's envelopes from the version given, with their outbox rows
    (`publish`), in one statement."""
    columns = _event_columns(streams)
    if not publish:
        await conn.execute(_STORE_EVENTS, *columns)
        return
    published = [e for _, _, envelopes in streams for e in envelopes]
    await conn.execute(_STORE_AND_PUBLISH, *columns, *outbox.references(published))


async def append_new_streams(
    conn: asyncpg.Connection, streams: Sequence[tuple[str, Sequence[Envelope]]]
) -> None:
    """Start many new streams at once (a bulk command, e.g. a spreadsheet import): each
    stream's events from version 1, in one batch, with their outbox rows. A stream that
    exists already makes the whole call fail with `ConcurrencyConflict`."""
    if not conn.is_in_transaction():
        raise RuntimeError("append must run inside a transaction")
    stamped = [(sid, 1, [outbox.stamp_trace(e) for e in envs]) for sid, envs in streams]
    try:
        await _store(conn, stamped, publish=True)
    except asyncpg.UniqueViolationError as exc:
        raise ConcurrencyConflict("(one of many new streams)", 0) from exc


async def append_to_streams(
    conn: asyncpg.Connection, streams: Sequence[tuple[str, Sequence[Envelope]]]
) -> None:
    """Append each stream's envelopes after its current version, all in two statements
    (the versions, then the events with their outbox rows): for a caller that holds a
    lock on every one of these streams (e.g. a work-table row per stream), so that no
    other writer appends meanwhile. Envelopes are published as they are (stamp them
    with `outbox.stamp_trace` where their trace context is current)."""
    if not conn.is_in_transaction():
        raise RuntimeError("append must run inside a transaction")
    if not streams:
        return
    ids = list(dict.fromkeys(stream_id for stream_id, _ in streams))
    versions = {
        r["stream_id"]: int(r["version"])
        for r in await conn.fetch(
            "SELECT stream_id, max(version) AS version FROM events"
            " WHERE stream_id = ANY($1::text[]) GROUP BY stream_id",
            ids,
        )
    }
    batch: list[tuple[str, int, Sequence[Envelope]]] = []
    for stream_id, envelopes in streams:
        first = versions.get(stream_id, 0) + 1
        batch.append((stream_id, first, envelopes))
        versions[stream_id] = first + len(envelopes) - 1
    try:
        await _store(conn, batch, publish=True)
    except asyncpg.UniqueViolationError as exc:
        raise ConcurrencyConflict("(one of many streams)", 0) from exc


async def load(conn: asyncpg.Connection, stream_id: str, after: int = 0) -> list[StoredEvent]:
    """The stream's events from version `after` + 1 on (a caller that keeps the first
    ones reads only the rest: events never change)."""
    rows = await conn.fetch(
        "SELECT stream_id, version, data, metadata FROM events"
        " WHERE stream_id = $1 AND version > $2 ORDER BY version",
        stream_id,
        after,
    )
    return [
        StoredEvent(
            stream_id=r["stream_id"],
            version=r["version"],
            envelope=Envelope.from_record(
                {**json_codec.loads(r["metadata"]), "data": json_codec.loads(r["data"])}
            ),
        )
        for r in rows
    ]


# -- one way to record and to load, for every service ------------------------------------

# Applies one recorded event to the service's projection, in the same transaction.
Projector = Callable[[asyncpg.Connection, EventPayload], Awaitable[None]]


async def record(
    conn: asyncpg.Connection,
    stream_id: str,
    expected_version: int | None,
    events: Sequence[EventPayload],
    *,
    key: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    project: Projector | None = None,
) -> list[Envelope]:
    """Wrap `events` in envelopes, append them after `expected_version` (None: after the
    stream's current version, for callers that hold a lock on it), and project each.
    Returns the envelopes written. Raises `ConcurrencyConflict` if the stream moved."""
    if expected_version is None:
        expected_version = await current_version(conn, stream_id)
    envelopes = [
        Envelope.wrap(
            event,
            key=key,
            subject=stream_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        for event in events
    ]
    await append(conn, stream_id, expected_version, envelopes)
    if project is not None:
        for event in events:
            await project(conn, event)
    return envelopes


class Aggregate(Protocol):
    """A write model rebuilt from its stream: one `apply` per event, counting versions."""

    version: int

    def apply(self, event: EventPayload) -> None: ...


A = TypeVar("A", bound=Aggregate)


async def load_events(
    conn: asyncpg.Connection, stream_id: str, registry: PayloadRegistry, after: int = 0
) -> list[EventPayload]:
    """A stream's events (after version `after`) as their newest payload versions (old
    ones upcast), in order."""
    stored = await load(conn, stream_id, after)
    return [registry.parse(s.envelope.type, s.envelope.data) for s in stored]


async def load_into(
    conn: asyncpg.Connection, stream_id: str, registry: PayloadRegistry, aggregate: A
) -> A:
    """`aggregate` with every event of the stream applied (its version counts them)."""
    for event in await load_events(conn, stream_id, registry):
        aggregate.apply(event)
    return aggregate
