"""The rebuild's read of the own events (`shared.rebuild_own`), on a real event store:

- streamed by a cursor in fetches, the windows hold every row once, in recorded order,
  and never split what one live transaction recorded (same `recorded_at`), whatever the
  fetch and window sizes;
- rows already replayed are left out;
- a stored version-1 event is decoded as the newest version (its upcaster runs), with a
  payload-only handler (validated from its JSON text) and with one that reads the
  envelope; a type the registry does not know is left out; a payload that does not
  validate stops the decoding with pydantic's error (nothing taken on trust).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import ValidationError

from services.matching import rebuild as matching_rebuild
from shared import rebuild_own
from shared.contracts import registry
from shared.contracts.matching import MeetingRequested, MeetingRequestedV1, RequestMessage
from shared.contracts.registration import MeetingType
from shared.db import migrate
from shared.envelope import Envelope
from shared.rebuild_own import decoder, own_windows, reads_envelope
from tests.integration.support import Infra, fresh_databases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MIGRATIONS: Path = matching_rebuild.PLAN.migrations
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _fields(request_id: str) -> dict[str, object]:
    return {
        "request_id": request_id,
        "event_id": "e1",
        "requester_id": "a",
        "recipient_id": "b",
        "meeting_type": MeetingType.CLUSTER2CLUSTER,
        "expires_at": datetime(2026, 12, 24, tzinfo=UTC),
    }


async def _store(dsn: str, rows: list[tuple[str, str, dict[str, object], datetime]]) -> None:
    """(stream, type, payload, recorded_at) per event, versions counted per stream."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    assert pool is not None
    try:
        await migrate(pool, MIGRATIONS)
        versions: dict[str, int] = {}
        records = []
        for stream, ce_type, data, at in rows:
            versions[stream] = versions.get(stream, 0) + 1
            event_id = str(uuid.uuid4())
            meta = {"id": event_id, "source": "/services/matching", "type": ce_type}
            meta |= {"key": "e1", "time": at.isoformat(), "actor": "organiser:o1"}
            records.append(
                (
                    stream,
                    versions[stream],
                    uuid.UUID(event_id),
                    ce_type,
                    json.dumps(data),
                    json.dumps(meta),
                    at,
                )
            )
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "events",
                records=records,
                columns=[
                    "stream_id",
                    "version",
                    "event_id",
                    "event_type",
                    "data",
                    "metadata",
                    "recorded_at",
                ],
            )
    finally:
        await pool.close()


@pytest.fixture
async def store(infra: Infra) -> AsyncIterator[str]:
    name = f"test_rebuild_own_{datetime.now():%H%M%S%f}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        yield dsns[name]


async def test_windows_keep_live_transactions_whole_and_skip_what_was_replayed(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 events; each group of transactions recorded at one moment: sizes 1..5 in turn.
    rows = []
    at, n = T0, 0
    while n < 40:
        size = min(n % 5 + 1, 40 - n)
        for _ in range(size):
            payload = MeetingRequested(**_fields(f"r{n}")).model_dump(mode="json")  # type: ignore[arg-type]
            rows.append((f"request-r{n}", MeetingRequested.ce_type(), payload, at))
            n += 1
        at += timedelta(milliseconds=1)
    await _store(store, rows)
    conn = await asyncpg.connect(store)
    try:
        everything = await conn.fetch(
            "SELECT event_id::text AS id, recorded_at FROM events"
            " ORDER BY recorded_at, stream_id, version"
        )
        for fetch, size in ((3, 4), (7, 2), (100, 10), (1, 1)):
            monkeypatch.setattr(rebuild_own, "FETCH", fetch)
            windows = [w async for w in own_windows(conn, False, set(), size)]
            assert [r["id"] for w in windows for r in w] == [r["id"] for r in everything]
            for before, after in itertools.pairwise(windows):
                assert before[-1]["recorded_at"] != after[0]["recorded_at"]
                assert len(before) >= size  # cut only past the size asked for
        done = {r["id"] for r in everything[:17]}
        windows = [w async for w in own_windows(conn, True, done, 5)]
        assert [r["id"] for w in windows for r in w] == [r["id"] for r in everything[17:]]
        assert all("metadata" in r for w in windows for r in w)
    finally:
        await conn.close()


async def test_a_stored_version_one_event_is_decoded_as_the_newest(store: str) -> None:
    old = MeetingRequestedV1(**_fields("r-old"), message="Guten Tag")  # type: ignore[arg-type]
    new = MeetingRequested(
        **_fields("r-new"),  # type: ignore[arg-type]
        message=RequestMessage(text="Bonjour", language="fr"),
    )
    await _store(
        store,
        [
            ("request-r-old", old.ce_type(), old.model_dump(mode="json"), T0),
            (
                "request-r-new",
                new.ce_type(),
                new.model_dump(mode="json"),
                T0 + timedelta(seconds=1),
            ),
            ("x", "eu.matchmaking.nobody.Unknown.v1", {"a": 1}, T0 + timedelta(seconds=2)),
        ],
    )
    assert not reads_envelope(matching_rebuild.PLAN.own)  # type: ignore[arg-type]
    conn = await asyncpg.connect(store)
    try:
        for envelope in (False, True):
            rows = [r for w in [w async for w in own_windows(conn, envelope, set(), 10)] for r in w]
            decoded = [decoder(registry(), envelope)(r) for r in rows]
            assert decoded[2] is None  # not this registry's: left out
            payloads = [d[1] for d in decoded[:2] if d is not None]
            assert all(isinstance(p, MeetingRequested) for p in payloads)
            assert isinstance(payloads[0], MeetingRequested)
            assert payloads[0].message == RequestMessage(text="Guten Tag", language=None)
            assert payloads[1] == new
            for d in decoded[:2]:
                assert d is not None
                if envelope:
                    assert isinstance(d[0], Envelope) and d[0].actor == "organiser:o1"
                else:
                    assert d[0] is None
    finally:
        await conn.close()


async def test_a_payload_that_does_not_validate_stops_the_decoding(store: str) -> None:
    bad = MeetingRequested(**_fields("r-bad")).model_dump(mode="json")  # type: ignore[arg-type]
    bad["meeting_type"] = "no such type"
    await _store(store, [("request-r-bad", MeetingRequested.ce_type(), bad, T0)])
    conn = await asyncpg.connect(store)
    try:
        rows = [r for w in [w async for w in own_windows(conn, False, set(), 10)] for r in w]
        with pytest.raises(ValidationError, match="meeting_type"):
            decoder(registry(), False)(rows[0])
    finally:
        await conn.close()
