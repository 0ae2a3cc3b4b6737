"""Recommendations kept current from registration's events, and read for the API.

Wiring: `HANDLERS` run in the consumer's transaction after the participants
projection (`combine(projection.HANDLERS, ..., recommendations.HANDLERS)`);
they do not rely on that order for the participant concerned (its profile and
status are taken from the event), only for the others.

* A registration embeds the participant's requests and offers (sentence
  vectors, `participant_vectors`); nothing else changes until it is approved.
* Approval, a profile update of an approved participant, or its rejection,
  waitlisting or withdrawal updates the stored top-K lists incrementally
  (`recommend.incremental`): the participant's own list, the lists that held
  it, and the lists it now enters. Nothing else of the event is recomputed.
* `PAIR_HANDLERS` (matching's own events, on `matching.events`): after a
  request between two participants is made or ends, their two lists are
  computed anew (`refresh_pair`). Reads also leave out pending and accepted
  pairs, so lists never show them even before that.

A row per brokerage event (`recommendation_state`), locked for the
transaction, serialises changes to that event's lists; its token lets the
process reuse the participants it loaded last time (see `_States`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from services.matching.recommend import incremental, minilm, reasons
from services.matching.recommend.incremental import Floor, Plan
from services.matching.recommend.profiles import (
    Participant,
    Profile,
    TextEncoder,
    embed,
    from_bytes,
    to_bytes,
)
from services.matching.recommend.scoring import K, Ranker, meeting_type
from services.matching.recommend.topk import Entry, TopList, insert
from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    MeetingAccepted,
    MeetingCancelled,
    MeetingDeclined,
    MeetingRequested,
    MeetingRequestExpired,
)
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    DecisionBase,
    OrganisationProfile,
    ProfileUpdated,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
)
from shared.envelope import Envelope
from shared.inbox import Handler

MODEL = minilm.MODEL_NAME
ENGAGED_STATUSES = ("pending", "accepted")
"""Meeting requests that take a pair out of each other's lists."""
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


async def _embed(profiles: Sequence[Profile]) -> list[Participant]:
    encode = text_encoder()
    # numpy releases the GIL: the event loop keeps serving while the model runs
    return await asyncio.to_thread(embed, profiles, encode)


async def store_vectors(conn: asyncpg.Connection, event_id: str, ps: Sequence[Participant]) -> None:
    await conn.executemany(
        "INSERT INTO participant_vectors (registration_id, event_id, model, requests, offers,"
        " dimension, request_vectors, offer_vectors) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (registration_id) DO UPDATE SET model = EXCLUDED.model,"
        " requests = EXCLUDED.requests, offers = EXCLUDED.offers,"
        " dimension = EXCLUDED.dimension, request_vectors = EXCLUDED.request_vectors,"
        " offer_vectors = EXCLUDED.offer_vectors",
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


async def with_vectors(
    conn: asyncpg.Connection, event_id: str, profiles: Sequence[Profile]
) -> list[Participant]:
    """`profiles` with their stored vectors; missing or stale ones are embedded and stored."""
    rows = await conn.fetch(
        "SELECT registration_id, model, requests, offers, dimension, request_vectors,"
        " offer_vectors FROM participant_vectors WHERE registration_id = ANY($1::text[])",
        [p.registration_id for p in profiles],
    )
    stored = {r["registration_id"]: r for r in rows}
    out: dict[str, Participant] = {}
    stale: list[Profile] = []
    for p in profiles:
        row = stored.get(p.registration_id)
        if row is None or (row["model"], tuple(row["requests"]), tuple(row["offers"])) != (
            MODEL,
            p.requests,
            p.offers,
        ):
            stale.append(p)
            continue
        dim = row["dimension"]
        out[p.registration_id] = Participant(
            p, from_bytes(row["request_vectors"], dim), from_bytes(row["offer_vectors"], dim)
        )
    if stale:
        fresh = await _embed(stale)
        await store_vectors(conn, event_id, fresh)
        out.update((p.id, p) for p in fresh)
    return [out[p.registration_id] for p in profiles]


# -- the event's state -----------------------------------------------------------

_PROFILE_COLUMNS = (
    "p.registration_id, p.organisation_type, p.name, p.country, p.sectors, p.technologies,"
    " p.value_chain_position, p.markets, p.offers, p.requests"
)


async def _has_meeting_requests(conn: asyncpg.Connection) -> bool:
    found: bool = await conn.fetchval("SELECT to_regclass('meeting_requests') IS NOT NULL")
    return found


async def engaged_pairs(conn: asyncpg.Connection, event_id: str) -> list[tuple[str, str]]:
    if not await _has_meeting_requests(conn):
        return []
    rows = await conn.fetch(
        "SELECT requester_id, recipient_id FROM meeting_requests"
        " WHERE event_id = $1 AND status = ANY($2::text[])",
        event_id,
        list(ENGAGED_STATUSES),
    )
    return [(r["requester_id"], r["recipient_id"]) for r in rows]


async def load_participants(conn: asyncpg.Connection, event_id: str) -> dict[str, Participant]:
    """The event's approved participants with their vectors, from the database.

    Vectors that are missing (registered before this code ran) or stale are
    embedded and stored now.
    """
    rows = await conn.fetch(
        f"SELECT {_PROFILE_COLUMNS}, v.dimension, v.request_vectors, v.offer_vectors,"
        " (v.model = $2 AND v.requests = p.requests AND v.offers = p.offers) AS fresh"
        " FROM participants p LEFT JOIN participant_vectors v USING (registration_id)"
        " WHERE p.event_id = $1 AND p.status = 'approved'",
        event_id,
        MODEL,
    )
    out: dict[str, Participant] = {}
    missing: list[Profile] = []
    for row in rows:
        profile = profile_from_row(row)
        if not row["fresh"]:
            missing.append(profile)
            continue
        dim = row["dimension"]
        out[profile.registration_id] = Participant(
            profile, from_bytes(row["request_vectors"], dim), from_bytes(row["offer_vectors"], dim)
        )
    if missing:
        out.update((p.id, p) for p in await with_vectors(conn, event_id, missing))
    return out


async def _meeting_types(conn: asyncpg.Connection, event_id: str) -> list[str]:
    types: list[str] | None = await conn.fetchval(
        "SELECT meeting_types FROM brokerage_events WHERE event_id = $1", event_id
    )
    return types or []


async def ranker_of(
    conn: asyncpg.Connection, event_id: str, participants: dict[str, Participant]
) -> Ranker:
    ordered = [participants[k] for k in sorted(participants)]
    return Ranker(
        ordered, await _meeting_types(conn, event_id), await engaged_pairs(conn, event_id)
    )


async def load_ranker(conn: asyncpg.Connection, event_id: str) -> Ranker:
    """The event's approved participants as a `Ranker`, straight from the database."""
    return await ranker_of(conn, event_id, await load_participants(conn, event_id))


class _States:
    """The last few events' participants as this process left them, by state token.

    Every change to an event's lists writes a new random token in
    `recommendation_state` (in the same transaction) and keeps the participants
    here under it. A later change that reads the same token from the database
    uses them instead of loading thousands of rows again; any other token (a
    rolled-back transaction, another instance's change) means load afresh.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._by_event: OrderedDict[str, tuple[str, dict[str, Participant]]] = OrderedDict()

    def get(self, event_id: str, token: str | None) -> dict[str, Participant] | None:
        found = self._by_event.get(event_id)
        if found is None or token is None or found[0] != token:
            return None
        self._by_event.move_to_end(event_id)
        return dict(found[1])

    def put(self, event_id: str, token: str, participants: dict[str, Participant]) -> None:
        self._by_event[event_id] = (token, participants)
        self._by_event.move_to_end(event_id)
        while len(self._by_event) > self.size:
            self._by_event.popitem(last=False)

    def clear(self) -> None:
        self._by_event.clear()


states = _States()


async def _lock(conn: asyncpg.Connection, event_id: str) -> str | None:
    """Lock the event's recommendation state row (serialises its changes); its token."""
    await conn.execute(
        "INSERT INTO recommendation_state (event_id, token) VALUES ($1, NULL)"
        " ON CONFLICT (event_id) DO NOTHING",
        event_id,
    )
    token: str | None = await conn.fetchval(
        "SELECT token FROM recommendation_state WHERE event_id = $1 FOR UPDATE", event_id
    )
    return token


async def _participants(
    conn: asyncpg.Connection, event_id: str, token: str | None
) -> dict[str, Participant]:
    cached = states.get(event_id, token)
    return cached if cached is not None else await load_participants(conn, event_id)


async def _save(
    conn: asyncpg.Connection, event_id: str, participants: dict[str, Participant]
) -> None:
    token = uuid.uuid4().hex
    await conn.execute(
        "UPDATE recommendation_state SET token = $2, changed_at = now() WHERE event_id = $1",
        event_id,
        token,
    )
    states.put(event_id, token, participants)


async def warm_up(pool: asyncpg.Pool) -> list[str]:
    """Make the first change after a start as fast as the later ones.

    Runs the sentence model once (its first call allocates its buffers) and loads
    the participants of the events whose lists changed most recently into `states`
    under their current tokens; returns those events' ids. A change made meanwhile
    by another process writes a new token, so a stale preload is never used.
    """
    await asyncio.to_thread(text_encoder(), ["warm up"])
    rows = await pool.fetch(
        "SELECT event_id FROM recommendation_state WHERE token IS NOT NULL"
        " ORDER BY changed_at DESC LIMIT $1",
        states.size,
    )
    for row in reversed(rows):  # the most recent last, so it stays longest
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            token = await conn.fetchval(
                "SELECT token FROM recommendation_state WHERE event_id = $1", row["event_id"]
            )
            participants = await load_participants(conn, row["event_id"])
        states.put(row["event_id"], token, participants)
    return [r["event_id"] for r in rows]


# -- applying changes -------------------------------------------------------------


async def _floors(conn: asyncpg.Connection, event_id: str) -> dict[str, Floor]:
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


async def _holders(conn: asyncpg.Connection, event_id: str, subject: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT registration_id FROM recommendation_lists"
        " WHERE partner_ids @> ARRAY[$1]::text[] AND event_id = $2",
        subject,
        event_id,
    )
    return {r["registration_id"] for r in rows}


def _columns(entries: TopList) -> tuple[list[str], list[float]]:
    return [e.partner for e in entries], [e.score for e in entries]


async def _write_lists(conn: asyncpg.Connection, event_id: str, lists: dict[str, TopList]) -> None:
    await conn.executemany(
        "INSERT INTO recommendation_lists (registration_id, event_id, partner_ids, scores)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (registration_id) DO UPDATE"
        " SET partner_ids = EXCLUDED.partner_ids, scores = EXCLUDED.scores, updated_at = now()",
        [(owner, event_id, *_columns(entries)) for owner, entries in lists.items()],
    )


async def store(conn: asyncpg.Connection, event_id: str, change: Plan) -> None:
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
        await _write_lists(conn, event_id, lists)


async def refresh(
    conn: asyncpg.Connection,
    event_id: str,
    subject: Profile,
    approved: bool,
) -> Plan:
    """Bring the event's lists up to date after `subject` changed (joined, updated, left).

    The subject's profile and status come from the event being handled, not
    from the projection, so the order of the handlers does not matter for it.
    """
    token = await _lock(conn, event_id)
    rid = subject.registration_id
    holders = await _holders(conn, event_id, rid)
    had_list = await conn.fetchval(
        "SELECT true FROM recommendation_lists WHERE registration_id = $1", rid
    )
    if not approved and not holders and not had_list:
        return Plan()  # was never in the lists: nothing to take out
    participants = await _participants(conn, event_id, token)
    if approved:
        participants[rid] = (await with_vectors(conn, event_id, [subject]))[0]
    else:
        participants.pop(rid, None)
    ranker = await ranker_of(conn, event_id, participants)
    floors = await _floors(conn, event_id) if approved else {}
    change = incremental.plan(ranker, rid, holders, floors, K)
    await store(conn, event_id, change)
    await _save(conn, event_id, participants)
    return change


async def refresh_pair(conn: asyncpg.Connection, event_id: str, a: str, b: str) -> None:
    """A meeting request between `a` and `b` was made or ended: recompute both lists."""
    token = await _lock(conn, event_id)
    participants = await _participants(conn, event_id, token)
    ranker = await ranker_of(conn, event_id, participants)
    await store(conn, event_id, incremental.plan_pair(ranker, a, b, K))
    await _save(conn, event_id, participants)


async def rebuild_event(conn: asyncpg.Connection, event_id: str) -> int:
    """Every list of the event from scratch (repair or backfill); returns how many."""
    await _lock(conn, event_id)
    participants = await load_participants(conn, event_id)
    lists = (await ranker_of(conn, event_id, participants)).all_lists(K)
    await conn.execute("DELETE FROM recommendation_lists WHERE event_id = $1", event_id)
    await _write_lists(conn, event_id, lists)
    await _save(conn, event_id, participants)
    return len(lists)


# -- handlers -------------------------------------------------------------------


async def _status(conn: asyncpg.Connection, registration_id: str) -> str | None:
    status: str | None = await conn.fetchval(
        "SELECT status FROM participants WHERE registration_id = $1", registration_id
    )
    return status


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    await with_vectors(conn, e.event_id, [profile_from_payload(e.registration_id, e.profile)])


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    profile = profile_from_payload(e.registration_id, e.profile)
    await with_vectors(conn, e.event_id, [profile])
    if await _status(conn, e.registration_id) == "approved":
        await refresh(conn, e.event_id, profile, approved=True)


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    row = await conn.fetchrow(
        f"SELECT {_PROFILE_COLUMNS} FROM participants p WHERE p.registration_id = $1",
        e.registration_id,
    )
    if row is None:
        return
    approved = isinstance(e, RegistrationApproved)
    await refresh(conn, e.event_id, profile_from_row(row), approved=approved)


HANDLERS: dict[str, Handler] = {
    ProfileUpdated.ce_type(): on_profile_updated,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{
        t.ce_type(): on_decision
        for t in (
            RegistrationApproved,
            RegistrationRejected,
            RegistrationWaitlisted,
            RegistrationWithdrawn,
        )
    },
}


_MEETING_EVENTS = (
    MeetingRequested,
    MeetingAccepted,
    MeetingDeclined,
    MeetingCancelled,
    MeetingRequestExpired,
)


async def on_meeting_event(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    """A pair became engaged (requested, accepted) or free again (declined, cancelled, expired)."""
    assert isinstance(e, _MEETING_EVENTS)
    await refresh_pair(conn, e.event_id, e.requester_id, e.recipient_id)


PAIR_HANDLERS: dict[str, Handler] = {t.ce_type(): on_meeting_event for t in _MEETING_EVENTS}
"""For a subscription to matching's own topic (`matching.events`): keeps the two lists
of a pair right as requests come and go. Without it reads still leave out pending
and accepted pairs, but a pair freed again only returns when its lists are recomputed."""


# -- reads ----------------------------------------------------------------------


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
    if not await _has_meeting_requests(conn):
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
    participants = await _participants(conn, subject.event_id, token)
    ranker = await ranker_of(conn, subject.event_id, participants)
    if subject.registration_id not in ranker.index:
        return []
    return ranker.list_for(subject.registration_id, K)[:limit]


async def recommendations(
    conn: asyncpg.Connection, subject: Subject, limit: int = 10
) -> list[dict[str, Any]]:
    """The ranked partners of an approved participant, with their reasons."""
    entries = await ranked_partners(conn, subject, limit)
    if not entries:
        return []
    ids = [subject.registration_id, *(e.partner for e in entries)]
    rows = await conn.fetch(
        f"SELECT {_PROFILE_COLUMNS} FROM participants p WHERE p.registration_id = ANY($1::text[])",
        ids,
    )
    profiles = {r["registration_id"]: profile_from_row(r) for r in rows}
    found = [profiles[i] for i in ids if i in profiles]
    participants = {p.id: p for p in await with_vectors(conn, subject.event_id, found)}
    me = participants[subject.registration_id]
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
