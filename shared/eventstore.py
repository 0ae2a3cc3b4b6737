"""Append-only event store with optimistic concurrency, one table per service database.

Appending happens inside the caller's transaction together with the outbox rows
and projection updates, so the three commit or vanish together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared import outbox
from shared.envelope import Envelope


class ConcurrencyConflict(Exception):
    """The stream moved on since the caller read it; nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
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
    ids = [e.id for e in envelopes]
    # One round trip for both checks: are these events stored already, and
    # where does the stream stand?
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM events WHERE event_id = ANY($2::uuid[])) AS stored,"
        " (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1) AS actual",
        stream_id,
        ids,
    )
    assert row is not None
    if row["stored"] == len(ids):
        return int(row["actual"])
    if row["actual"] != expected_version:
        raise ConcurrencyConflict(stream_id, expected_version, row["actual"])
    envelopes = [outbox.stamp_trace(e) for e in envelopes]
    rows = [
        (
            stream_id,
            expected_version + offset,
            e.id,
            e.type,
            json.dumps(e.data),
            json.dumps({k: v for k, v in e.to_record().items() if k != "data"}),
        )
        for offset, e in enumerate(envelopes, start=1)
    ]
    try:
        # The primary key (stream_id, version) makes a concurrent writer wait for
        # us and then fail here: exactly one append wins each version.
        await conn.executemany(
            "INSERT INTO events (stream_id, version, event_id, event_type, data, metadata)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
            rows,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConcurrencyConflict(stream_id, expected_version) from exc
    if publish:
        await outbox.add(conn, envelopes)
    return expected_version + len(envelopes)


async def append_new_streams(
    conn: asyncpg.Connection, streams: Sequence[tuple[str, Sequence[Envelope]]]
) -> None:
    """Start many new streams at once (a bulk command, e.g. a spreadsheet import): each
    stream's events from version 1, in one batch, with their outbox rows. A stream that
    exists already makes the whole call fail with `ConcurrencyConflict`."""
    if not conn.is_in_transaction():
        raise RuntimeError("append must run inside a transaction")
    stamped = [(sid, [outbox.stamp_trace(e) for e in envs]) for sid, envs in streams]
    rows = [
        (
            stream_id,
            version,
            e.id,
            e.type,
            json.dumps(e.data),
            json.dumps({k: v for k, v in e.to_record().items() if k != "data"}),
        )
        for stream_id, envelopes in stamped
        for version, e in enumerate(envelopes, start=1)
    ]
    try:
        await conn.executemany(
            "INSERT INTO events (stream_id, version, event_id, event_type, data, metadata)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
            rows,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConcurrencyConflict("(one of many new streams)", 0) from exc
    await outbox.add(conn, [e for _, envelopes in stamped for e in envelopes])


async def load(conn: asyncpg.Connection, stream_id: str) -> list[StoredEvent]:
    rows = await conn.fetch(
        "SELECT stream_id, version, data, metadata FROM events"
        " WHERE stream_id = $1 ORDER BY version",
        stream_id,
    )
    return [
        StoredEvent(
            stream_id=r["stream_id"],
            version=r["version"],
            envelope=Envelope.from_record(
                {**json.loads(r["metadata"]), "data": json.loads(r["data"])}
            ),
        )
        for r in rows
    ]
