"""Meeting requests end to end: registration and matching as subprocesses, real broker.

Registrations flow from registration to matching over `registration.events`;
meeting requests are made and answered over matching's HTTP API; accepted
meetings flow back to registration over `matching.events`, where they open the
organisations' contact details to each other. Both topics are shared with other
runs: the tests look only at records of their own brokerage events, read from
the offsets the topic had before the action.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pytest import TempPathFactory

from tests.integration.notification_support import free_port
from tests.integration.support import (
    Infra,
    Record,
    headers_of,
    service_platform,
    topic_under_test,
    wait_until,
)
from tests.integration.support import RunningPlatform as Platform

pytestmark = pytest.mark.integration

ADMIN_KEY = "e2e-matching-admin-key"
# Each on a free port, chosen when the platform starts.
SERVICES = ("registration", "matching")
# The test services' topics (TOPIC_PREFIX, see support.TEST_TOPIC_PREFIX).
MATCHING_EVENTS = topic_under_test("matching.events")
REGISTRATION_EVENTS = topic_under_test("registration.events")
CE = "eu.matchmaking.matching"

Key = dict[str, str]


@pytest.fixture(scope="module")
async def platform(infra: Infra, tmp_path_factory: TempPathFactory) -> AsyncIterator[Platform]:
    async with service_platform(
        infra,
        {svc: free_port() for svc in SERVICES},
        tmp_path_factory.mktemp("matching-e2e"),
        label="e2e-matching",
        admin_key=ADMIN_KEY,
        spans=True,
        env={"MATCHING_EXPIRY_SWEEP_SECONDS": "1"},
    ) as running:
        yield running


# -- helpers ------------------------------------------------------------------------


@dataclass
class Org:
    registration_id: str
    key: Key
    email: str
    status: str = "approved"


@dataclass
class World:
    """An organiser, its brokerage event, and approved organisations in it."""

    http: httpx.AsyncClient
    p: Platform
    organiser: Key
    event_id: str
    orgs: list[Org]

    async def post(self, path: str, key: Key | None, body: Any = None, **kw: Any) -> Any:
        return await self.http.post(
            f"{self.p.urls['matching']}/api{path}", json=body, headers={**(key or {}), **kw}
        )

    async def get(self, path: str, key: Key, **params: Any) -> Any:
        return await self.http.get(
            f"{self.p.urls['matching']}/api{path}", headers=key, params=params
        )

    async def ask(self, requester: Org, recipient: Org, **headers: str) -> Any:
        return await self.post(
            f"/events/{self.event_id}/meeting-requests",
            requester.key,
            {"recipient_id": recipient.registration_id, "message": "Shall we meet?"},
            **headers,
        )

    async def register(self, kind: str, attendance: str = "on_site", approve: bool = True) -> Org:
        tag = uuid.uuid4().hex[:8]
        email = f"rep-{tag}@example.org"
        body = {
            "organisation_type": kind,
            "name": f"{kind.title()} {tag}",
            "country": "de",
            "sectors": ["photonics"],
            "offers": ["laser welding"],
            "attendance": attendance,
            "representatives": [{"name": f"Rep {tag}", "email": email}],
        }
        reg = self.p.urls["registration"]
        r = await self.http.post(f"{reg}/api/events/{self.event_id}/registrations", json=body)
        assert r.status_code == 201, r.text
        org = Org(r.json()["registration_id"], {"X-API-Key": r.json()["api_key"]}, email, "pending")
        if approve:
            org.status = "approved"
            url = f"{reg}/api/registrations/{org.registration_id}/approve"
            assert (await self.http.post(url, headers=self.organiser)).status_code == 200
        return org

    async def caught_up(self, *extra: Org) -> None:
        """Wait until matching knows every organisation's status (and key) and the organiser."""
        expected = {o.registration_id: o.status for o in [*self.orgs, *extra]}

        async def known() -> bool:
            r = await self.get(f"/events/{self.event_id}/meeting-requests", self.organiser)
            if r.status_code != 200:
                return False
            url = f"{self.p.urls['matching']}/api/events/{self.event_id}/participants"
            listed = (await self.http.get(url, headers=self.organiser)).json()
            return {x["registration_id"]: x["status"] for x in listed} == expected

        await wait_until(known, limit=30, interval=0.1, what="matching to catch up")

    async def contacts(self, of: Org, key: Key) -> Any:
        return await self.http.get(
            f"{self.p.urls['registration']}/api/registrations/{of.registration_id}/contacts",
            headers=key,
        )


async def world(
    http: httpx.AsyncClient,
    p: Platform,
    types: list[str],
    *,
    attendance: list[str] | None = None,
    approve: bool = True,
    **event: Any,
) -> World:
    r = await http.post(
        f"{p.urls['registration']}/api/organisers",
        json={"name": "EEN"},
        headers={"X-API-Key": ADMIN_KEY},
    )
    assert r.status_code == 201, r.text
    organiser = {"X-API-Key": r.json()["api_key"]}
    first = date.today() + timedelta(days=30)
    definition = {
        "name": "Meeting requests (e2e)",
        "venue": "Hannover",
        "time_zone": "Europe/Berlin",
        "days": [first.isoformat()],
        "sessions": [{"start": "10:00", "end": "12:00"}],
        "slot_minutes": 30,
        "tables": 20,
        "meeting_types": ["Cluster2Cluster", "Business2Cluster"],
        "registration_deadline": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
        **event,
    }
    r = await http.post(f"{p.urls['registration']}/api/events", json=definition, headers=organiser)
    assert r.status_code == 201, r.text
    w = World(http, p, organiser, r.json()["event_id"], [])
    modes = attendance or []
    w.orgs = list(
        await asyncio.gather(
            *[
                w.register(kind, modes[n] if n < len(modes) else "on_site", approve=approve)
                for n, kind in enumerate(types)
            ]
        )
    )
    await w.caught_up()
    return w


class Tail:
    """Records of a topic written after the tail was opened."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False
        )
        self._topic = topic
        self.seen: list[Record] = []

    async def __aenter__(self) -> Tail:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._topic)
        assert partitions, f"topic {self._topic} does not exist"
        tps = [TopicPartition(self._topic, n) for n in sorted(partitions)]
        self._consumer.assign(tps)
        for tp, offset in (await self._consumer.end_offsets(tps)).items():
            self._consumer.seek(tp, offset)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def find(self, match: Callable[[Record], bool], *, limit: float = 20) -> Record:
        deadline = time.monotonic() + limit
        while True:
            for record in self.seen:
                if match(record):
                    return record
            assert time.monotonic() < deadline, f"no matching record on {self._topic}"
            for records in (await self._consumer.getmany(timeout_ms=300)).values():
                self.seen.extend(records)


async def stored_events(p: Platform) -> int:
    conn = await asyncpg.connect(p.dsns["matching"])
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def assert_problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = r.json()
    assert problem["status"] == status and problem["title"]
    if field is not None:
        assert field in [e["field"] for e in problem.get("errors", [])], problem
    return problem


# -- tests --------------------------------------------------------------------------


async def test_an_accepted_request_reaches_kafka_with_its_trace_and_opens_contacts(
    platform: Platform,
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    async with httpx.AsyncClient(timeout=15) as http:
        w = await world(
            http, platform, ["cluster", "business", "cluster"], attendance=["on_site", "remote"]
        )
        a, b, c = w.orgs
        ready = (await http.get(f"{platform.urls['matching']}/ready")).json()
        assert ready["checks"]["background"] is True  # the expiry sweeper runs

        assert ready["checks"]["background"] is True  # and the embedding worker

        # Recommendations appear for the approved participants, with reasons, once the
        # embedding worker has landed their vectors (pending until then).
        answers: list[dict[str, Any]] = []

        async def recommended() -> bool:
            r = await w.get("/me/recommendations", a.key)
            assert r.status_code == 200, r.text
            answers.append(r.json())
            return not answers[-1]["pending"] and len(answers[-1]["recommendations"]) == 2

        await wait_until(recommended, limit=30, interval=0.1, what="a's recommendations")
        partners = {x["registration_id"]: x for x in answers[-1]["recommendations"]}
        assert set(partners) == {b.registration_id, c.registration_id}
        assert all(x["reasons"] for x in partners.values())

        assert_problem(await w.contacts(b, a.key), 403)
        async with Tail(platform.bootstrap_servers, MATCHING_EVENTS) as tail:
            r = await w.ask(a, b)
            assert r.status_code == 201, r.text
            made = r.json()
            assert made["status"] == "pending" and made["meeting_type"] == "Business2Cluster"
            request_id = made["request_id"]
            # A partner once requested is no longer recommended.
            after = (await w.get("/me/recommendations", a.key)).json()["recommendations"]
            assert [x["registration_id"] for x in after] == [c.registration_id]

            incoming = await w.get("/me/meeting-requests", b.key, direction="incoming")
            assert [x["request_id"] for x in incoming.json()] == [request_id]
            outgoing = await w.get("/me/meeting-requests", a.key, direction="outgoing")
            assert [x["request_id"] for x in outgoing.json()] == [request_id]
            assert (await w.get("/me/meeting-requests", b.key, direction="outgoing")).json() == []

            r = await w.post(
                f"/meeting-requests/{request_id}/accept", b.key, traceparent=traceparent
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "accepted" and r.json()["mode"] == "online"

            def accepted(rec: Record) -> bool:
                h = headers_of(rec)
                return (
                    h.get("ce_subject") == f"meeting-request-{request_id}"
                    and h.get("ce_type") == f"{CE}.MeetingAccepted.v1"
                )

            record = await tail.find(accepted)
            requested = await tail.find(
                lambda rec: (
                    headers_of(rec).get("ce_type") == f"{CE}.MeetingRequested.v2"
                    and headers_of(rec).get("ce_subject") == f"meeting-request-{request_id}"
                )
            )
        headers = headers_of(record)
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_source"] == "/services/matching"
        assert headers["content-type"] == "application/json"
        assert headers["ce_id"] and headers["ce_time"]
        assert record.key is not None and record.key.decode() == w.event_id
        assert requested.partition == record.partition and requested.offset < record.offset
        assert headers["traceparent"].split("-")[1] == trace_id
        value = json.loads(record.value or b"{}")
        assert value["meeting_type"] == "Business2Cluster" and value["mode"] == "online"
        assert [
            (x["registration_id"], x["organisation_type"], x["attendance"])
            for x in value["participants"]
        ] == [
            (a.registration_id, "cluster", "on_site"),
            (b.registration_id, "business", "remote"),
        ]

        # Registration learns of the meeting: each side may now read the other's contacts.
        async def a_sees_b() -> bool:
            return bool((await w.contacts(b, a.key)).status_code == 200)

        await wait_until(a_sees_b, limit=20, what="registration to learn of the meeting")
        seen = (await w.contacts(b, a.key)).json()
        assert seen["representatives"][0]["email"] == b.email
        assert (await w.contacts(a, b.key)).json()["representatives"][0]["email"] == a.email
        assert_problem(await w.contacts(b, c.key), 403)
        assert (await w.contacts(b, w.organiser)).status_code == 200
        assert (await w.contacts(b, b.key)).status_code == 200
        assert (await w.contacts(b, {"X-API-Key": ADMIN_KEY})).status_code == 200

        # In bulk (the notification service's batches): the admin's key only.
        bulk = f"{platform.urls['registration']}/api/contacts"
        ids = {"registration_id": [a.registration_id, b.registration_id]}
        asked = {"registration_id": [*ids["registration_id"], "no-such-registration"]}
        r = await http.get(bulk, params=asked, headers={"X-API-Key": ADMIN_KEY})
        assert r.status_code == 200, r.text
        found = {x["registration_id"]: x["representatives"] for x in r.json()["contacts"]}
        assert {k: v[0]["email"] for k, v in found.items()} == {
            a.registration_id: a.email,
            b.registration_id: b.email,
        }
        assert r.json()["unknown"] == ["no-such-registration"]
        for key in (a.key, w.organiser, c.key):  # even its own and its partner's: admin only
            assert_problem(await http.get(bulk, params=ids, headers=key), 403)
        assert_problem(await http.get(bulk, params=ids), 401)
        too_many = {"registration_id": [str(n) for n in range(201)]}
        admin = {"X-API-Key": ADMIN_KEY}
        assert_problem(
            await http.get(bulk, params=too_many, headers=admin), 422, "query.registration_id"
        )
        assert_problem(await http.get(bulk, headers=admin), 422, "query.registration_id")

        # A cancellation closes them again.
        r = await w.post(f"/meeting-requests/{request_id}/cancel", a.key, {"reason": "ill"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text

        async def closed() -> bool:
            return bool((await w.contacts(b, a.key)).status_code == 403)

        await wait_until(closed, limit=20, what="registration to learn of the cancellation")

    # One trace: the accept's HTTP request, matching's publish, registration's consumer.
    async def whole_trace() -> bool:
        if not platform.spans.exists():
            return False
        spans = [json.loads(line) for line in platform.spans.read_text().splitlines()]
        ours = [s for s in spans if s["trace_id"] == trace_id]
        return any(
            s["service"] == "registration" and s["name"] == f"process {MATCHING_EVENTS}"
            for s in ours
        ) and any(s["name"] == f"publish {MATCHING_EVENTS}" for s in ours)

    await wait_until(whole_trace, limit=10, interval=0.5, what="the trace to reach registration")


async def test_refusals_are_problem_details_and_store_nothing(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        w = await world(
            http, platform, ["cluster", "cluster", "business", "cluster"],
            meeting_types=["Cluster2Cluster"],
        )  # fmt: skip
        a, b, biz, c = w.orgs
        unapproved = await w.register("cluster", approve=False)
        await w.caught_up(unapproved)
        other = await world(http, platform, ["cluster"])
        elsewhere = other.orgs[0]
        made = await w.ask(a, b)
        assert made.status_code == 201, made.text
        request_id = made.json()["request_id"]
        before = await stored_events(platform)

        assert_problem(await w.ask(a, a), 422, "recipient_id")
        assert_problem(await w.ask(a, Org("nobody", {}, "")), 422, "recipient_id")
        assert_problem(await w.ask(a, elsewhere), 422, "recipient_id")  # another event
        assert_problem(await w.ask(a, unapproved), 409, "recipient_id")  # not approved
        assert_problem(await w.ask(biz, c), 422, "meeting_type")
        assert_problem(await w.ask(a, b), 409, "recipient_id")  # already pending
        assert_problem(await w.ask(unapproved, a), 409, "requester_id")
        # A participant of another event has no part in this one: refused before any rule.
        assert_problem(await w.ask(elsewhere, a), 403)
        assert_problem(
            await w.post(
                f"/events/{w.event_id}/meeting-requests",
                w.organiser,
                {"recipient_id": a.registration_id},
            ),
            403,
        )
        assert_problem(
            await w.post(f"/events/{w.event_id}/meeting-requests", None, {"recipient_id": "x"}),
            401,
        )
        assert_problem(
            await w.post(f"/events/{w.event_id}/meeting-requests", a.key, {"message": "hi"}),
            422,
            "recipient_id",
        )
        assert_problem(
            await w.post("/events/nope/meeting-requests", a.key, {"recipient_id": "x"}), 404
        )
        # The requester is a party (the rule's "recipient" refuses it); c is not (the policy).
        assert_problem(
            await w.post(f"/meeting-requests/{request_id}/accept", a.key), 403, "recipient_id"
        )
        for who in (a, c):
            assert_problem(await w.post(f"/meeting-requests/{request_id}/decline", who.key), 403)
        assert_problem(await w.post(f"/meeting-requests/{request_id}/accept", c.key), 403)
        assert_problem(await w.post(f"/meeting-requests/{request_id}/cancel", c.key), 403)
        assert_problem(await w.post("/meeting-requests/nope/accept", b.key), 404)
        assert_problem(await w.get(f"/events/{w.event_id}/meeting-requests", other.organiser), 403)
        # A participant lists the event's requests that concern it, and no others.
        own = await w.get(f"/events/{w.event_id}/meeting-requests", a.key)
        assert own.status_code == 200 and [r["request_id"] for r in own.json()] == [request_id]
        none = await w.get(f"/events/{w.event_id}/meeting-requests", c.key)
        assert none.status_code == 200 and none.json() == []
        assert_problem(await w.get(f"/meeting-requests/{request_id}", c.key), 403)
        assert_problem(await w.get("/me/meeting-requests", w.organiser), 403)
        assert_problem(
            await w.post(
                f"/events/{w.event_id}/meetings", other.organiser, {"participants": [
                    a.registration_id, c.registration_id
                ]},
            ),
            403,
        )  # fmt: skip
        assert await stored_events(platform) == before

        # Answered requests are closed to further answers.
        declined = await w.post(
            f"/meeting-requests/{request_id}/decline", b.key, {"reason": "no time"}
        )
        assert declined.status_code == 200 and declined.json()["reason"] == "no time"
        after = await stored_events(platform)
        assert_problem(await w.post(f"/meeting-requests/{request_id}/accept", b.key), 409, "status")
        assert_problem(await w.post(f"/meeting-requests/{request_id}/cancel", a.key), 409, "status")
        assert await stored_events(platform) == after

        # A retry with the same Idempotency-Key returns the first answer and stores nothing.
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = await w.ask(a, c, **key)
        again = await w.ask(a, c, **key)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert await stored_events(platform) == after + 1


async def test_caps_hold_under_concurrent_accepts(platform: Platform) -> None:
    cap, requesters = 5, 20
    async with httpx.AsyncClient(timeout=30) as http:
        w = await world(
            http, platform, ["cluster"] * (requesters + 2), max_meetings_per_participant=cap
        )
        hub, spare, others = w.orgs[0], w.orgs[1], w.orgs[2:]
        made = await asyncio.gather(*[w.ask(o, hub) for o in others])
        assert {r.status_code for r in made} == {201}, [r.text for r in made]
        answers = await asyncio.gather(
            *[w.post(f"/meeting-requests/{r.json()['request_id']}/accept", hub.key) for r in made]
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * cap + [409] * (requesters - cap), [r.text for r in answers]
        for refused in (r for r in answers if r.status_code == 409):
            assert_problem(refused, 409, "max_meetings_per_participant")
        listed = await w.get(
            f"/events/{w.event_id}/meeting-requests", w.organiser, status="accepted"
        )
        assert len(listed.json()) == cap
        pending = await w.get("/me/meeting-requests", hub.key, status="pending")
        assert len(pending.json()) == requesters - cap
        # The hub is full: new requests to it are refused up front.
        assert_problem(await w.ask(spare, hub), 409, "max_meetings_per_participant")


async def test_opposite_requests_become_one_meeting(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        w = await world(http, platform, ["cluster"] * 4)
        a, b, c, d = w.orgs
        first = await w.ask(a, b)
        second = await w.ask(b, a)
        assert first.status_code == second.status_code == 201, second.text
        assert second.json()["request_id"] == first.json()["request_id"]
        assert second.json()["status"] == "accepted" and second.json()["mutual"] is True

        # At the same moment, too: one request, accepted.
        together = await asyncio.gather(w.ask(c, d), w.ask(d, c))
        assert {r.status_code for r in together} == {201}
        assert len({r.json()["request_id"] for r in together}) == 1
        assert {r.json()["status"] for r in together} == {"pending", "accepted"}

        listed = (await w.get(f"/events/{w.event_id}/meeting-requests", w.organiser)).json()
        assert len(listed) == 2 and {x["status"] for x in listed} == {"accepted"}
        assert_problem(await w.ask(b, a), 409, "recipient_id")  # they already meet


async def test_an_organiser_arranges_a_meeting(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        w = await world(http, platform, ["cluster", "cluster", "cluster"])
        a, b, c = w.orgs
        pending = await w.ask(c, a)
        async with Tail(platform.bootstrap_servers, MATCHING_EVENTS) as tail:
            ids = [a.registration_id, b.registration_id]
            r = await w.post(f"/events/{w.event_id}/meetings", w.organiser, {"participants": ids})
            assert r.status_code == 201, r.text
            meeting = r.json()
            assert meeting["status"] == "accepted" and meeting["arranged_by_organiser"] is True
            # Over a pending request: that request is accepted, not duplicated.
            r = await w.post(
                f"/events/{w.event_id}/meetings",
                w.organiser,
                {"participants": [a.registration_id, c.registration_id]},
            )
            assert r.status_code == 201, r.text
            assert r.json()["request_id"] == pending.json()["request_id"]
            assert r.json()["requester_id"] == c.registration_id
            record = await tail.find(
                lambda rec: (
                    headers_of(rec).get("ce_subject") == f"meeting-request-{meeting['request_id']}"
                )
            )
        assert headers_of(record)["ce_type"] == f"{CE}.MeetingAccepted.v1"
        assert json.loads(record.value or b"{}")["arranged_by_organiser"] is True
        assert_problem(
            await w.post(f"/events/{w.event_id}/meetings", w.organiser, {"participants": ids}),
            409,
            "participants",
        )
        assert_problem(
            await w.post(f"/events/{w.event_id}/meetings", a.key, {"participants": ids}), 403
        )
        mine = (await w.get("/me/meeting-requests", a.key, status="accepted")).json()
        assert len(mine) == 2
