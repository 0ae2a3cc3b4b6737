"""Recommendations over the real PostgreSQL: registration events in, ranked lists out.

Each test gets a fresh database with matching's migrations; registration's
events go through the projection's handlers and then the recommendation
handlers, one transaction per event as the inbox consumer runs them. Texts (and
lists a request changed) are only queued there: `recommendations.drain` runs the
worker's rounds until nothing is due (the worker itself in test_embedding_worker.py).
After every step the stored lists must equal the lists computed from scratch.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.matching import bootstrap, projection, recommendations
from services.matching.recommend.scoring import K, Ranker
from services.matching.recommend.topk import Entry, TopList
from services.matching.recommendations import store
from services.matching.recommendations_api import router
from shared import problems
from shared.access import projection as access_projection
from shared.auth import digest
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingDeclined, MeetingRequested
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    Attendance,
    BrokerageEventCreated,
    MeetingType,
    OrganisationProfile,
    OrganisationType,
    ProfileUpdated,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWithdrawn,
    Session,
)
from shared.db import create_database, create_pool, migrate
from shared.envelope import Envelope
from shared.inbox import combine
from tests.integration.support import Infra

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "matching" / "migrations"
HANDLERS = combine(projection.HANDLERS, recommendations.HANDLERS)
ADMIN_KEY = "test-admin-key"


@pytest.fixture
async def matching_db(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    """A fresh database `test_<uuid>` with the plumbing and matching's migrations."""
    name = f"test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(infra.admin_dsn, timeout=10)
    try:
        await admin.execute(create_database(name))
    finally:
        await admin.close()
    dsn = urlsplit(infra.admin_dsn)._replace(path=f"/{name}").geturl()
    try:
        pool = await create_pool(dsn)
        try:
            await migrate(pool, MIGRATIONS)
            yield pool
        finally:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()
    finally:
        admin = await asyncpg.connect(infra.admin_dsn, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def apply(pool: asyncpg.Pool, event: EventPayload, key: str = "e1") -> None:
    """One event through the handlers, in one transaction (as the inbox consumer does),
    then the worker's round of the decisions they queued."""
    envelope = Envelope.wrap(event, key=key)
    async with pool.acquire() as conn, conn.transaction():
        await access_projection.apply(conn, event)  # what the runtime adds to a subscription
        await HANDLERS[event.ce_type()](conn, envelope, event)
    await recommendations.refresh_due(pool)


def brokerage_event(event_id: str, types: list[MeetingType]) -> BrokerageEventCreated:
    return BrokerageEventCreated(
        event_id=event_id,
        organiser_id="org-1",
        name="Cluster matchmaking",
        venue="Hannover",
        time_zone="Europe/Berlin",
        days=[date(2030, 4, 13)],
        sessions=[Session(start=time(10), end=time(12))],
        slot_minutes=30,
        tables=10,
        meeting_types=types,
        registration_deadline=datetime(2030, 4, 1, tzinfo=UTC),
    )


def org(
    name: str,
    kind: OrganisationType,
    *,
    country: str = "DE",
    sectors: tuple[str, ...] = (),
    offers: tuple[str, ...] = (),
    requests: tuple[str, ...] = (),
    position: str | None = None,
) -> OrganisationProfile:
    return OrganisationProfile(
        organisation_type=kind,
        name=name,
        country=country,
        sectors=list(sectors),
        technologies=[],
        value_chain_position=position,
        markets=[],
        offers=list(offers),
        requests=list(requests),
        attendance=Attendance.ON_SITE,
        availability=[],
        representatives_encrypted="sealed",
        representative_count=1,
    )


def registered(rid: str, profile: OrganisationProfile, event_id: str = "e1") -> EventPayload:
    model = REGISTERED_BY_TYPE[profile.organisation_type]
    return model(
        registration_id=rid, event_id=event_id, profile=profile, api_key_digest=digest(f"key-{rid}")
    )


B = OrganisationType.BUSINESS
C = OrganisationType.CLUSTER
R = OrganisationType.RESEARCH

PROFILES: dict[str, OrganisationProfile] = {
    "r01": org(
        "VoltLoop Mobility",
        B,
        country="FR",
        sectors=("automotive",),
        offers=("electric scooters for sharing fleets",),
        requests=("partners to recycle end-of-life lithium-ion batteries",),
        position="OEM of electric scooters",
    ),
    "r02": org(
        "Hydromet Recovery",
        B,
        country="SK",
        sectors=("circular economy",),
        offers=("hydrometallurgical recovery of cobalt, nickel and lithium from spent EV cells",),
        requests=("buyers for high-purity metal sulphates",),
        position="recycling service provider",
    ),
    "r03": org(
        "Composita Moulding",
        B,
        sectors=("automotive", "plastics"),
        offers=("we mould CFRP composite panels for vehicle chassis",),
        requests=("resin formulators with low-VOC epoxies",),
        position="tier 2 supplier",
    ),
    "r04": org(
        "Institute for Electrochemistry",
        R,
        country="AT",
        sectors=("energy",),
        offers=("electron microscopy and materials characterisation",),
        requests=("industrial partners for field tests",),
    ),
    "r05": org(
        "Danube Photonics Cluster",
        C,
        country="AT",
        sectors=("photonics",),
        offers=("access to 60 photonics SMEs",),
        requests=("partners for smart lighting projects",),
    ),
    "r06": org(
        "Baltic ICT Alliance",
        C,
        country="LT",
        sectors=("ICT",),
        offers=("industrial IoT software developers",),
        requests=("manufacturers wanting to digitise production",),
    ),
    "r07": org(
        "Chemicals Co",
        B,
        country="PL",
        sectors=("chemicals",),
        offers=("low-VOC epoxy resins",),
        requests=("buyers of specialty resins",),
        position="materials producer",
    ),
}


async def stored_lists(pool: asyncpg.Pool, event_id: str = "e1") -> dict[str, TopList]:
    rows = await pool.fetch(
        "SELECT registration_id, partner_ids, scores FROM recommendation_lists WHERE event_id = $1",
        event_id,
    )
    return {
        r["registration_id"]: [
            Entry.of(p, s) for p, s in zip(r["partner_ids"], r["scores"], strict=True)
        ]
        for r in rows
    }


async def from_scratch(pool: asyncpg.Pool, event_id: str = "e1") -> dict[str, TopList]:
    async with pool.acquire() as conn:
        ranker = await recommendations.load_ranker(conn, event_id)
    return ranker.all_lists(K)


async def assert_current(pool: asyncpg.Pool, event_id: str = "e1") -> dict[str, TopList]:
    stored = await stored_lists(pool, event_id)
    assert stored == await from_scratch(pool, event_id)
    return stored


def partners_of(lists: dict[str, TopList], rid: str) -> list[str]:
    return [e.partner for e in lists.get(rid, [])]


async def register_all(pool: asyncpg.Pool, ids: list[str], event_id: str = "e1") -> None:
    """Register `ids`, then let the embedding worker catch up."""
    for rid in ids:
        await apply(pool, registered(rid, PROFILES[rid], event_id), event_id)
    await recommendations.drain(pool)


async def test_lists_follow_registrations(matching_db: asyncpg.Pool) -> None:
    pool = matching_db
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, list(PROFILES))
    assert await pool.fetchval("SELECT count(*) FROM participant_vectors") == len(PROFILES)
    assert await stored_lists(pool) == {}  # nobody approved yet

    for rid in ["r01", "r02", "r03", "r04", "r05"]:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
        await assert_current(pool)
    lists = await stored_lists(pool)
    assert set(lists) == {"r01", "r02", "r03", "r04", "r05"}
    assert partners_of(lists, "r01")[0] == "r02"  # batteries to recycle ↔ metal recovery

    # a new approved participant shows up in others' lists
    await apply(pool, RegistrationApproved(registration_id="r07", event_id="e1"))
    lists = await assert_current(pool)
    assert partners_of(lists, "r03")[0] == "r07"  # asks for low-VOC epoxies, r07 offers them

    # a withdrawn one disappears everywhere
    await apply(pool, RegistrationWithdrawn(registration_id="r02", event_id="e1"))
    lists = await assert_current(pool)
    assert "r02" not in lists and all("r02" not in partners_of(lists, o) for o in lists)

    # a profile update moves it in the lists
    changed = PROFILES["r05"].model_copy(
        update={"offers": ["recycling of lithium batteries from e-scooters"]}
    )
    await apply(pool, ProfileUpdated(registration_id="r05", event_id="e1", profile=changed))
    lists = await assert_current(pool)  # new texts: out of every list until embedded
    assert "r05" not in lists and all("r05" not in partners_of(lists, o) for o in lists)
    assert await recommendations.drain(pool) == 1
    lists = await assert_current(pool)
    assert partners_of(lists, "r01")[0] == "r05"

    # a change of other fields is applied at once, with the stored vectors
    moved = changed.model_copy(update={"country": "LT"})
    await apply(pool, ProfileUpdated(registration_id="r05", event_id="e1", profile=moved))
    assert await pool.fetchval("SELECT count(*) FROM embedding_queue") == 0
    lists = await assert_current(pool)
    assert "r05" in lists and partners_of(lists, "r01")[0] == "r05"

    # a rejected pending registration changes nothing
    before = await stored_lists(pool)
    await apply(pool, RegistrationRejected(registration_id="r06", event_id="e1"))
    assert await assert_current(pool) == before


async def test_a_cluster2cluster_event_recommends_only_clusters_to_clusters(
    matching_db: asyncpg.Pool,
) -> None:
    pool = matching_db
    await apply(pool, brokerage_event("e1", [MeetingType.CLUSTER2CLUSTER]))
    await register_all(pool, list(PROFILES))
    for rid in PROFILES:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    lists = await assert_current(pool)
    assert partners_of(lists, "r05") == ["r06"] and partners_of(lists, "r06") == ["r05"]
    assert all(not partners_of(lists, rid) for rid in PROFILES if rid not in ("r05", "r06"))


async def test_partners_requested_or_met_are_left_out(matching_db: asyncpg.Pool) -> None:
    pool = matching_db
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, list(PROFILES))
    for rid in PROFILES:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    subject = recommendations.Subject("r01", "e1", "approved")
    async with pool.acquire() as conn:
        first = [e.partner for e in await recommendations.ranked_partners(conn, subject, 10)]
    assert first[0] == "r02"
    requested = await request_pending(pool, "m1", "r02", "r01")
    async with pool.acquire() as conn:  # reads leave the pair out at once
        after = [e.partner for e in await recommendations.ranked_partners(conn, subject, 10)]
    assert after == [p for p in first if p != "r02"]
    await apply_pair_event(pool, requested)  # and the lists once matching's event arrives
    lists = await assert_current(pool)
    assert "r02" not in partners_of(lists, "r01") and "r01" not in partners_of(lists, "r02")

    await pool.execute("UPDATE meeting_requests SET status = 'declined'")
    await apply_pair_event(
        pool,
        MeetingDeclined(request_id="m1", event_id="e1", requester_id="r02", recipient_id="r01"),
    )  # free again: back in the lists
    lists = await assert_current(pool)
    assert partners_of(lists, "r01")[0] == "r02"


async def test_a_pair_event_reuses_the_last_change_s_ranker(
    matching_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request made or ended changes only who is engaged with whom: the next pair event
    reuses the ranker's arrays from the change before (kept with its state token), reads
    the engaged pairs again, and its lists still equal lists from scratch."""
    pool = matching_db
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, list(PROFILES))
    for rid in PROFILES:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    requested = await request_pending(pool, "m1", "r02", "r01")
    await apply_pair_event(pool, requested)
    built: list[int] = []
    made = Ranker

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return made(*args, **kwargs)

    monkeypatch.setattr(store, "Ranker", counted)  # what `store.ranker_of` makes
    await pool.execute("UPDATE meeting_requests SET status = 'declined'")
    await apply_pair_event(
        pool,
        MeetingDeclined(request_id="m1", event_id="e1", requester_id="r02", recipient_id="r01"),
    )
    assert built == []  # the arrays were reused
    lists = await assert_current(pool)  # ... with the pairs read again: free, back in the lists
    assert partners_of(lists, "r01")[0] == "r02"
    built.clear()  # (the lists from scratch above made one)
    recommendations.states.clear()  # as after another process's change: built afresh
    await apply_pair_event(pool, requested)
    assert built == [1]


async def test_a_run_of_requests_updates_the_lists_in_one_go(matching_db: asyncpg.Pool) -> None:
    """The batch handler for matching's own events: a burst of requests recomputes each
    list once, and the stored lists equal lists from scratch, as one by one."""
    pool = matching_db
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, list(PROFILES))
    for rid in PROFILES:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    ids = sorted(PROFILES)
    pairs = [(ids[i], ids[i + 1]) for i in range(0, min(len(ids), 8) - 1, 2)]
    run: list[tuple[Envelope, EventPayload]] = []
    for n, (requester, recipient) in enumerate(pairs):
        event = await request_pending(pool, f"m{n}", requester, recipient)
        run.append((Envelope.wrap(event, key="e1"), event))
    async with pool.acquire() as conn, conn.transaction():
        await recommendations.PAIR_BATCH_HANDLERS[MeetingRequested.ce_type()](conn, run)
    queued = await pool.fetchval("SELECT count(*) FROM list_refresh_queue")  # each list once
    assert queued == len({r for pair in pairs for r in pair})
    assert await recommendations.refresh_due(pool) == queued  # the worker's round takes them
    lists = await assert_current(pool)
    for requester, recipient in pairs:
        assert recipient not in partners_of(lists, requester)
        assert requester not in partners_of(lists, recipient)


@pytest.mark.parametrize("scratch_every", [1, 10_000], ids=["from-scratch", "one-by-one"])
async def test_a_run_of_approvals_updates_the_lists_in_one_go(
    matching_db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, scratch_every: int
) -> None:
    """The service's batch handler for a burst of approvals (as its bootstrap wires it),
    then the worker's round of what it queued: the stored lists equal lists from
    scratch, whether the run is long enough to compute every list anew or is applied
    participant by participant."""
    monkeypatch.setattr(recommendations.handlers, "SCRATCH_EVERY", scratch_every)
    pool = matching_db
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, list(PROFILES))
    ids = sorted(PROFILES)
    await apply(pool, RegistrationApproved(registration_id=ids[0], event_id="e1"))
    await apply(pool, RegistrationApproved(registration_id=ids[1], event_id="e1"))
    run: list[tuple[Envelope, EventPayload]] = []
    for rid in [*ids[2:], ids[2]]:  # approved twice in one run: no harm
        event = RegistrationApproved(registration_id=rid, event_id="e1")
        run.append((Envelope.wrap(event, key="e1"), event))
    on_run = bootstrap.registration_runs()[RegistrationApproved.ce_type()]
    async with pool.acquire() as conn, conn.transaction():
        await on_run(conn, run)
    assert await recommendations.refresh_due(pool) == len(ids) - 2  # each queued once
    lists = await assert_current(pool)
    assert set(lists) == set(ids)
    # and the next decision, one by one, finds them as it expects
    await apply(pool, RegistrationWithdrawn(registration_id=ids[3], event_id="e1"))
    lists = await assert_current(pool)
    assert ids[3] not in lists


async def request_pending(
    pool: asyncpg.Pool, request_id: str, requester: str, recipient: str
) -> MeetingRequested:
    """A pending request as matching's command leaves it (its row), and its event."""
    await pool.execute(
        "INSERT INTO meeting_requests (request_id, event_id, requester_id, recipient_id,"
        " status, meeting_type) VALUES ($1, 'e1', $2, $3, 'pending', 'Business2Business')",
        request_id,
        requester,
        recipient,
    )
    return MeetingRequested(
        request_id=request_id,
        event_id="e1",
        requester_id=requester,
        recipient_id=recipient,
        meeting_type=MeetingType.BUSINESS2BUSINESS,
        expires_at=datetime(2030, 4, 2, tzinfo=UTC),
    )


async def apply_pair_event(pool: asyncpg.Pool, event: EventPayload) -> None:
    """The pair subscription's handler, then the worker's round of the lists it queued."""
    envelope = Envelope.wrap(event, key="e1")
    async with pool.acquire() as conn, conn.transaction():
        await recommendations.PAIR_HANDLERS[event.ce_type()](conn, envelope, event)
    await recommendations.refresh_due(pool)


def client(pool: asyncpg.Pool) -> httpx.AsyncClient:
    app = FastAPI()
    problems.install(app)
    app.include_router(router)
    app.state.runtime = SimpleNamespace(
        pool=pool, settings=SimpleNamespace(platform_admin_key=ADMIN_KEY)
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://matching")


async def test_api(matching_db: asyncpg.Pool) -> None:
    pool = matching_db
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await pool.execute("UPDATE brokerage_events SET organiser_id = 'org-1'")
    await register_all(pool, list(PROFILES))
    for rid in ["r01", "r02", "r03", "r04"]:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    for key, role, subject in [
        ("key-r01", "organisation", "r01"),
        ("key-r06", "organisation", "r06"),
        ("key-org-1", "organiser", "org-1"),
        ("key-org-2", "organiser", "org-2"),
    ]:
        await pool.execute(
            "INSERT INTO api_keys (key_digest, role, subject_id) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            digest(key),
            role,
            subject,
        )
    async with client(pool) as http:
        mine = await http.get("/api/me/recommendations?limit=2", headers={"X-API-Key": "key-r01"})
        assert mine.status_code == 200, mine.text
        body: dict[str, Any] = mine.json()
        assert body["registration_id"] == "r01" and len(body["recommendations"]) == 2
        assert body["pending"] is False
        top = body["recommendations"][0]
        assert top["registration_id"] == "r02" and top["meeting_type"] == "Business2Business"
        assert top["reasons"][0].startswith(
            "your request for “partners to recycle end-of-life lithium-ion batteries” matches"
            " their offer of “hydrometallurgical recovery"
        )

        pending = await http.get("/api/me/recommendations", headers={"X-API-Key": "key-r06"})
        assert pending.status_code == 409
        assert (await http.get("/api/me/recommendations")).status_code == 401

        path = "/api/events/e1/participants/r01/recommendations"
        assert (await http.get(path, headers={"X-API-Key": "key-org-1"})).status_code == 200
        assert (await http.get(path, headers={"X-API-Key": ADMIN_KEY})).status_code == 200
        assert (await http.get(path, headers={"X-API-Key": "key-org-2"})).status_code == 403
        other = "/api/events/e2/participants/r01/recommendations"
        assert (await http.get(other, headers={"X-API-Key": ADMIN_KEY})).status_code == 404
        limit = await http.get(path + "?limit=500", headers={"X-API-Key": ADMIN_KEY})
        assert limit.status_code == 422

        # Approved before its texts were embedded: an empty list, pending, until they land.
        await apply(pool, registered("r08", PROFILES["r07"]))
        await apply(pool, RegistrationApproved(registration_id="r08", event_id="e1"))
        early = await http.get("/api/me/recommendations", headers={"X-API-Key": "key-r08"})
        assert early.status_code == 200, early.text
        assert early.json()["recommendations"] == [] and early.json()["pending"] is True
        await recommendations.drain(pool)
        landed = (
            await http.get("/api/me/recommendations", headers={"X-API-Key": "key-r08"})
        ).json()
        assert landed["pending"] is False
        assert landed["recommendations"][0]["registration_id"] == "r03"  # epoxies


class Boom(Exception):
    pass


async def test_a_rolled_back_change_leaves_no_trace(matching_db: asyncpg.Pool) -> None:
    """The process keeps the participants it saw; a rolled-back change must not leak into it."""
    pool = matching_db
    await apply(pool, brokerage_event("e1", list(MeetingType)))
    await register_all(pool, list(PROFILES))
    for rid in ["r01", "r02", "r03"]:
        await apply(pool, RegistrationApproved(registration_id=rid, event_id="e1"))
    event = RegistrationApproved(registration_id="r07", event_id="e1")
    with pytest.raises(Boom):
        async with pool.acquire() as conn, conn.transaction():
            await HANDLERS[event.ce_type()](conn, Envelope.wrap(event, key="e1"), event)
            raise Boom  # e.g. a later handler of the batch failed
    await apply(pool, RegistrationApproved(registration_id="r04", event_id="e1"))
    lists = await assert_current(pool)
    assert set(lists) == {"r01", "r02", "r03", "r04"}
    assert all("r07" not in partners_of(lists, o) for o in lists)

    # another instance changed the event meanwhile: the token is no longer ours
    await pool.execute("UPDATE recommendation_state SET token = 'theirs'")
    await apply(pool, RegistrationWithdrawn(registration_id="r03", event_id="e1"))
    await assert_current(pool)


async def test_warm_up_preloads_the_events_changed_last_and_a_later_change_is_still_right(
    matching_db: asyncpg.Pool,
) -> None:
    pool = matching_db
    for event_id in ("e1", "e2"):
        await apply(pool, brokerage_event(event_id, list(MeetingType)), event_id)
        for rid in ["r01", "r02", "r03"]:
            await apply(pool, registered(f"{event_id}-{rid}", PROFILES[rid], event_id), event_id)
            await recommendations.drain(pool)
            await apply(
                pool, RegistrationApproved(registration_id=f"{event_id}-{rid}", event_id=event_id)
            )
    recommendations.states.clear()  # as in a process that has just started

    warmed = await recommendations.warm_up(pool)

    assert warmed == ["e2", "e1"]  # most recently changed first
    for event_id in warmed:
        token = await pool.fetchval(
            "SELECT token FROM recommendation_state WHERE event_id = $1", event_id
        )
        preloaded = recommendations.states.get(event_id, token)
        assert preloaded is not None
        assert sorted(preloaded) == [f"{event_id}-{r}" for r in ("r01", "r02", "r03")]
    # the preload is used by the next change, and the lists stay equal to from scratch
    await apply(pool, registered("e1-r07", PROFILES["r07"], "e1"), "e1")
    await apply(pool, RegistrationApproved(registration_id="e1-r07", event_id="e1"))
    lists = await assert_current(pool, "e1")
    assert "e1-r07" not in lists  # approved before its vectors landed: pending
    await recommendations.drain(pool)  # they land, and the worker brings it in
    lists = await assert_current(pool, "e1")
    assert "e1-r07" in lists
