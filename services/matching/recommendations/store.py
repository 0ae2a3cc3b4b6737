"""Recommendations' storage: profiles and their sentence vectors, the event's approved
participants as a `Ranker`, and the stored top-K lists (`recommendation_lists`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import asyncpg

from services.matching.domain import OPEN_STATUSES
from services.matching.recommend import minilm
from services.matching.recommend.incremental import Floor, Plan
from services.matching.recommend.profiles import (
    Participant,
    Profile,
    TextEncoder,
    embed,
    from_bytes,
    to_bytes,
)
from services.matching.recommend.scoring import K, Ranker
from services.matching.recommend.topk import Entry, TopList, insert
from shared.batching import send_many
from shared.contracts.registration import OrganisationProfile

MODEL = minilm.MODEL_NAME
# Meeting requests that take a pair out of each other's lists: the open ones (the domain's).
ENGAGED_STATUSES = tuple(OPEN_STATUSES)
MAX_LIMIT = K


def default_encoder() -> TextEncoder:
    return minilm.encoder().encode


text_encoder: Callable[[], TextEncoder] = default_encoder
"""The encoder used for new vectors (the sentence model; tests may swap it)."""


# -- profiles and vectors -------------------------------------------------------


def profile_from_row(row: asyncpg.Record) -> Profile:
    return Profile(
        registration_id=row["registration_id"],
        organisation_type=row["organisation_type"],
        name=row["name"],
        country=row["country"],
        sectors=tuple(row["sectors"]),
        technologies=tuple(row["technologies"]),
        value_chain_position=row["value_chain_position"],
        markets=tuple(row["markets"]),
        offers=tuple(row["offers"]),
        requests=tuple(row["requests"]),
    )


def profile_from_payload(registration_id: str, p: OrganisationProfile) -> Profile:
    return Profile(
        registration_id=registration_id,
        organisation_type=p.organisation_type.value,
        name=p.name,
        country=p.country,
        sectors=tuple(p.sectors),
        technologies=tuple(p.technologies),
        value_chain_position=p.value_chain_position,
        markets=tuple(p.markets),
        offers=tuple(p.offers),
        requests=tuple(p.requests),
    )


async def compute_vectors(profiles: Sequence[Profile]) -> list[Participant]:
    """Embed `profiles` in one model call, in a thread (never inside a transaction)."""
    encode = text_encoder()
    # numpy releases the GIL: the event loop keeps serving while the model runs
    return await asyncio.to_thread(embed, profiles, encode)


async def store_vectors(conn: asyncpg.Connection, event_id: str, ps: Sequence[Participant]) -> None:
    """Store vectors with the texts they were computed from (current while those match)."""
    await conn.executemany(
        "INSERT INTO participant_vectors (registration_id, event_id, model, requests, offers,"
        " dimension, request_vectors, offer_vectors, embedded_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp())"
        " ON CONFLICT (registration_id) DO UPDATE SET model = EXCLUDED.model,"
        " requests = EXCLUDED.requests, offers = EXCLUDED.offers,"
        " dimension = EXCLUDED.dimension, request_vectors = EXCLUDED.request_vectors,"
        " offer_vectors = EXCLUDED.offer_vectors, embedded_at = EXCLUDED.embedded_at",
        [
            (
                p.id,
                event_id,
                MODEL,
                list(p.profile.requests),
                list(p.profile.offers),
                int(p.request_vectors.shape[1]),
                to_bytes(p.request_vectors),
                to_bytes(p.offer_vectors),
            )
            for p in ps
        ],
    )


async def stored_vectors(
    conn: asyncpg.Connection, profiles: Sequence[Profile]
) -> dict[str, Participant]:
    """Those of `profiles` whose vectors of their current texts are stored, with them.

    Never embeds: a profile left out is queued for the embedding worker
    (`recommendations.embedding`), which ranks it once its vectors land.
    """
    rows = await conn.fetch(
        "SELECT registration_id, model, requests, offers, dimension, request_vectors,"
        " offer_vectors FROM participant_vectors WHERE registration_id = ANY($1::text[])",
        [p.registration_id for p in profiles],
    )
    stored = {r["registration_id"]: r for r in rows}
    out: dict[str, Participant] = {}
    for p in profiles:
        row = stored.get(p.registration_id)
        if row is None or (row["model"], tuple(row["requests"]), tuple(row["offers"])) != (
            MODEL,
            p.requests,
            p.offers,
        ):
            continue
        dim = row["dimension"]
        out[p.registration_id] = Participant(
            p, from_bytes(row["request_vectors"], dim), from_bytes(row["offer_vectors"], dim)
        )
    return out


PROFILE_COLUMNS = (
    "p.registration_id, p.organisation_type, p.name, p.country, p.sectors, p.technologies,"
    " p.value_chain_position, p.markets, p.offers, p.requests"
)


async def has_meeting_requests(conn: asyncpg.Connection) -> bool:
    found: bool = await conn.fetchval("SELECT to_regclass('meeting_requests') IS NOT NULL")
    return found


async def engaged_pairs(
    conn: asyncpg.Connection, event_id: str, among: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """The event's open requests as pairs; with `among`, only those with one of these
    participants on a side: all that their lists need (a list leaves out its owner's
    engaged partners, nobody else's), 15,000 rows fewer a round at BIO-Europe's size."""
    if not await has_meeting_requests(conn):
        return []
    if among is None:
        rows = await conn.fetch(
            "SELECT requester_id, recipient_id FROM meeting_requests"
            " WHERE event_id = $1 AND status = ANY($2::text[])",
            event_id,
            list(ENGAGED_STATUSES),
        )
    else:
        # Planned without the event (a fence): with it, PostgreSQL ANDs in the event's
        # index, every request of the event (20,000 at BIO-Europe), for the few rows that
        # the participants' own indexes find (generic plan: 0.8 -> 0.4 ms warm, more cold).
        rows = await conn.fetch(
            "WITH theirs AS MATERIALIZED (SELECT event_id, requester_id, recipient_id"
            " FROM meeting_requests WHERE status = ANY($2::text[])"
            " AND (requester_id = ANY($3::text[]) OR recipient_id = ANY($3::text[])))"
            " SELECT requester_id, recipient_id FROM theirs WHERE event_id = $1",
            event_id,
            list(ENGAGED_STATUSES),
            list(among),
        )
    return [(r["requester_id"], r["recipient_id"]) for r in rows]


async def load_participants(
    conn: asyncpg.Connection, event_id: str, *, in_lists_only: bool = False
) -> dict[str, Participant]:
    """The event's approved participants whose current texts have stored vectors.

    One whose vectors are missing or stale (not landed yet) is left out of every
    list until the embedding worker stores them and brings it in (`worker`).
    `in_lists_only`: only those brought in, i.e. with a list of their own (the
    incremental updates rank these; a participant whose vectors landed a moment
    ago is not among them until the worker brings it in, which then finds it by
    its missing list, also after a crash).
    """
    rows = await conn.fetch(
        f"SELECT {PROFILE_COLUMNS}, v.dimension, v.request_vectors, v.offer_vectors"
        " FROM participants p JOIN participant_vectors v USING (registration_id)"
        " WHERE p.event_id = $1 AND p.status = 'approved'"
        " AND v.model = $2 AND v.requests = p.requests AND v.offers = p.offers"
        " AND (NOT $3 OR EXISTS (SELECT 1 FROM recommendation_lists l"
        " WHERE l.registration_id = p.registration_id))",
        event_id,
        MODEL,
        in_lists_only,
    )
    out: dict[str, Participant] = {}
    for row in rows:
        profile = profile_from_row(row)
        dim = row["dimension"]
        out[profile.registration_id] = Participant(
            profile, from_bytes(row["request_vectors"], dim), from_bytes(row["offer_vectors"], dim)
        )
    return out


async def _meeting_types(conn: asyncpg.Connection, event_id: str) -> list[str]:
    types: list[str] | None = await conn.fetchval(
        "SELECT meeting_types FROM brokerage_events WHERE event_id = $1", event_id
    )
    return types or []


async def ranker_of(
    conn: asyncpg.Connection,
    event_id: str,
    participants: dict[str, Participant],
    reuse: Ranker | None = None,
    among: Sequence[str] | None = None,
) -> Ranker:
    """The event's ranker over `participants`; `reuse`'s arrays when it was made from
    these very participants (only the engaged pairs are read again). With `among`, it
    knows only those participants' engaged pairs: good for their lists alone."""
    ordered = [participants[k] for k in sorted(participants)]
    types = await _meeting_types(conn, event_id)
    engaged = await engaged_pairs(conn, event_id, among)
    if reuse is not None and reuse.built_from(ordered, types):
        return reuse.with_engaged(engaged)
    # Its arrays are built in a thread (some 60 ms at 3,500 participants), off the loop.
    return await asyncio.to_thread(Ranker, ordered, types, engaged)


async def load_ranker(conn: asyncpg.Connection, event_id: str) -> Ranker:
    """The event's approved participants as a `Ranker`, straight from the database."""
    return await ranker_of(conn, event_id, await load_participants(conn, event_id))


async def list_floors(conn: asyncpg.Connection, event_id: str) -> dict[str, Floor]:
    rows = await conn.fetch(
        "SELECT registration_id, cardinality(partner_ids) AS size,"
        " partner_ids[cardinality(partner_ids)] AS partner,"
        " scores[cardinality(scores)] AS score"
        " FROM recommendation_lists WHERE event_id = $1",
        event_id,
    )
    return {
        r["registration_id"]: Floor(
            r["size"], Entry.of(r["partner"], r["score"]) if r["size"] else None
        )
        for r in rows
    }


async def list_holders(conn: asyncpg.Connection, event_id: str, subject: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT registration_id FROM recommendation_lists"
        " WHERE partner_ids @> ARRAY[$1]::text[] AND event_id = $2",
        subject,
        event_id,
    )
    return {r["registration_id"] for r in rows}


def _columns(entries: TopList) -> tuple[list[str], list[float]]:
    return [e.partner for e in entries], [e.score for e in entries]


async def write_lists(conn: asyncpg.Connection, event_id: str, lists: dict[str, TopList]) -> None:
    """Upsert `lists`: one statement over arrays (`batching.send_many`), not one
    execution per list (179,000 of them in a BIO-Europe-sized run)."""
    if not lists:
        return
    await send_many(
        conn,
        "INSERT INTO recommendation_lists (registration_id, event_id, partner_ids, scores)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (registration_id) DO UPDATE"
        " SET partner_ids = EXCLUDED.partner_ids, scores = EXCLUDED.scores, updated_at = now()",
        [(owner, event_id, *_columns(entries)) for owner, entries in lists.items()],
    )


async def store_plan(conn: asyncpg.Connection, event_id: str, change: Plan) -> None:
    if change.drop:
        await conn.execute(
            "DELETE FROM recommendation_lists WHERE registration_id = ANY($1::text[])",
            list(change.drop),
        )
    lists = dict(change.replace)
    if change.insert:
        rows = await conn.fetch(
            "SELECT registration_id, partner_ids, scores FROM recommendation_lists"
            " WHERE registration_id = ANY($1::text[])",
            list(change.insert),
        )
        current = {
            r["registration_id"]: [
                Entry.of(p, s) for p, s in zip(r["partner_ids"], r["scores"], strict=True)
            ]
            for r in rows
        }
        for owner, entry in change.insert.items():
            lists[owner] = insert(current.get(owner, []), entry, K)
    if lists:
        await write_lists(conn, event_id, lists)
