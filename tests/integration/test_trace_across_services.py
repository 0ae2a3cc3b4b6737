"""One command, one trace: an organiser's approval followed through every service it reaches.

Registration, matching, scheduling, notification and reporting run as real
subprocesses on fresh databases and the real broker, all writing spans to one
JSON-lines file. The approval (sent with a known `traceparent` and correlation id)
is published by registration's outbox relay and consumed by the four other
services; notification also emails the applicant, to an SMTP server in this
test's event loop. The spans must form one tree rooted at the HTTP request, and
`python -m shared.traces` must print it, found by correlation id and by event id.
The same processes show that every series the Grafana dashboards query is on their
/metrics pages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.dashboards import dashboards, file_of, uid_of
from tests.integration.notification_support import SmtpSink, free_port
from tests.integration.support import (
    REPO_ROOT,
    Infra,
    service_platform,
    topic_under_test,
    wait_until,
)
from tests.promql import series_used

pytestmark = pytest.mark.integration

ADMIN_KEY = "trace-test-admin-key"
SERVICES = ("registration", "matching", "scheduling", "notification", "reporting")
# The services that consume the approval (registration produces it).
CONSUMERS = ("matching", "scheduling", "notification", "reporting")
# Where the test services publish and read registration's events (TOPIC_PREFIX).
REGISTRATION_EVENTS = topic_under_test("registration.events")


@dataclass
class Platform:
    urls: dict[str, str]
    registration_dsn: str
    spans: Path
    smtp: SmtpSink


@pytest.fixture(scope="module")
async def platform(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, scheduler_lock: None
) -> AsyncIterator[Platform]:
    async with (
        SmtpSink() as smtp,
        service_platform(
            infra,
            {svc: free_port() for svc in SERVICES},
            tmp_path_factory.mktemp("trace"),
            label="trace",
            admin_key=ADMIN_KEY,
            spans=True,
            env={
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp.port),
                "SMTP_SENDER": "Matchmaking <noreply@trace.test>",
                "DELIVERY_POLL_SECONDS": "0.2",
            },
        ) as running,
    ):
        yield Platform(running.urls, running.dsns["registration"], running.spans, smtp)


def _event_definition() -> dict[str, Any]:
    first = date.today() + timedelta(days=30)
    return {
        "name": "Cluster Matchmaking (trace)",
        "venue": "Hannover",
        "time_zone": "Europe/Berlin",
        "days": [first.isoformat()],
        "sessions": [{"start": "10:00", "end": "12:00"}],
        "slot_minutes": 30,
        "tables": 5,
        "meeting_types": ["Cluster2Cluster"],
        "registration_deadline": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
    }


def _read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # A process may be half-way through appending its last line.
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _is_whole(trace: list[dict[str, Any]]) -> bool:
    ids = {s["span_id"] for s in trace}
    roots = [s for s in trace if s["parent_span_id"] not in ids]
    consumers = {s["service"] for s in trace if s["kind"] == "CONSUMER"}
    sent = any(s["service"] == "notification" and s["name"].startswith("send ") for s in trace)
    servers = [s for s in trace if s["service"] == "registration" and s["kind"] == "SERVER"]
    return len(roots) == 1 and set(CONSUMERS) <= consumers and sent and len(servers) == 2


def _traces_cli(spans: Path, key: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "shared.traces", key, "--file", str(spans)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_an_approval_is_one_trace_across_the_services(platform: Platform) -> None:
    registration = platform.urls["registration"]
    address = f"ann-{uuid.uuid4().hex[:8]}@example.org"
    async with httpx.AsyncClient(base_url=registration, timeout=10) as http:
        # The set-up: requests of their own traces.
        r = await http.post(
            "/api/organisers", json={"name": "EEN"}, headers={"X-API-Key": ADMIN_KEY}
        )
        assert r.status_code == 201, r.text
        organiser = {"X-API-Key": r.json()["api_key"]}
        r = await http.post("/api/events", json=_event_definition(), headers=organiser)
        assert r.status_code == 201, r.text
        event_id = r.json()["event_id"]
        r = await http.post(
            f"/api/events/{event_id}/registrations",
            json={
                "organisation_type": "cluster",
                "name": f"Cluster {uuid.uuid4().hex[:6]}",
                "country": "DE",
                "representatives": [{"name": "Ann Example", "email": address}],
            },
        )
        assert r.status_code == 201, r.text
        registration_id = r.json()["registration_id"]
        # Every consumer knows the registration before the approval is sent, so the
        # approval's own processing is what the trace shows.
        await _wait_for_participant(platform, event_id, registration_id)

        # The command under test.
        trace_id = uuid.uuid4().hex
        caller_span = uuid.uuid4().hex[:16]
        correlation_id = f"trace-test-{uuid.uuid4()}"
        r = await http.post(
            f"/api/registrations/{registration_id}/approve",
            headers={
                **organiser,
                "traceparent": f"00-{trace_id}-{caller_span}-01",
                "X-Correlation-Id": correlation_id,
            },
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-correlation-id"] == correlation_id

    await wait_until(
        lambda: any(m.kind == "application.approved" for m in platform.smtp.to(address)),
        limit=30,
        what="the approval email",
    )
    approved_event_id = await _stored_event_id(
        platform.registration_dsn, f"registration-{registration_id}", "RegistrationApproved"
    )

    # Each process exports finished spans in batches (every half second), so read
    # until the trace is whole or the deadline passes.
    deadline = time.monotonic() + 30
    while True:
        trace = [s for s in _read_spans(platform.spans) if s["trace_id"] == trace_id]
        if _is_whole(trace) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)

    ids = {s["span_id"] for s in trace}
    roots = [s for s in trace if s["parent_span_id"] not in ids]
    assert len(roots) == 1, f"one connected trace expected, roots: {_names(roots)}"
    root = roots[0]
    # The root is registration's HTTP server span, a child of the caller's span.
    assert (root["service"], root["kind"]) == ("registration", "SERVER"), root
    assert root["parent_span_id"] == caller_span
    assert {s["service"] for s in trace} == set(SERVICES)

    publishes = [s for s in trace if s["kind"] == "PRODUCER"]
    approval_publish = [
        s
        for s in publishes
        if s["service"] == "registration"
        and s["attributes"]["messaging.destination.name"] == REGISTRATION_EVENTS
        and s["attributes"]["messaging.message.id"] == approved_event_id
    ]
    assert len(approval_publish) == 1, _names(publishes)
    assert approval_publish[0]["attributes"]["messaging.message.conversation_id"] == correlation_id

    consumed = [
        s
        for s in trace
        if s["kind"] == "CONSUMER"
        and s["attributes"].get("messaging.message.id") == approved_event_id
    ]
    assert {s["service"] for s in consumed} == set(CONSUMERS), _names(consumed)
    for span in consumed:
        # Each consumer's span hangs off the outbox publish, not off the request directly.
        assert span["parent_span_id"] == approval_publish[0]["span_id"], span
        assert span["attributes"]["messaging.message.conversation_id"] == correlation_id

    # Notification's email went out in the same trace, and so did its NotificationSent.
    sends = [s for s in trace if s["service"] == "notification" and s["name"].startswith("send ")]
    assert sends, _names(trace)
    assert any(
        s["service"] == "notification"
        and s["attributes"]["messaging.destination.name"] == topic_under_test("notification.events")
        for s in publishes
    ), _names(publishes)
    # ... after asking registration for the applicant's address, in the same trace too.
    asked = [s for s in trace if s["kind"] == "SERVER" and s["name"].endswith("/contacts")]
    assert [s["service"] for s in asked] == ["registration"], _names(trace)
    assert asked[0]["parent_span_id"] in {s["span_id"] for s in sends}

    # The command-line view, found by correlation id and by the event's id.
    by_correlation = _traces_cli(platform.spans, correlation_id)
    by_event = _traces_cli(platform.spans, approved_event_id)
    assert by_correlation == by_event
    assert by_correlation.splitlines()[0].startswith("registration: ")
    assert f"registration: publish {REGISTRATION_EVENTS}" in by_correlation
    for service in CONSUMERS:
        assert f"{service}: process {REGISTRATION_EVENTS}" in by_correlation, by_correlation
    assert f"notification: {sends[0]['name']}" in by_correlation
    assert len(by_correlation.splitlines()) == len(trace)


def _names(spans: list[dict[str, Any]]) -> list[str]:
    return [f"{s['service']}: {s['name']}" for s in spans]


async def _wait_for_participant(platform: Platform, event_id: str, registration_id: str) -> None:
    """Until matching lists the registration and the other consumers have caught up with it."""
    async with httpx.AsyncClient(base_url=platform.urls["matching"], timeout=10) as http:

        async def known() -> bool:
            answer = await http.get(
                f"/api/events/{event_id}/participants", headers={"X-API-Key": ADMIN_KEY}
            )
            # 404 until matching has learnt the event; then its participants.
            found = answer.json() if answer.status_code == 200 else []
            return any(p["registration_id"] == registration_id for p in found)

        await wait_until(known, limit=30, what="matching to learn the registration")
    # The others read the same topic: wait until their inboxes hold the registration.
    await wait_until(
        lambda: _all_consumed(platform),
        limit=30,
        what="every consumer to read the registration",
    )


def _all_consumed(platform: Platform) -> bool:
    """Every consumer processed the registrations (this platform's registration has one)."""
    spans = _read_spans(platform.spans)
    event_ids = {
        s["attributes"].get("messaging.message.id")
        for s in spans
        if s["service"] == "registration"
        and s["kind"] == "PRODUCER"
        and s["attributes"].get("cloudevents.event_type", "").endswith("ClusterRegistered.v1")
    }
    services = {
        s["service"]
        for s in spans
        if s["kind"] == "CONSUMER" and s["attributes"].get("messaging.message.id") in event_ids
    }
    return bool(event_ids) and set(CONSUMERS) <= services


async def _stored_event_id(dsn: str, stream: str, event_name: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval(
            "SELECT event_id::text FROM events WHERE stream_id = $1 AND event_type LIKE $2",
            stream,
            f"%.{event_name}.%",
        )
    finally:
        await conn.close()
    assert found, f"no {event_name} in {stream}"
    return str(found)


async def test_every_series_the_dashboards_query_is_exported(platform: Platform) -> None:
    built = dashboards()
    overview = series_used(built["overview.json"])
    async with httpx.AsyncClient(timeout=10) as http:
        for service, url in platform.urls.items():
            # One instrumented request, so the HTTP histograms have a sample.
            assert (await http.get(f"{url}/openapi.json")).status_code == 200
            page = (await http.get(f"{url}/metrics")).text
            exported = {
                sample.name
                for family in text_string_to_metric_families(page)
                for sample in family.samples
            }
            wanted = overview | series_used(built[file_of(uid_of(service))])
            missing = sorted(wanted - exported)
            assert not missing, f"{service} does not export {missing}; it has {sorted(exported)}"
