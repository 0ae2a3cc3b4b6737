"""Recommendations kept current from registration's and matching's events: the
incremental updates (`refresh`, `refresh_queued`, `rebuild_event`) and the handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from services.matching.recommend import incremental
from services.matching.recommend.incremental import Plan
from services.matching.recommend.profiles import Profile
from services.matching.recommend.scoring import K, Ranker
from services.matching.recommend.topk import TopList
from services.matching.recommendations import embedding
from services.matching.recommendations.cache import lock, participants_of, ranker_for, save
from services.matching.recommendations.store import (
    PROFILE_COLUMNS,
    list_floors,
    list_holders,
    load_participants,
    profile_from_payload,
    profile_from_row,
    ranker_of,
    store_plan,
    stored_vectors,
    write_lists,
)
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
    ProfileUpdated,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
)
from shared.envelope import Envelope
from shared.inbox import BatchHandler, Handler


async def refresh(
    conn: asyncpg.Connection,
    event_id: str,
    subject: Profile,
    approved: bool,
) -> Plan:
    """Bring the event's lists up to date after `subject` changed (joined, updated, left).

    The subject's profile and status come from the event being handled, not
    from the projection, so the order of the handlers does not matter for it.
    An approved subject whose current texts have no stored vectors yet is
    treated as absent (out of every list, no list of its own) until the
    embedding worker stores them and calls this again.
    """
    token = await lock(conn, event_id)
    rid = subject.registration_id
    found = (await stored_vectors(conn, [subject])).get(rid) if approved else None
    holders = await list_holders(conn, event_id, rid)
    had_list = await conn.fetchval(
        "SELECT true FROM recommendation_lists WHERE registration_id = $1", rid
    )
    if found is None and not holders and not had_list:
        return Plan()  # not in the lists and not to be: nothing to change
    participants = await participants_of(conn, event_id, token)
    if found is not None:
        participants[rid] = found
    else:
        participants.pop(rid, None)
    ranker = await ranker_of(conn, event_id, participants)
    floors = await list_floors(conn, event_id) if found is not None else {}
    change = await asyncio.to_thread(incremental.plan, ranker, rid, holders, floors, K)
    await store_plan(conn, event_id, change)
    await save(conn, event_id, participants)
    return change


# The scores are computed in a thread (numpy releases the GIL for most of it), while
# the event loop goes on with the consumers and the API: every list of 700 participants
# held the loop for some 100 ms, which was then the p99 of matching's consumers. A ranker
# is never changed once made, so the thread shares it safely.
async def every_list(ranker: Ranker) -> dict[str, TopList]:
    return await asyncio.to_thread(ranker.all_lists, K)


# A run of changes to n participants of an event of N is applied one by one (a ranker and
# an incremental plan each) when that is cheaper than every list from scratch (one
# ranker, N x N scores): measured on 2 cores, one refresh costs about as much as
# all_lists / 3 at N = 700 and all_lists / 19 at N = 3,500, so scratch wins from about
# n >= N / 200. Both give the same lists (the incremental plans are tested against
# from-scratch lists).
SCRATCH_EVERY = 200


async def refresh_many(
    conn: asyncpg.Connection, event_id: str, subjects: Sequence[tuple[Profile, bool]]
) -> None:
    """`refresh` for each of `subjects` (profile, approved), in order, in one go: for a
    long run every list of the event is computed once from scratch instead."""
    token = await lock(conn, event_id)
    participants = await participants_of(conn, event_id, token)
    if len(subjects) < 2 or len(subjects) * SCRATCH_EVERY < len(participants):
        for profile, approved in subjects:
            await refresh(conn, event_id, profile, approved)
        return
    found = await stored_vectors(conn, [p for p, approved in subjects if approved])
    for profile, approved in subjects:
        rid = profile.registration_id
        if approved and rid in found:
            participants[rid] = found[rid]
        else:
            participants.pop(rid, None)
    lists = await every_list(await ranker_of(conn, event_id, participants))
    await conn.execute(
        "DELETE FROM recommendation_lists WHERE event_id = $1"
        " AND NOT registration_id = ANY($2::text[])",
        event_id,
        list(lists),
    )
    await write_lists(conn, event_id, lists)
    await save(conn, event_id, participants)


async def rebuild_event(conn: asyncpg.Connection, event_id: str) -> int:
    """Every list of the event from scratch (repair or backfill); returns how many."""
    await lock(conn, event_id)
    participants = await load_participants(conn, event_id)
    lists = await every_list(await ranker_of(conn, event_id, participants))
    await conn.execute("DELETE FROM recommendation_lists WHERE event_id = $1", event_id)
    await write_lists(conn, event_id, lists)
    await save(conn, event_id, participants)
    return len(lists)


# -- handlers -------------------------------------------------------------------


async def _status(conn: asyncpg.Connection, registration_id: str) -> str | None:
    status: str | None = await conn.fetchval(
        "SELECT status FROM participants WHERE registration_id = $1", registration_id
    )
    return status


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    await embedding.enqueue(conn, e.event_id, profile_from_payload(e.registration_id, e.profile))


async def on_registered_batch(
    conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    """`on_registered` for a run of registrations: one statement queues them all."""
    items = []
    for _, e in run:
        assert isinstance(e, RegisteredBase)
        items.append((e.event_id, e.registration_id, e.profile.requests, e.profile.offers))
    await embedding.enqueue_texts(conn, items)


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    profile = profile_from_payload(e.registration_id, e.profile)
    await embedding.enqueue(conn, e.event_id, profile)
    if await _status(conn, e.registration_id) == "approved":
        # New texts: out of the lists until their vectors land (the worker brings it
        # back); other fields only: its scores change now, with the stored vectors.
        await refresh(conn, e.event_id, profile, approved=True)


async def _embed_now(conn: asyncpg.Connection, event_id: str, profile: Profile) -> None:
    if await embedding.enqueue(conn, event_id, profile):
        await embedding.embed_in(conn, [profile.registration_id])


async def on_registered_inline(conn: asyncpg.Connection, env: Envelope, e: EventPayload) -> None:
    """The old path (`MATCHING_EMBEDDING=inline`): embed in the consumer's transaction."""
    assert isinstance(e, RegisteredBase)
    await _embed_now(conn, e.event_id, profile_from_payload(e.registration_id, e.profile))


async def on_profile_updated_inline(
    conn: asyncpg.Connection, env: Envelope, e: EventPayload
) -> None:
    assert isinstance(e, ProfileUpdated)
    await _embed_now(conn, e.event_id, profile_from_payload(e.registration_id, e.profile))
    await on_profile_updated(conn, env, e)  # the vectors are there: queues nothing


async def _queue(conn: asyncpg.Connection, queue: str, rows: Sequence[tuple[str, str]]) -> None:
    """(brokerage event, participant) rows into one of the worker's queues
    (`list_entry_queue`, `list_refresh_queue`), each once, in one statement."""
    unique = list(dict.fromkeys(rows))
    await conn.execute(
        f"INSERT INTO {queue} AS q (event_id, registration_id)"
        " SELECT * FROM unnest($1::text[], $2::text[])"
        " ON CONFLICT (registration_id) DO UPDATE SET generation = q.generation + 1",
        [event_id for event_id, _ in unique],
        [registration_id for _, registration_id in unique],
    )


async def queue_entries(conn: asyncpg.Connection, decided: Sequence[tuple[str, str]]) -> None:
    """Queue these (brokerage event, participant) decisions for the recommendations
    worker to bring the event's lists in line with (`enter_queued`), in one statement."""
    await _queue(conn, "list_entry_queue", decided)


Queued = dict[str, int]  # a queue's rows of one brokerage event: participant -> generation


async def read_queued(conn: asyncpg.Connection) -> dict[str, tuple[Queued, Queued]]:
    """What both queues hold, by brokerage event: (decisions, lists). Read, not taken:
    `enter_queued` and `refresh_queued` delete the rows they followed at the end."""
    by_event: dict[str, tuple[Queued, Queued]] = {}
    for r in await conn.fetch(
        "SELECT false AS list, event_id, registration_id, generation FROM list_entry_queue"
        " UNION ALL"
        " SELECT true, event_id, registration_id, generation FROM list_refresh_queue"
    ):
        queued = by_event.setdefault(r["event_id"], ({}, {}))[r["list"]]
        queued[r["registration_id"]] = r["generation"]
    return by_event


async def _done(conn: asyncpg.Connection, queue: str, followed: Queued) -> None:
    """Delete the rows followed, but those queued again since they were read (a newer
    generation: their change may have come after what this round read)."""
    await conn.execute(
        f"DELETE FROM {queue} q USING unnest($1::text[], $2::bigint[]) AS t(id, generation)"
        " WHERE q.registration_id = t.id AND q.generation = t.generation",
        list(followed),
        list(followed.values()),
    )


async def enter_queued(conn: asyncpg.Connection, event_id: str, queued: Queued) -> int:
    """Bring `event_id`'s lists in line with its `queued` decisions (`read_queued`), then
    delete their rows; how many. Each participant in or out by its status in the
    projection now (approved: in, once its vectors have landed; anything else: out), so a
    decision taken twice, or undone meanwhile, ends the same. In the caller's
    transaction, under the event's lock (a decision committed before it is seen; one
    after it queued its row again, for the next round)."""
    if not queued:
        return 0
    await lock(conn, event_id)
    rows = await conn.fetch(
        f"SELECT {PROFILE_COLUMNS}, p.status FROM participants p"
        " WHERE p.registration_id = ANY($1::text[]) ORDER BY p.registration_id",
        list(queued),
    )
    subjects = [(profile_from_row(r), r["status"] == "approved") for r in rows]
    await refresh_many(conn, event_id, subjects)
    await _done(conn, "list_entry_queue", queued)
    return len(queued)


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    """A participant was approved, rejected, waitlisted or withdrew: queued for the
    worker, which brings the lists in line (`enter_queued`)."""
    assert isinstance(e, DecisionBase)
    await queue_entries(conn, [(e.event_id, e.registration_id)])


async def on_decisions(
    conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    """`on_decision` for a run (a burst of approvals), in one statement."""
    decided = []
    for _, e in run:
        assert isinstance(e, DecisionBase)
        decided.append((e.event_id, e.registration_id))
    await queue_entries(conn, decided)


_DECISIONS = (
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
)
_DECISION_HANDLERS: dict[str, Handler] = {t.ce_type(): on_decision for t in _DECISIONS}
HANDLERS: dict[str, Handler] = {
    ProfileUpdated.ce_type(): on_profile_updated,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **_DECISION_HANDLERS,
}
"""Registration's events: texts are queued for the embedding worker (`worker.Worker`)."""
BATCH_HANDLERS: dict[str, BatchHandler] = {
    **{t.ce_type(): on_registered_batch for t in REGISTERED_BY_TYPE.values()},
    **{t.ce_type(): on_decisions for t in _DECISIONS},
}
"""Runs of registrations and of decisions, the bursts before a deadline
(`Subscription.batch_handlers`): the same as `HANDLERS` one by one."""
INLINE_HANDLERS: dict[str, Handler] = {
    ProfileUpdated.ce_type(): on_profile_updated_inline,
    **{t.ce_type(): on_registered_inline for t in REGISTERED_BY_TYPE.values()},
    **_DECISION_HANDLERS,
}
"""The same, embedding in the consumer's transaction (the behaviour before the worker;
kept as `MATCHING_EMBEDDING=inline` to measure against)."""


_MEETING_EVENTS = (
    MeetingRequested,
    MeetingAccepted,
    MeetingDeclined,
    MeetingCancelled,
    MeetingRequestExpired,
)


LIST_REFRESH_CHANNEL = "list_refresh_queue"  # NOTIFY'd by the queue's trigger (migration 016)


async def queue_lists(conn: asyncpg.Connection, owners: Sequence[tuple[str, str]]) -> None:
    """Queue these (brokerage event, participant) lists to be computed anew by the
    recommendations worker (`refresh_queued`), in one statement."""
    await _queue(conn, "list_refresh_queue", owners)


async def refresh_queued(conn: asyncpg.Connection, event_id: str, queued: Queued) -> int:
    """The `queued` lists of `event_id` (`read_queued`) computed anew, each once, then
    their rows deleted; how many. A list is computed from the requests as the tables hold
    them (written by the commands before their events were sent) and from no other list,
    so one computation after many requests equals one after each. In the caller's
    transaction, under the event's lock: a pair event queued after the rows were read
    raised its row's generation, which the delete leaves for the next round (this round
    may have seen its request already: one computation too many, never one too few)."""
    if not queued:
        return 0
    token = await lock(conn, event_id)
    participants = await participants_of(conn, event_id, token)
    ranker = await ranker_for(conn, event_id, token, participants, among=list(queued))
    owners = sorted(r for r in queued if r in ranker.index)
    lists = await asyncio.to_thread(ranker.lists_for, owners, K)
    await store_plan(conn, event_id, Plan(replace=lists))
    await save(conn, event_id, participants, ranker)
    await _done(conn, "list_refresh_queue", queued)
    return len(queued)


def _pair_lists(run: Sequence[tuple[Envelope, EventPayload]]) -> list[tuple[str, str]]:
    owners = []
    for _, e in run:
        assert isinstance(e, _MEETING_EVENTS)
        owners += [(e.event_id, e.requester_id), (e.event_id, e.recipient_id)]
    return owners


async def on_meeting_event(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
    """A pair became engaged (requested, accepted) or free again (declined, cancelled,
    expired): both lists are queued for the recommendations worker."""
    await queue_lists(conn, _pair_lists([(envelope, e)]))


PAIR_HANDLERS: dict[str, Handler] = {t.ce_type(): on_meeting_event for t in _MEETING_EVENTS}
"""For a subscription to matching's own topic (`matching.events`): keeps the two lists
of a pair right as requests come and go, through the queue the worker drains
(`refresh_queued`). Without it reads still leave out pending and accepted pairs, but a
pair freed again only returns when its lists are recomputed."""


async def on_meeting_events(
    conn: asyncpg.Connection, run: Sequence[tuple[Envelope, EventPayload]]
) -> None:
    """`on_meeting_event` for a run: every list concerned queued in one statement."""
    await queue_lists(conn, _pair_lists(run))


PAIR_BATCH_HANDLERS: dict[str, BatchHandler] = {
    t.ce_type(): on_meeting_events for t in _MEETING_EVENTS
}
