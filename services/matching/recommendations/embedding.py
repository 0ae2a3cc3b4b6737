"""Sentence vectors off the consumer's path: the queue, and one round of embedding.

The consumer's transaction only queues a participant whose current requests and
offers have no stored vectors (`enqueue`, one statement). The worker
(`recommendations.worker`) then takes due rows in batches (`due`), embeds every
text of the batch in one model call outside any transaction (`store.compute_vectors`),
and stores the vectors while deleting the queue rows it embedded (`land`),
each in a short transaction of its own.

Work is durable and redone idempotently: a process killed while the model runs
leaves the rows queued, and the next round embeds them again (vectors are a
pure function of the texts). A row is deleted only with the `generation` it was
read with, so texts changed meanwhile are embedded again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.matching.recommend.profiles import Participant, Profile
from services.matching.recommendations.store import (
    MODEL,
    PROFILE_COLUMNS,
    compute_vectors,
    profile_from_row,
    store_vectors,
)
from shared.set_statements import array_literal

CHANNEL = "embedding_queue"  # NOTIFY'd by the queue's trigger (migration 014)


async def enqueue(conn: asyncpg.Connection, event_id: str, profile: Profile) -> bool:
    """Queue `profile` unless the vectors of its texts are stored; True if queued.

    In the caller's transaction. A row already queued gets a new generation, so
    a round that read the older texts leaves it queued.
    """
    status: str = await conn.execute(
        "INSERT INTO embedding_queue (registration_id, event_id) SELECT $1, $2"
        " WHERE NOT EXISTS (SELECT 1 FROM participant_vectors v WHERE v.registration_id = $1"
        " AND v.model = $3 AND v.requests = $4 AND v.offers = $5)"
        " ON CONFLICT (registration_id) DO UPDATE SET generation = embedding_queue.generation + 1,"
        " queued_at = now(), attempts = 0, not_before = now()",
        profile.registration_id,
        event_id,
        MODEL,
        list(profile.requests),
        list(profile.offers),
    )
    return status != "INSERT 0 0"


async def enqueue_many(conn: asyncpg.Connection, items: Sequence[tuple[str, Profile]]) -> int:
    """`enqueue` for many (event id, profile) pairs in one statement; how many were queued.

    The same as one by one in order: for a participant given twice, its last
    profile decides (one statement cannot change a row twice).
    """
    return await enqueue_texts(
        conn, [(event_id, p.registration_id, p.requests, p.offers) for event_id, p in items]
    )


# A participant's texts to queue: (event id, registration id, requests, offers).
Texts = tuple[str, str, Sequence[str], Sequence[str]]


async def enqueue_texts(conn: asyncpg.Connection, items: Sequence[Texts]) -> int:
    """`enqueue_many` from the texts alone (a run of registrations makes no `Profile`)."""
    last = {item[1]: item for item in items}
    if not last:
        return 0
    rows = list(last.values())
    status: str = await conn.execute(
        "INSERT INTO embedding_queue (registration_id, event_id)"
        " SELECT d.id, d.event_id FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
        " AS d(id, event_id, requests, offers)"
        " WHERE NOT EXISTS (SELECT 1 FROM participant_vectors v WHERE v.registration_id = d.id"
        " AND v.model = $5 AND v.requests = d.requests::text[] AND v.offers = d.offers::text[])"
        " ON CONFLICT (registration_id) DO UPDATE SET generation = embedding_queue.generation + 1,"
        " queued_at = now(), attempts = 0, not_before = now()",
        [registration_id for _, registration_id, _, _ in rows],
        [event_id for event_id, _, _, _ in rows],
        # a list of texts per row, as the text form of an array (cast back above)
        [array_literal(list(requests)) for _, _, requests, _ in rows],
        [array_literal(list(offers)) for _, _, _, offers in rows],
        MODEL,
    )
    return int(status.rsplit(" ", 1)[-1])


async def enqueue_missing(conn: asyncpg.Connection) -> int:
    """Queue every participant whose current texts have no stored vectors; how many.

    A start-up check: participants projected by a rebuild or before this queue
    existed are embedded once; those whose vectors are stored are not.
    """
    status: str = await conn.execute(
        "INSERT INTO embedding_queue (registration_id, event_id)"
        " SELECT p.registration_id, p.event_id FROM participants p"
        " LEFT JOIN participant_vectors v ON v.registration_id = p.registration_id"
        " AND v.model = $1 AND v.requests = p.requests AND v.offers = p.offers"
        " WHERE v.registration_id IS NULL ON CONFLICT (registration_id) DO NOTHING",
        MODEL,
    )
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True)
class Due:
    profile: Profile
    event_id: str
    generation: int


async def due(conn: asyncpg.Connection, limit: int) -> tuple[list[Due], list[str]]:
    """Up to `limit` due rows with their participants' current profiles, oldest first;
    and the ids of due rows whose participant is unknown (nothing to embed)."""
    rows = await conn.fetch(
        f"SELECT q.registration_id AS queued, q.event_id AS queued_event, q.generation,"
        f" {PROFILE_COLUMNS} FROM embedding_queue q"
        " LEFT JOIN participants p ON p.registration_id = q.registration_id"
        " WHERE q.not_before <= now() ORDER BY q.queued_at, q.registration_id LIMIT $1",
        limit,
    )
    found = [
        Due(profile_from_row(r), r["queued_event"], r["generation"])
        for r in rows
        if r["registration_id"] is not None
    ]
    gone = [r["queued"] for r in rows if r["registration_id"] is None]
    return found, gone


async def land(
    conn: asyncpg.Connection, batch: Sequence[Due], vectors: Sequence[Participant]
) -> list[Due]:
    """Store `vectors` (computed for `batch`, in order) and delete the queue rows still at
    the generation they were read with; in the caller's transaction. Those rows."""
    by_event: dict[str, list[Participant]] = {}
    for item, participant in zip(batch, vectors, strict=True):
        by_event.setdefault(item.event_id, []).append(participant)
    for event_id, participants in by_event.items():
        await store_vectors(conn, event_id, participants)
    deleted = await conn.fetch(
        "DELETE FROM embedding_queue q USING unnest($1::text[], $2::bigint[]) AS d(id, generation)"
        " WHERE q.registration_id = d.id AND q.generation = d.generation"
        " RETURNING q.registration_id",
        [d.profile.registration_id for d in batch],
        [d.generation for d in batch],
    )
    done = {r["registration_id"] for r in deleted}
    return [d for d in batch if d.profile.registration_id in done]


async def forget(conn: asyncpg.Connection, ids: Sequence[str]) -> None:
    """Drop queue rows whose participant is unknown here."""
    await conn.execute(
        "DELETE FROM embedding_queue WHERE registration_id = ANY($1::text[])", list(ids)
    )


async def postpone(conn: asyncpg.Connection, batch: Sequence[Due], cap_seconds: float) -> None:
    """A batch the model failed on: try its rows again later, backing off per attempt."""
    await conn.execute(
        "UPDATE embedding_queue SET attempts = attempts + 1, not_before = now()"
        " + least(power(2, attempts + 1), $2) * interval '1 second'"
        " WHERE registration_id = ANY($1::text[])",
        [d.profile.registration_id for d in batch],
        cap_seconds,
    )


async def embed_in(conn: asyncpg.Connection, ids: Sequence[str]) -> None:
    """Embed the queued `ids` now, in the caller's transaction (`MATCHING_EMBEDDING=inline`)."""
    rows = await conn.fetch(
        f"SELECT q.event_id AS queued_event, q.generation, {PROFILE_COLUMNS}"
        " FROM embedding_queue q JOIN participants p USING (registration_id)"
        " WHERE q.registration_id = ANY($1::text[])",
        list(ids),
    )
    batch = [Due(profile_from_row(r), r["queued_event"], r["generation"]) for r in rows]
    if batch:
        await land(conn, batch, await compute_vectors([d.profile for d in batch]))
