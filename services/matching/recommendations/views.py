"""Reads: an approved participant's ranked partners, with their reasons."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from services.matching.recommend import reasons
from services.matching.recommend.scoring import K, meeting_type
from services.matching.recommend.topk import Entry, TopList
from services.matching.recommendations.cache import participants_of
from services.matching.recommendations.store import (
    ENGAGED_STATUSES,
    PROFILE_COLUMNS,
    has_meeting_requests,
    profile_from_row,
    ranker_of,
    stored_vectors,
)


@dataclass(frozen=True)
class Subject:
    registration_id: str
    event_id: str
    status: str


async def subject_of(conn: asyncpg.Connection, registration_id: str) -> Subject | None:
    row = await conn.fetchrow(
        "SELECT registration_id, event_id, status FROM participants WHERE registration_id = $1",
        registration_id,
    )
    return Subject(row["registration_id"], row["event_id"], row["status"]) if row else None


async def _engaged_with(conn: asyncpg.Connection, event_id: str, rid: str) -> set[str]:
    if not await has_meeting_requests(conn):
        return set()
    rows = await conn.fetch(
        "SELECT requester_id, recipient_id FROM meeting_requests WHERE event_id = $1"
        " AND status = ANY($2::text[]) AND (requester_id = $3 OR recipient_id = $3)",
        event_id,
        list(ENGAGED_STATUSES),
        rid,
    )
    return {r["recipient_id"] if r["requester_id"] == rid else r["requester_id"] for r in rows}


async def _stored_list(conn: asyncpg.Connection, rid: str) -> TopList | None:
    row = await conn.fetchrow(
        "SELECT partner_ids, scores FROM recommendation_lists WHERE registration_id = $1", rid
    )
    if row is None:
        return None
    return [Entry.of(p, s) for p, s in zip(row["partner_ids"], row["scores"], strict=True)]


async def _approved(conn: asyncpg.Connection, ids: Iterable[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT registration_id FROM participants"
        " WHERE registration_id = ANY($1::text[]) AND status = 'approved'",
        list(ids),
    )
    return {r["registration_id"] for r in rows}


async def ranked_partners(conn: asyncpg.Connection, subject: Subject, limit: int) -> TopList:
    """The stored list, less partners since requested or met; computed afresh if short."""
    stored = await _stored_list(conn, subject.registration_id)
    if stored is not None:
        engaged = await _engaged_with(conn, subject.event_id, subject.registration_id)
        approved = await _approved(conn, (e.partner for e in stored))
        kept = [e for e in stored if e.partner not in engaged and e.partner in approved]
        # a full list that lost entries may hide partners further down: recompute then
        if len(kept) >= limit or len(stored) < K:
            return kept[:limit]
    token = await conn.fetchval(
        "SELECT token FROM recommendation_state WHERE event_id = $1", subject.event_id
    )
    participants = await participants_of(conn, subject.event_id, token)
    ranker = await ranker_of(conn, subject.event_id, participants)
    if subject.registration_id not in ranker.index:
        return []
    return ranker.list_for(subject.registration_id, K)[:limit]


async def pending(conn: asyncpg.Connection, registration_id: str) -> bool:
    """Whether the participant's current texts wait for their vectors (then it is in no
    list and has none: the embedding worker brings it in when they land)."""
    queued: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM embedding_queue WHERE registration_id = $1)",
        registration_id,
    )
    return queued


async def recommendations(
    conn: asyncpg.Connection, subject: Subject, limit: int = 10
) -> list[dict[str, Any]]:
    """The ranked partners of an approved participant, with their reasons."""
    entries = await ranked_partners(conn, subject, limit)
    if not entries:
        return []
    ids = [subject.registration_id, *(e.partner for e in entries)]
    rows = await conn.fetch(
        f"SELECT {PROFILE_COLUMNS} FROM participants p WHERE p.registration_id = ANY($1::text[])",
        ids,
    )
    profiles = {r["registration_id"]: profile_from_row(r) for r in rows}
    found = [profiles[i] for i in ids if i in profiles]
    participants = await stored_vectors(conn, found)
    me = participants.get(subject.registration_id)
    if me is None:  # its texts changed since the list was read: pending again
        return []
    out: list[dict[str, Any]] = []
    for entry in entries:
        them = participants.get(entry.partner)
        if them is None:
            continue
        p = them.profile
        out.append(
            {
                "registration_id": p.registration_id,
                "name": p.name,
                "organisation_type": p.organisation_type,
                "country": p.country,
                "sectors": list(p.sectors),
                "offers": list(p.offers),
                "requests": list(p.requests),
                "meeting_type": meeting_type(me.profile.organisation_type, p.organisation_type),
                "score": round(float(np.float32(entry.score)), 4),
                "reasons": reasons.reasons(me, them),
            }
        )
    return out
