"""Registration end to end: HTTP → event store + outbox → Kafka → matching in another process.

Both services run as real subprocesses on their own fresh databases, against
the real broker, with their own consumer group and span file, and under the
tests' topic prefix: their events go to `test.registration.events`, never to the
platform's own `registration.events`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pytest import TempPathFactory

from tests.integration.support import (
    EndOffsets,
    Infra,
    service_platform,
    topic_under_test,
)
from tests.integration.support import RunningPlatform as Platform

pytestmark = pytest.mark.integration

ADMIN_KEY = "e2e-admin-key"
TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"
# The platform's topic, and the test services' name for it (TOPIC_PREFIX).
PLATFORM_REGISTRATION_EVENTS = "registration.events"
REGISTRATION_EVENTS = topic_under_test(PLATFORM_REGISTRATION_EVENTS)


@pytest.fixture(scope="module")
async def platform(infra: Infra, tmp_path_factory: TempPathFactory) -> AsyncIterator[Platform]:
    async with service_platform(
        infra,
        {"registration": 18001, "matching": 18002},
        tmp_path_factory.mktemp("e2e"),
        label="e2e-registration",
        admin_key=ADMIN_KEY,
        spans=True,
    ) as running:
        yield running


def event_definition(**changes: Any) -> dict[str, Any]:
    first = date.today() + timedelta(days=30)
    return {
        "name": "Cluster Matchmaking (e2e)",
        "venue": "Hannover",
        "time_zone": "Europe/Berlin",
        "days": [first.isoformat(), (first + timedelta(days=1)).isoformat()],
        "sessions": [{"start": "10:00", "end": "12:00"}, {"start": "14:00", "end": "17:00"}],
        "slot_minutes": 30,
        "tables": 20,
        "meeting_types": ["Cluster2Cluster", "Business2Cluster"],
        "registration_deadline": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
        **changes,
    }


def organisation(**changes: Any) -> dict[str, Any]:
    return {
        "organisation_type": "cluster",
        "name": f"Cluster {uuid.uuid4().hex[:6]}",
        "country": "de",
        "sectors": ["photonics"],
        "offers": ["laser welding"],
        "representatives": [{"name": "Ann Example", "email": "ann@example.org"}],
        **changes,
    }


async def organiser(http: httpx.AsyncClient, p: Platform) -> dict[str, str]:
    r = await http.post(
        f"{p.urls['registration']}/api/organisers",
        json={"name": "EEN"},
        headers={"X-API-Key": ADMIN_KEY},
    )
    assert r.status_code == 201, r.text
    return {"X-API-Key": r.json()["api_key"]}


async def new_event(
    http: httpx.AsyncClient, p: Platform, key: dict[str, str], **changes: Any
) -> str:
    r = await http.post(
        f"{p.urls['registration']}/api/events", json=event_definition(**changes), headers=key
    )
    assert r.status_code == 201, r.text
    event_id: str = r.json()["event_id"]
    return event_id


async def events_stored(p: Platform) -> int:
    conn = await asyncpg.connect(p.dsns["registration"])
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def find_record(bootstrap: str, subject: str, ce_type_suffix: str) -> Any:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        # The topic's real partitions (KAFKA_PARTITIONS when the tests created it).
        cluster = await consumer._client.fetch_all_metadata()
        parts = [
            TopicPartition(REGISTRATION_EVENTS, p)
            for p in cluster.partitions_for_topic(REGISTRATION_EVENTS) or ()
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    h = {k: v.decode() for k, v in r.headers}
                    if h.get("ce_subject") == subject and h["ce_type"].endswith(ce_type_suffix):
                        return r
        raise AssertionError(f"no {ce_type_suffix} for {subject} on {REGISTRATION_EVENTS}")
    finally:
        await consumer.stop()


async def keys_since(bootstrap: str, topic: str, since: dict[int, int]) -> list[str]:
    """The key of every record written to `topic` after the offsets `since`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(since)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, since[tp.partition])
        keys: list[str] = []
        pending = {tp for tp in parts if ends[tp] > since[tp.partition]}
        deadline = time.monotonic() + 20
        while pending:
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
                for r in records:
                    keys.append((r.key or b"").decode(errors="replace"))
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return keys
    finally:
        await consumer.stop()


async def test_registration_reaches_kafka_and_another_service_with_its_trace(
    platform: Platform,
) -> None:
    async with EndOffsets(platform.bootstrap_servers, PLATFORM_REGISTRATION_EVENTS) as ends:
        before = await ends.by_partition()
    async with httpx.AsyncClient(timeout=10) as http:
        key = await organiser(http, platform)
        event_id = await new_event(http, platform, key)
        r = await http.post(
            f"{platform.urls['registration']}/api/events/{event_id}/registrations",
            json=organisation(),
            headers={"traceparent": TRACEPARENT},
        )
        assert r.status_code == 201, r.text
        registration_id = r.json()["registration_id"]
        assert r.json()["api_key"].startswith("reg_")

        record = await find_record(
            platform.bootstrap_servers, f"registration-{registration_id}", "ClusterRegistered.v1"
        )
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_source"] == "/services/registration"
        assert headers["ce_type"] == "eu.matchmaking.registration.ClusterRegistered.v1"
        assert headers["content-type"] == "application/json"
        assert record.key.decode() == event_id
        assert headers["traceparent"].split("-")[1] == TRACE_ID
        value = json.loads(record.value)
        assert value["registration_id"] == registration_id
        assert "ann@example.org" not in record.value.decode()  # sealed personal data
        # On the test services' topic only: the platform's own topic got none of this
        # brokerage event's events (keyed by its id; whatever a running platform wrote
        # there meanwhile is not ours).
        written = await keys_since(platform.bootstrap_servers, PLATFORM_REGISTRATION_EVENTS, before)
        assert event_id not in written

        deadline = time.monotonic() + 20
        while True:
            answer = await http.get(
                f"{platform.urls['matching']}/api/events/{event_id}/participants",
                headers={"X-API-Key": ADMIN_KEY},
            )
            # 404 until matching has learnt the event; then its participants.
            known = answer.json() if answer.status_code == 200 else []
            if known:
                break
            assert time.monotonic() < deadline, f"matching never learnt of it: {known}"
            await asyncio.sleep(0.2)
        assert known[0]["registration_id"] == registration_id

    deadline = time.monotonic() + 10
    # Each process exports its finished spans in batches every half second, so
    # a parent (the request's own span ends last) may land in the file after its
    # children: read until the trace is whole or the deadline passes.
    while True:
        spans = (
            [json.loads(line) for line in platform.spans.read_text().splitlines()]
            if platform.spans.exists()
            else []
        )
        ours = [s for s in spans if s["trace_id"] == TRACE_ID]
        ids = {s["span_id"] for s in ours}
        roots = [s for s in ours if s["parent_span_id"] not in ids]
        complete = {"registration", "matching"} <= {s["service"] for s in ours} and any(
            s["name"] == f"process {REGISTRATION_EVENTS}" for s in ours
        )
        if complete and len(roots) == 1:
            break
        if time.monotonic() > deadline:
            assert complete, f"trace incomplete: {[s['name'] for s in ours]}"
            break
        await asyncio.sleep(0.5)
    assert len(roots) == 1, f"one connected trace expected, roots: {[s['name'] for s in roots]}"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"country": "ZZ"}, "country"),
        ({"name": ""}, "name"),
        ({"representatives": []}, "representatives"),
        ({"representatives": [{"name": "A", "email": "not-an-email"}]}, "representatives[0].email"),
        ({"organisation_type": "government"}, "organisation_type"),
    ],
)
async def test_bad_registrations_get_problem_details_and_store_nothing(
    platform: Platform, changes: dict[str, Any], field: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        event_id = await new_event(http, platform, await organiser(http, platform))
        before = await events_stored(platform)
        r = await http.post(
            f"{platform.urls['registration']}/api/events/{event_id}/registrations",
            json=organisation(**changes),
        )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await events_stored(platform) == before


async def test_bad_event_definitions_and_closed_or_duplicate_registrations(
    platform: Platform,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        key = await organiser(http, platform)
        before = await events_stored(platform)
        r = await http.post(
            f"{platform.urls['registration']}/api/events",
            headers=key,
            json=(event_definition(sessions=[{"start": "10:00", "end": "10:45"}])),
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "sessions[0]"
        r = await http.post(
            f"{platform.urls['registration']}/api/events",
            headers=key,
            json=event_definition(time_zone="Europe/Atlantis"),
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "time_zone"
        assert await events_stored(platform) == before

        closed = await new_event(
            http,
            platform,
            key,
            registration_deadline=(datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        )
        r = await http.post(
            f"{platform.urls['registration']}/api/events/{closed}/registrations",
            json=organisation(),
        )
        assert r.status_code == 409
        assert r.json()["errors"][0]["field"] == "registration_deadline"

        event_id = await new_event(http, platform, key)
        body = organisation(name="Baltic ICT Alliance", country="LT")
        assert (
            await http.post(
                f"{platform.urls['registration']}/api/events/{event_id}/registrations", json=body
            )
        ).status_code == 201
        before = await events_stored(platform)
        r = await http.post(
            f"{platform.urls['registration']}/api/events/{event_id}/registrations",
            json={**body, "name": "baltic ict alliance"},
        )
        assert r.status_code == 409
        assert r.json()["errors"][0]["field"] == "name"
        assert await events_stored(platform) == before


async def test_idempotency_key_replays_the_first_result(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        event_id = await new_event(http, platform, await organiser(http, platform))
        url = f"{platform.urls['registration']}/api/events/{event_id}/registrations"
        body = organisation()
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        answers = await asyncio.gather(
            *[http.post(url, json=body, headers=headers) for _ in range(5)]
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["registration_id"] for a in answers}) == 1
        before = await events_stored(platform)
        again = await http.post(url, json=body, headers=headers)
        assert again.json() == answers[0].json()
        other = await http.post(url, json=organisation(), headers=headers)
        assert other.status_code == 422
        assert await events_stored(platform) == before


async def test_keys_act_only_on_their_own_events_and_registrations(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        alice, bob = await organiser(http, platform), await organiser(http, platform)
        event_id = await new_event(http, platform, alice)
        r = await http.post(
            f"{platform.urls['registration']}/api/events/{event_id}/registrations",
            json=organisation(),
        )
        registration_id, own_key = r.json()["registration_id"], r.json()["api_key"]
        base = f"{platform.urls['registration']}/api/registrations/{registration_id}"
        assert (await http.post(f"{base}/approve")).status_code == 401
        assert (
            await http.post(f"{base}/approve", headers={"X-API-Key": "nope"})
        ).status_code == 401
        assert (await http.post(f"{base}/approve", headers=bob)).status_code == 403
        assert (
            await http.post(f"{base}/approve", headers={"X-API-Key": own_key})
        ).status_code == 403
        assert (
            await http.get(
                f"{platform.urls['registration']}/api/events/{event_id}/registrations", headers=bob
            )
        ).status_code == 403
        ok = await http.post(f"{base}/approve", headers=alice)
        assert ok.status_code == 200 and ok.json()["status"] == "approved"
        again = await http.post(f"{base}/approve", headers=alice)
        assert again.status_code == 409
        withdrawn = await http.post(f"{base}/withdraw", headers={"X-API-Key": own_key})
        assert withdrawn.json()["status"] == "withdrawn"
        listed = await http.get(
            f"{platform.urls['registration']}/api/events/{event_id}/registrations",
            params={"status": "withdrawn"},
            headers=alice,
        )
        assert [x["registration_id"] for x in listed.json()] == [registration_id]


async def test_erasure_makes_contact_details_unreadable(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        alice = await organiser(http, platform)
        event_id = await new_event(http, platform, alice)
        r = await http.post(
            f"{platform.urls['registration']}/api/events/{event_id}/registrations",
            json=organisation(),
        )
        registration_id, own = r.json()["registration_id"], {"X-API-Key": r.json()["api_key"]}
        url = f"{platform.urls['registration']}/api/registrations/{registration_id}"
        seen = (await http.get(url, headers=alice)).json()
        assert seen["representatives"][0]["email"] == "ann@example.org"
        erased = await http.delete(f"{url}/personal-data", headers=own)
        assert erased.status_code == 200, erased.text
        after = (await http.get(url, headers=alice)).json()
        assert after["representatives"] is None and after["erased"] is True
    conn = await asyncpg.connect(platform.dsns["registration"])
    try:
        stored = await conn.fetch(
            "SELECT data::text FROM events WHERE stream_id = $1", f"registration-{registration_id}"
        )
        assert stored and all("ann@example.org" not in r["data"] for r in stored)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM subject_keys WHERE subject_id = $1", registration_id
            )
            == 0
        )
    finally:
        await conn.close()
