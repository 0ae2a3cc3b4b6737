"""Notification end to end: domain events on the real (test.) topics → the service → SMTP / HTTP.

The service runs as a subprocess on a fresh database with its own consumer
group; the test publishes the other services' events itself (unique brokerage
event ids, keys and addresses, so whatever else is on the topics does not
matter), and reads what arrived at an in-process SMTP server and webhook
receiver. Other services do not only read those topics, though: a scheduling
service of another test run would place the meeting this module accepts and
announce its own SlotAssigned, an extra move. So the module holds the broker's
scheduler lock (`scheduler_lock`), and the calendar test checks that every
message about its meeting came from an event it published. The module's last
test rebuilds notification's projections from its event store and the topics,
after all the others, and finds them equal to the live ones.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import icalendar
import pytest
from aiokafka import AIOKafkaProducer

from services.notification.rebuild import PLAN
from shared.contracts import registry
from shared.contracts.scheduling import AgendaPublished, ReleaseReason
from shared.rebuild import rebuild
from tests.integration.notification_support import (
    ADMIN_KEY,
    Contacts,
    HttpRequest,
    Mail,
    MiniHttp,
    ServiceProcess,
    SmtpSink,
    World,
    create_database,
    deliveries,
    drop_database,
    foreign_causes,
    service_env,
)
from tests.integration.support import TEST_TOPIC_PREFIX, Infra, wait_until

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 4
BACKOFF = 0.3
ADMIN = {"X-API-Key": ADMIN_KEY}


@dataclass
class Stack:
    smtp: SmtpSink
    contacts: Contacts
    hooks: MiniHttp
    service: ServiceProcess
    producer: AIOKafkaProducer
    dsn: str

    def world(self) -> World:
        return World(self.producer, self.contacts)

    async def mails(self, address: str, count: int, *, settle: float = 1.0) -> list[Mail]:
        """Wait for `count` messages to `address`, then a moment for any extra to show."""
        await wait_until(
            lambda: len(self.smtp.to(address)) >= count,
            limit=60,
            what=f"{count} messages to {address} (got {[m.kind for m in self.smtp.to(address)]})",
        )
        await asyncio.sleep(settle)
        return self.smtp.to(address)


_flaky_seen: set[str] = set()


async def _hook_answer(request: HttpRequest) -> tuple[int, bytes]:
    if request.path.startswith("/fail"):
        return 500, b'{"error": "down"}'
    if request.path.startswith("/flaky"):
        first = request.headers["webhook-id"] not in _flaky_seen
        _flaky_seen.add(request.headers["webhook-id"])
        return (503, b"{}") if first else (200, b"{}")
    return 200, b"{}"


@pytest.fixture(scope="module")
async def stack(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, scheduler_lock: None
) -> AsyncIterator[Stack]:
    smtp, contacts, hooks = SmtpSink(), Contacts(), MiniHttp(_hook_answer)
    await smtp.start()
    await contacts.http.start()
    await hooks.start()
    name, dsn = await create_database(infra.admin_dsn)
    logs = tmp_path_factory.mktemp("notification")
    service = ServiceProcess(
        service_env(
            dsn=dsn,
            bootstrap=infra.bootstrap_servers,
            smtp_port=smtp.port,
            registration_url=contacts.http.url,
            DELIVERY_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            DELIVERY_BACKOFF_SECONDS=str(BACKOFF),
        ),
        Path(logs) / "notification.log",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await service.start()
        yield Stack(smtp, contacts, hooks, service, producer, dsn)
    finally:
        await service.stop()
        await producer.stop()
        await smtp.stop()
        await contacts.http.stop()
        await hooks.stop()
        await drop_database(infra.admin_dsn, name)


def _calendar(mail: Mail) -> tuple[str, str, int, datetime]:
    """METHOD, UID, SEQUENCE and DTSTART of the message's text/calendar part."""
    text = mail.part("text/calendar")
    assert text is not None, f"{mail.kind} carries no calendar entry"
    cal = icalendar.Calendar.from_ical(text)
    (event,) = cal.walk("VEVENT")
    return (
        str(cal["METHOD"]),
        str(event["UID"]),
        int(str(event["SEQUENCE"])),
        event.decoded("DTSTART"),
    )


def _slot(days: int, hour: int) -> datetime:
    day = (datetime.now(UTC) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo("Europe/Berlin"))


async def test_meeting_accepted_placed_moved_cancelled_updates_one_calendar_entry(
    stack: Stack,
) -> None:
    w = stack.world()
    await w.open_event()
    a, b = await w.register("Alpha"), await w.register("Beta")
    alpha, beta = w.email_of("Alpha"), w.email_of("Beta")
    await stack.mails(alpha, 1, settle=0)
    await stack.mails(beta, 1, settle=0)  # both known: names render from here on

    meeting = str(uuid.uuid4())
    await w.request(meeting, a, b)
    await stack.mails(beta, 2, settle=0)
    await w.accept(meeting, a, b)
    await stack.mails(alpha, 2, settle=0)
    first, second = _slot(30, 10), _slot(30, 14)
    await w.place(meeting, a, b, first, table=3)
    await stack.mails(alpha, 3, settle=0)
    await w.place(meeting, a, b, second, table=5)  # a move
    await stack.mails(alpha, 4, settle=0)
    await w.place(meeting, a, b, second, table=5)  # the same slot again: nothing new
    await w.cancel(meeting, a, b, by=a)
    await w.release(meeting, a, b, ReleaseReason.MEETING_CANCELLED)  # its CANCEL went already

    got_a, got_b = await stack.mails(alpha, 5), await stack.mails(beta, 5)
    # After the mails were read, so any message among them has its delivery row.
    foreign = await foreign_causes(stack.dsn, w, meeting)
    assert foreign == [], f"messages caused by events this test did not publish: {foreign}"
    assert [m.kind for m in got_a] == [
        "application.received",
        "meeting_request.accepted",
        "meeting.placed",
        "meeting.moved",
        "meeting.cancelled",
    ]
    assert [m.kind for m in got_b] == [
        "application.received",
        "meeting_request.received",
        "meeting.placed",
        "meeting.moved",
        "meeting.cancelled",
    ]
    uid = f"meeting-{meeting}@meetings.matchmaking"
    for mails in (got_a, got_b):
        assert len({m.message_id for m in mails}) == 5
        assert all(m.part("text/calendar") is None for m in mails[:2])
        assert [_calendar(m)[:3] for m in mails[2:]] == [
            ("REQUEST", uid, 0),
            ("REQUEST", uid, 1),
            ("CANCEL", uid, 2),
        ]
        assert _calendar(mails[2])[3] == first and _calendar(mails[3])[3] == second
    placed_text = got_a[2].part("text/plain") or ""
    assert "Beta Cluster" in placed_text and "10:00-10:30 (Europe/Berlin)" in placed_text
    assert "Alpha Cluster" in (got_b[3].part("text/plain") or "")

    # The reminders were durable timers: two per placement, each called off in turn.
    reminders = await deliveries(
        stack.dsn,
        "SELECT status, last_error FROM deliveries"
        " WHERE meeting_id = $1 AND template = 'meeting.reminder' ORDER BY created_at",
        meeting,
    )
    assert [r["status"] for r in reminders] == ["cancelled"] * 4
    assert [r["last_error"] for r in reminders[:2]] == ["superseded by meeting.moved"] * 2
    # Whichever of matching's cancellation and scheduling's release came first.
    assert {r["last_error"] for r in reminders[2:]} <= {"meeting cancelled", "slot released"}


async def test_the_same_event_twice_sends_each_message_once_and_erasure_sends_nothing(
    stack: Stack,
) -> None:
    w = stack.world()
    await w.open_event()
    a = await w.register("Gamma")
    erased = await w.register("Delta", erased=True)
    approval = await w.approve(a)
    await w.republish(approval)  # the same domain event (same source and id) again
    await w.republish(approval)
    await w.approve(erased)

    got = await stack.mails(w.email_of("Gamma"), 2, settle=1.5)
    assert sorted(m.kind for m in got) == ["application.approved", "application.received"]
    assert stack.smtp.to(w.email_of("Delta")) == []

    async with httpx.AsyncClient(base_url=stack.service.url, timeout=10) as http:
        own = {"X-API-Key": f"reg-{a}"}
        log = (await http.get(f"/api/registrations/{a}/notifications", headers=own)).json()
        assert sorted((d["kind"], d["status"]) for d in log) == [
            ("application.approved", "sent"),
            ("application.received", "sent"),
        ]
        assert {d["message_id"] for d in log} == {m.message_id for m in got}
        other = {"X-API-Key": f"reg-{erased}"}
        denied = await http.get(f"/api/registrations/{a}/notifications", headers=other)
        assert denied.status_code == 403

        async def skipped() -> bool:
            rows = (
                await http.get(f"/api/registrations/{erased}/notifications", headers=ADMIN)
            ).json()
            return len(rows) == 2 and all(r["status"] == "skipped" for r in rows)

        await wait_until(skipped, limit=30, what="the erased registration's deliveries skipped")
        rows = (await http.get(f"/api/registrations/{erased}/notifications", headers=ADMIN)).json()
        assert {r["last_error"] for r in rows} == {"personal data erased: no contact details"}


def _verify(secret: str, request: HttpRequest) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    h = request.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return h["webhook-signature"] == f"v1,{expected}"


async def test_a_failing_webhook_is_retried_with_backoff_then_marked_failed(stack: Stack) -> None:
    w = stack.world()
    await w.open_event()
    organiser = {"X-API-Key": w.organiser_key}
    async with httpx.AsyncClient(base_url=stack.service.url, timeout=10) as http:

        async def register(path: str, types: list[str]) -> dict[str, str]:
            body = {"url": f"{stack.hooks.url}{path}", "event_types": types}
            response = await http.post(
                f"/api/events/{w.event_id}/webhooks", json=body, headers=organiser
            )
            assert response.status_code == 201, response.text
            created: dict[str, str] = response.json()
            return created

        async def organiser_known() -> bool:
            r = await http.get(f"/api/events/{w.event_id}/webhooks", headers=organiser)
            return r.status_code == 200

        await wait_until(organiser_known, limit=30, what="the organiser's key and event known")
        failing = await register(f"/fail/{w.tag}", ["meeting.placed"])
        flaky = await register(f"/flaky/{w.tag}", ["application.approved"])
        assert failing["secret"].startswith("whsec_")
        listed = (await http.get(f"/api/events/{w.event_id}/webhooks", headers=organiser)).json()
        assert "secret" not in listed[0]
        bad = await http.post(
            f"/api/events/{w.event_id}/webhooks",
            json={"url": stack.hooks.url, "event_types": ["no.such"]},
            headers=organiser,
        )
        assert bad.status_code == 422

        a, b = await w.register("Kappa"), await w.register("Lambda")
        await w.approve(a)
        meeting = str(uuid.uuid4())
        await w.place(meeting, a, b, _slot(30, 11))

        def of(endpoint: dict[str, str]) -> list[HttpRequest]:
            return [
                r for r in stack.hooks.requests if r.path == endpoint["url"][len(stack.hooks.url) :]
            ]

        async def settled(endpoint: dict[str, str], status: str) -> bool:
            url = f"/api/events/{w.event_id}/webhooks/{endpoint['id']}/deliveries"
            rows = (await http.get(url, headers=organiser)).json()
            return len(rows) == 1 and rows[0]["status"] == status

        await wait_until(lambda: settled(failing, "failed"), limit=60, what="webhook failed")
        await wait_until(lambda: settled(flaky, "sent"), limit=60, what="flaky webhook sent")
        url = f"/api/events/{w.event_id}/webhooks/{failing['id']}/deliveries"
        (row,) = (await http.get(url, headers=organiser)).json()
        assert row["attempts"] == MAX_ATTEMPTS and row["last_error"] == "HTTP 500"
        assert row["kind"] == "meeting.placed"

    tries = of(failing)
    assert len(tries) == MAX_ATTEMPTS
    assert len({t.headers["webhook-id"] for t in tries}) == 1
    assert all(_verify(failing["secret"], t) for t in tries)
    assert len({t.body for t in tries}) == 1
    body = json.loads(tries[0].body)
    assert body["type"] == "meeting.placed" and body["data"]["meeting_id"] == meeting
    assert body["data"]["calendar"]["method"] == "REQUEST"
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
    for n, gap in enumerate(gaps):  # base, 2·base, 4·base (polling adds a little)
        assert BACKOFF * 2**n * 0.9 <= gap <= BACKOFF * 2**n + 1.5, gaps
    flaky_tries = of(flaky)
    assert [len(flaky_tries), len({t.headers["webhook-id"] for t in flaky_tries})] == [2, 1]
    assert all(_verify(flaky["secret"], t) for t in flaky_tries)

    outcomes = await deliveries(
        stack.dsn,
        "SELECT event_type, data->>'recipient_id' AS endpoint, (data->>'attempts')::int AS n"
        " FROM events WHERE data->>'event_id' = $1 AND data->>'channel' = 'webhook'"
        " AND event_type ~ '\\.Notification(Sent|Failed)\\.'",
        w.event_id,
    )
    assert sorted(
        (r["event_type"].split(".")[3], r["endpoint"], r["n"]) for r in outcomes
    ) == sorted(
        [("NotificationFailed", failing["id"], MAX_ATTEMPTS), ("NotificationSent", flaky["id"], 2)]
    )

    # The endpoints are events: URL and secret sealed (in no event in clear), the key
    # beside them; removal is an event too, destroys the key, and lists no URL after.
    for secret_or_url in (failing["secret"], flaky["secret"], f"/fail/{w.tag}"):
        found = await deliveries(
            stack.dsn,
            "SELECT count(*) AS n FROM events WHERE data::text LIKE '%' || $1 || '%'",
            secret_or_url,
        )
        assert found[0]["n"] == 0, secret_or_url
    organiser = {"X-API-Key": w.organiser_key}
    async with httpx.AsyncClient(base_url=stack.service.url, timeout=10) as http:
        hooks = f"/api/events/{w.event_id}/webhooks"
        for _ in range(2):  # removing twice changes nothing the second time
            gone = await http.delete(f"{hooks}/{failing['id']}", headers=organiser)
            assert gone.json() == {"id": failing["id"], "active": False}, gone.text
        unknown = await http.delete(f"{hooks}/{uuid.uuid4()}", headers=organiser)
        assert unknown.status_code == 404
        listed = {e["id"]: e for e in (await http.get(hooks, headers=organiser)).json()}
    assert (listed[failing["id"]]["url"], listed[failing["id"]]["active"]) == (None, False)
    assert (listed[flaky["id"]]["url"], listed[flaky["id"]]["active"]) == (flaky["url"], True)
    streams = await deliveries(
        stack.dsn,
        "SELECT stream_id, version, event_type FROM events WHERE stream_id = ANY($1::text[])"
        " ORDER BY stream_id, version",
        [f"webhook-{failing['id']}", f"webhook-{flaky['id']}"],
    )
    found = [(r["stream_id"], r["version"], r["event_type"].split(".")[3]) for r in streams]
    assert sorted(found) == sorted(
        [
            (f"webhook-{failing['id']}", 1, "WebhookEndpointRegistered"),
            (f"webhook-{failing['id']}", 2, "WebhookEndpointRemoved"),
            (f"webhook-{flaky['id']}", 1, "WebhookEndpointRegistered"),
        ]
    )
    keys = await deliveries(
        stack.dsn,
        "SELECT endpoint_id::text AS id FROM webhook_keys WHERE endpoint_id = ANY($1::uuid[])",
        [failing["id"], flaky["id"]],
    )
    assert [r["id"] for r in keys] == [flaky["id"]]


async def test_preferences_time_zone_feed_agenda_and_unsubscribe(stack: Stack) -> None:
    w = stack.world()
    await w.open_event()
    a, b = await w.register("Eta"), await w.register("Theta")
    eta, theta = w.email_of("Eta"), w.email_of("Theta")
    await stack.mails(eta, 1, settle=0)
    await stack.mails(theta, 1, settle=0)
    own = {"X-API-Key": f"reg-{a}"}
    async with httpx.AsyncClient(base_url=stack.service.url, timeout=10) as http:
        prefs = {"time_zone": "America/New_York", "muted": ["application.approved"]}
        r = await http.put(f"/api/registrations/{a}/preferences", json=prefs, headers=own)
        assert r.status_code == 200, r.text
        links = r.json()
        bad = await http.put(
            f"/api/registrations/{a}/preferences", json={"time_zone": "Mars/Base"}, headers=own
        )
        assert bad.status_code == 422

        await w.approve(a)  # muted: logged as skipped, not sent
        await w.approve(b)
        meeting, start = str(uuid.uuid4()), _slot(30, 9)
        await w.place(meeting, a, b, start, table=7)
        got = await stack.mails(eta, 2, settle=0)
        text = got[1].part("text/plain") or ""
        assert got[1].kind == "meeting.placed"
        assert "09:00-09:30 (Europe/Berlin)" in text
        assert "03:00-03:30 your time (America/New_York)" in text

        feed = await http.get(links["calendar_feed_url"].removeprefix(stack.service.url))
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
        (event,) = icalendar.Calendar.from_ical(feed.text).walk("VEVENT")
        assert str(event["UID"]) == f"meeting-{meeting}@meetings.matchmaking"
        assert event.decoded("DTSTART") == start
        assert (await http.get("/calendar/forged.token.ics")).status_code == 404

        await stack.mails(theta, 3, settle=0)  # both approvals are in
        await w.publish(AgendaPublished(event_id=w.event_id, published_at=datetime.now(UTC)))
        agenda = (await stack.mails(theta, 4, settle=0))[-1]
        await stack.mails(eta, 3, settle=0)
        assert agenda.kind == "agenda.published"
        assert "Eta Cluster, table 7, Hall 2" in (agenda.part("text/plain") or "")

        path = links["unsubscribe_url"].removeprefix(stack.service.url)
        assert (await http.get(path)).status_code == 200  # a page with a button
        assert (await http.post(path)).status_code == 200
        await w.release(meeting, a, b, ReleaseReason.ORGANISER)
        await stack.mails(theta, 5, settle=1.5)
        assert [m.kind for m in stack.smtp.to(eta)] == [
            "application.received",
            "meeting.placed",
            "agenda.published",
        ]
        log = (await http.get(f"/api/registrations/{a}/notifications", headers=own)).json()
        reasons = {d["kind"]: (d["status"], d["last_error"]) for d in log}
        assert reasons["application.approved"] == ("skipped", "application.approved muted")
        assert reasons["agenda.published"][0] == "sent"
        assert reasons["meeting.released"] == ("skipped", "unsubscribed")


async def test_revoked_links_stop_working_and_fresh_ones_work(stack: Stack) -> None:
    w = stack.world()
    await w.open_event()
    a = await w.register("Iota")
    await stack.mails(w.email_of("Iota"), 1, settle=0)  # the service knows the registration
    own = {"X-API-Key": f"reg-{a}"}
    async with httpx.AsyncClient(base_url=stack.service.url, timeout=10) as http:
        old = (await http.get(f"/api/registrations/{a}/preferences", headers=own)).json()
        feed, unsubscribe = (
            old[k].removeprefix(stack.service.url) for k in ("calendar_feed_url", "unsubscribe_url")
        )
        assert (await http.get(feed)).status_code == 200
        refused = await http.post(f"/api/registrations/{a}/links/revoke")
        assert refused.status_code == 401
        r = await http.post(f"/api/registrations/{a}/links/revoke", headers=own)
        assert r.status_code == 200, r.text
        fresh = r.json()
        for path in (feed, unsubscribe):
            gone = await http.get(path)
            assert gone.status_code == 403, path
            assert gone.headers["content-type"].startswith("application/problem+json")
            assert "revoked" in gone.json()["detail"]
        assert (await http.post(unsubscribe)).status_code == 403
        new_feed = fresh["calendar_feed_url"].removeprefix(stack.service.url)
        assert new_feed != feed
        assert (await http.get(new_feed)).status_code == 200
        new_unsubscribe = fresh["unsubscribe_url"].removeprefix(stack.service.url)
        assert (await http.get(new_unsubscribe)).status_code == 200
        again = (await http.get(f"/api/registrations/{a}/preferences", headers=own)).json()
        assert (
            await http.get(again["calendar_feed_url"].removeprefix(stack.service.url))
        ).status_code == 200


async def test_the_projection_rebuilt_from_the_events_equals_the_live_one(stack: Stack) -> None:
    """Last in the module, after every flow above (placed, moved, cancelled, repeated,
    erased, retried, failed, muted, unsubscribed): the deliveries, preferences and the
    projections of the consumed topics rebuilt from the events equal the live tables."""
    # The live tables hold still while they are compared (other runs' events go on
    # arriving on the shared test topics).
    await stack.service.stop()
    env = stack.service.env
    report = await rebuild(
        PLAN,
        stack.dsn,
        env["KAFKA_BOOTSTRAP_SERVERS"],
        registry(),
        topic_prefix=TEST_TOPIC_PREFIX,
        group_suffix=env["CONSUMER_GROUP_SUFFIX"],
    )
    assert report.equal, "\n".join(report.lines())
    assert report.own_events > 0 and report.consumed_events > 0, report.lines()
    statuses = await deliveries(stack.dsn, "SELECT DISTINCT status FROM rebuild.deliveries")
    assert {"sent", "failed", "skipped", "cancelled"} <= {r["status"] for r in statuses}
    muted = await deliveries(
        stack.dsn, "SELECT count(*) AS n FROM rebuild.preferences WHERE unsubscribed"
    )
    assert muted[0]["n"] >= 1
    hooks = await deliveries(
        stack.dsn, "SELECT count(*) FILTER (WHERE NOT active) AS n FROM rebuild.webhook_endpoints"
    )
    assert hooks[0]["n"] >= 1  # the webhook test's removed endpoint, rebuilt

    # Blue/green: the rebuilt tables switched in; a later rebuild (which drops its fresh
    # schema) must leave the live deliveries' trigger, the sender's wake-up, in place.
    options: dict[str, Any] = {
        "topic_prefix": TEST_TOPIC_PREFIX,
        "group_suffix": env["CONSUMER_GROUP_SUFFIX"],
    }
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    switched = await rebuild(PLAN, stack.dsn, bootstrap, registry(), switch=True, **options)
    assert switched.switched_to and switched.equal, "\n".join(switched.lines())
    again = await rebuild(PLAN, stack.dsn, bootstrap, registry(), **options)
    assert again.equal, "\n".join(again.lines())
    conn = await asyncpg.connect(stack.dsn)
    try:
        called = await conn.fetch(
            "SELECT p.pronamespace::regnamespace::text AS schema FROM pg_trigger t"
            " JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgrelid = 'public.deliveries'::regclass AND NOT t.tgisinternal"
        )
        assert [r["schema"] for r in called] == ["public"]
        heard = asyncio.Event()
        await conn.add_listener("deliveries", lambda *_: heard.set())
        row = await conn.fetchrow("SELECT * FROM deliveries LIMIT 1")
        copy = {**dict(row), "delivery_id": uuid.uuid4(), "cause_id": "switch-test"}
        columns = ", ".join(copy)
        values = ", ".join(f"${n}" for n in range(1, len(copy) + 1))
        await conn.execute(f"INSERT INTO deliveries ({columns}) VALUES ({values})", *copy.values())
        await asyncio.wait_for(heard.wait(), 5)  # the trigger's NOTIFY
        await conn.execute("DELETE FROM deliveries WHERE cause_id = 'switch-test'")
    finally:
        await conn.close()
