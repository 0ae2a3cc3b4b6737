"""Feedback invitations end to end: the organiser asks reporting, notification emails each side.

Reporting and notification run as subprocesses on fresh databases and the real
broker; the test publishes registration's, matching's and scheduling's events
itself (as in the other notification tests) and reads what reached a real SMTP
server. Reporting's request becomes `FeedbackInvitationsRequested` on
reporting.events; notification sends one invitation per participant naming the
meetings that participant still has to rate. The same round delivered again
sends nothing; a second request is a new round, a reminder to those who have
not rated yet.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared import eventstore
from shared.contracts.reporting import FeedbackInvitationsRequested
from shared.envelope import Envelope
from tests.integration.notification_support import (
    Contacts,
    Mail,
    ServiceProcess,
    SmtpSink,
    World,
    create_database,
    drop_database,
    service_env,
)
from tests.integration.support import Infra, wait_until

pytestmark = pytest.mark.integration

INVITATION = "feedback.invitation"
ZONE = ZoneInfo("Europe/Berlin")


@dataclass
class Platform:
    smtp: SmtpSink
    contacts: Contacts
    notification: ServiceProcess
    reporting: ServiceProcess
    reporting_dsn: str
    producer: AIOKafkaProducer


@pytest.fixture
async def platform(infra: Infra, tmp_path: Path, scheduler_lock: None) -> AsyncIterator[Platform]:
    smtp, contacts = SmtpSink(), Contacts()
    await smtp.start()
    await contacts.http.start()
    made = [await create_database(infra.admin_dsn) for _ in range(2)]
    (_, notification_dsn), (_, reporting_dsn) = made
    env = service_env(
        dsn=notification_dsn,
        bootstrap=infra.bootstrap_servers,
        smtp_port=smtp.port,
        registration_url=contacts.http.url,
    )
    notification = ServiceProcess(env, tmp_path / "notification.log")
    reporting = ServiceProcess(
        {
            "REPORTING_DATABASE_URL": reporting_dsn,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "CONSUMER_GROUP_SUFFIX": env["CONSUMER_GROUP_SUFFIX"],
        },
        tmp_path / "reporting.log",
        service="reporting",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await notification.start()
        await reporting.start()
        yield Platform(smtp, contacts, notification, reporting, reporting_dsn, producer)
    finally:
        await reporting.stop()
        await notification.stop()
        await producer.stop()
        await smtp.stop()
        await contacts.http.stop()
        for name, _ in made:
            await drop_database(infra.admin_dsn, name)


def _invitations(p: Platform, address: str) -> list[Mail]:
    return [m for m in p.smtp.to(address) if m.kind == INVITATION]


def _invited(p: Platform, address: str, times: int) -> Callable[[], bool]:
    return lambda: len(_invitations(p, address)) >= times


def _text(mail: Mail) -> str:
    return mail.part("text/plain") or ""


async def _round_envelope(dsn: str, event_id: str, round_id: str) -> Envelope:
    conn = await asyncpg.connect(dsn)  # reading reporting's event store only
    try:
        stored = await eventstore.load(conn, f"event-report-{event_id}")
    finally:
        await conn.close()
    (found,) = [
        s.envelope
        for s in stored
        if s.envelope.type == FeedbackInvitationsRequested.ce_type()
        and s.envelope.data["round_id"] == round_id
    ]
    return found


async def test_one_invitation_per_participant_per_round_with_the_meetings_to_rate(
    platform: Platform,
) -> None:
    p = platform
    w = World(p.producer, p.contacts)
    await w.open_event()
    a, b, c, d = [await w.register(n) for n in ("Alpha", "Beta", "Gamma", "Delta")]
    for rid in (a, b, c, d):
        await w.approve(rid)
    organiser = {"X-API-Key": w.organiser_key}
    url = f"/api/events/{w.event_id}/feedback-invitations"

    async with httpx.AsyncClient(base_url=p.reporting.url, timeout=10) as http:

        async def meetings() -> list[dict[str, Any]]:
            r = await http.get(f"/api/events/{w.event_id}/meetings", headers=organiser)
            rows: list[dict[str, Any]] = r.json() if r.status_code == 200 else []
            return rows

        async def event_known() -> bool:
            r = await http.get(f"/api/events/{w.event_id}/report")
            return r.status_code == 200 and r.json()["applied"]["organisations"] == 4

        await wait_until(event_known, limit=60, what="reporting knows the event")
        nothing = await http.post(url, headers=organiser)
        assert nothing.status_code == 409, nothing.text
        assert nothing.headers["content-type"].startswith("application/problem+json")
        assert "no held meetings" in nothing.json()["detail"]

        yesterday = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        m1, m2, m3, m4, m5 = (str(uuid.uuid4()) for _ in range(5))
        plan = [
            (m1, a, b, yesterday),  # held: both sides asked
            (m2, a, c, yesterday + timedelta(hours=1)),  # held
            (m3, b, c, yesterday + timedelta(hours=2)),  # marked not held below
            (m4, c, d, yesterday + timedelta(hours=3)),  # cancelled
            (m5, a, d, datetime.now(UTC) + timedelta(days=1)),  # not yet over
        ]
        for mid, x, y, start in plan:
            await w.accept(mid, x, y)
            await w.place(mid, x, y, start)
        await w.cancel(m4, c, d, by=c)

        async def all_placed() -> bool:
            rows = {r["meeting_id"]: r for r in await meetings()}
            return (
                len(rows) == 5
                and all(r["placed"] for r in rows.values())
                and (rows[m4]["cancelled"])
            )

        await wait_until(all_placed, limit=60, what="reporting has the five meetings placed")
        r = await http.post(f"/api/events/{w.event_id}/meetings/{m3}/not-held", headers=organiser)
        assert r.status_code == 200, r.text

        stranger = await http.post(url, headers={"X-API-Key": f"reg-{a}"})
        assert stranger.status_code == 403, stranger.text
        assert stranger.headers["content-type"].startswith("application/problem+json")

        once = {**organiser, "Idempotency-Key": f"round-1-{w.tag}"}
        first = await http.post(url, headers=once)
        assert first.status_code == 202, first.text
        round1 = first.json()
        assert round1["round"] == 1 and round1["participants"] == 3 and round1["meetings"] == 2
        assert round1["invited"] == {a: [m1, m2], b: [m1], c: [m2]}
        again = await http.post(url, headers=once)  # a retried request: the same round
        assert (again.status_code, again.json()) == (202, round1)

        alpha, beta, gamma, delta = (w.email_of(n) for n in ("Alpha", "Beta", "Gamma", "Delta"))
        for address in (alpha, beta, gamma):
            await wait_until(
                _invited(p, address, 1),
                limit=60,
                what=f"an invitation to {address}",
            )
        # Round 1 once more on the topic, as after a relay crash: nothing is sent twice.
        envelope = await _round_envelope(p.reporting_dsn, w.event_id, round1["round_id"])
        await w.republish(envelope)

        # Beta rates its meeting; the second round reminds only those who have not.
        rated = await http.post(
            f"/api/events/{w.event_id}/meetings/{m1}/feedback",
            json={"rating": "cooperation_possible"},
            headers={"X-API-Key": f"reg-{b}"},
        )
        assert rated.status_code == 200, rated.text
        second = await http.post(url, headers=organiser)
        assert second.status_code == 202, second.text
        round2 = second.json()
        assert round2["round"] == 2 and round2["round_id"] != round1["round_id"]
        assert round2["invited"] == {a: [m1, m2], c: [m2]}

    for address in (alpha, gamma):
        await wait_until(
            _invited(p, address, 2),
            limit=60,
            what=f"the reminder to {address}",
        )
    await asyncio.sleep(2)  # room for anything sent twice to show up
    got = {who: _invitations(p, who) for who in (alpha, beta, gamma, delta)}
    assert {who: len(mails) for who, mails in got.items()} == {
        alpha: 2,
        beta: 1,
        gamma: 2,
        delta: 0,
    }
    first_a, reminder_a = got[alpha]
    assert first_a.message["Subject"] == f"How did your meetings at Cluster Matchmaking {w.tag} go?"
    assert reminder_a.message["Subject"].startswith("Reminder: how did your meetings")
    assert first_a.message_id != reminder_a.message_id
    text = _text(first_a)
    assert "rate your 2 meetings" in text
    berlin = yesterday.astimezone(ZONE)
    assert f"{berlin:%H:%M}-" in text and "(Europe/Berlin): Beta Cluster - rate it at " in text
    assert f"{p.reporting.url}/api/events/{w.event_id}/meetings/{m1}/feedback" in text
    assert f"/meetings/{m2}/feedback" in text and "Gamma Cluster" in text
    for other in (m3, m4, m5):
        assert other not in text
    assert "Beta Cluster" in (first_a.part("text/html") or "")
    beta_text = _text(got[beta][0])
    assert "rate your 1 meeting there" in beta_text and "Alpha Cluster" in beta_text
    assert m2 not in beta_text
    gamma_text = _text(got[gamma][0])
    assert m2 in gamma_text and m3 not in gamma_text and m4 not in gamma_text
