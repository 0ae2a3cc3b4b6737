"""The daily digest end to end: held while events happen, one email when due, never twice.

The service runs as a subprocess on a fresh database and the real broker, and
sends to a real SMTP server. Its digest time (`DIGEST_HOUR`, `DIGEST_MINUTE`,
in the recipient's own zone) is set to the next full minute at least
`LEAD_SECONDS` ahead, so the real durable timer falls due during the test: no
clock is faked and nothing is written to the service's database.

Alpha asks for the digest (in its own zone, Asia/Kolkata); Beta does not. While
Alpha's messages pile up, only Beta gets emails. The service is killed
(SIGKILL) before the digest is due and one of the domain events is delivered
again while it is down; it is restarted after the due time and sends Alpha one
digest with every held message. Killed and restarted once more, and given the
events yet again, it sends nothing more. Finally Alpha turns the digest off:
what was held for the next day goes at once, in one email.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.notification.domain import Kind
from services.notification.queue import enqueue
from services.notification.sender import Sender
from shared.contracts.reporting import (
    FeedbackInvitationsRequested,
    InvitedParticipant,
    MeetingToRate,
)
from shared.db import create_pool, migrate
from shared.settings import NotificationSettings
from tests.integration.notification_support import (
    ADMIN_KEY,
    Contacts,
    Mail,
    ServiceProcess,
    SmtpSink,
    World,
    create_database,
    drop_database,
    email_delivery,
    service_env,
)
from tests.integration.support import Infra, wait_until

pytestmark = pytest.mark.integration

LEAD_SECONDS = 40  # enough for start-up and the events, before the digest falls due
OWN_ZONE = "Asia/Kolkata"  # UTC+05:30: the digest time must be read in the recipient's zone

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "notification" / "migrations"
WORKERS, RECIPIENTS = 8, 40
ROW_KINDS = (Kind.APPLICATION_APPROVED, Kind.REQUEST_DECLINED, Kind.REQUEST_EXPIRED)
DUE = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)  # long due: every row at once


def _digest_time(now: datetime) -> datetime:
    """The next full minute at least LEAD_SECONDS after `now`."""
    later = now + timedelta(seconds=LEAD_SECONDS + 60)
    return later.replace(second=0, microsecond=0)


def _digests(smtp: SmtpSink, address: str) -> list[Mail]:
    return [m for m in smtp.to(address) if m.kind == "digest"]


def _invitation(w: World, registration_id: str, partner_id: str) -> FeedbackInvitationsRequested:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    meeting = str(uuid.uuid4())
    return FeedbackInvitationsRequested(
        event_id=w.event_id,
        round_id=str(uuid.uuid4()),
        round=1,
        requested_by=w.organiser_id,
        event_title=f"Cluster Matchmaking {w.tag}",
        time_zone="Europe/Berlin",
        participants=[
            InvitedParticipant(
                registration_id=registration_id,
                meetings=[
                    MeetingToRate(
                        meeting_id=meeting,
                        partner_id=partner_id,
                        partner_name="Beta Cluster",
                        slot_start=start,
                        slot_end=start + timedelta(minutes=30),
                        feedback_url=f"https://reporting.test/{meeting}/feedback",
                    )
                ],
            )
        ],
    )


async def test_a_digest_holds_messages_then_sends_them_once_across_restarts(
    infra: Infra, tmp_path: Path
) -> None:
    smtp, contacts = SmtpSink(), Contacts()
    await smtp.start()
    await contacts.http.start()
    name, dsn = await create_database(infra.admin_dsn)
    due = _digest_time(datetime.now(UTC))
    local = due.astimezone(ZoneInfo(OWN_ZONE))
    service = ServiceProcess(
        service_env(
            dsn=dsn,
            bootstrap=infra.bootstrap_servers,
            smtp_port=smtp.port,
            registration_url=contacts.http.url,
            DIGEST_HOUR=str(local.hour),
            DIGEST_MINUTE=str(local.minute),
        ),
        tmp_path / "notification.log",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await service.start()
        w = World(producer, contacts)
        await w.open_event()
        a, b = await w.register("Alpha"), await w.register("Beta")
        alpha, beta = w.email_of("Alpha"), w.email_of("Beta")
        for address in (alpha, beta):
            await wait_until(smtp.holds(address, 1), what=address)
        own = {"X-API-Key": f"reg-{a}"}
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            r = await http.put(
                f"/api/registrations/{a}/preferences",
                json={"digest": True, "time_zone": OWN_ZONE},
                headers=own,
            )
            assert r.status_code == 200 and r.json()["digest"] is True, r.text

            async def log() -> list[dict[str, Any]]:
                r = await http.get(f"/api/registrations/{a}/notifications", headers=own)
                rows: list[dict[str, Any]] = r.json()
                return rows

            held = [
                await w.approve(a),
                await w.request(str(uuid.uuid4()), b, a),
                await w.publish(_invitation(w, a, b)),
            ]
            await w.approve(b)  # Beta has no digest: its message goes at once

            async def all_held() -> bool:
                return len([d for d in await log() if d["digest"]]) == 3

            await wait_until(all_held, limit=30, what="Alpha's three messages held")
            await wait_until(lambda: len(smtp.to(beta)) == 2, what="Beta's approval sent")
            rows = [d for d in await log() if d["digest"]]
            assert {d["kind"] for d in rows} == {
                "application.approved",
                "meeting_request.received",
                "feedback.invitation",
            }
            assert {(d["status"], d["next_attempt_at"]) for d in rows} == {
                ("pending", due.isoformat())
            }

        # Down across the due time; an event delivered again meanwhile is no new message.
        assert datetime.now(UTC) < due - timedelta(seconds=3), "too slow: the digest fell due"
        assert [m.kind for m in smtp.to(alpha)] == ["application.received"]
        await service.kill()
        await w.republish(held[0])
        await asyncio.sleep(max((due - datetime.now(UTC)).total_seconds(), 0) + 1)
        await service.start()

        await wait_until(lambda: len(_digests(smtp, alpha)) == 1, limit=60, what="the digest")
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:

            async def recorded() -> bool:
                r = await http.get(f"/api/registrations/{a}/notifications", headers=own)
                digest_rows = [d for d in r.json() if d["digest"]]
                return {d["status"] for d in digest_rows} == {"sent"}

            await wait_until(recorded, limit=30, what="the digest recorded as sent")
        await service.kill()
        await service.start()
        for envelope in held:
            await w.republish(envelope)
        await asyncio.sleep(3)  # room for a second digest, or new messages, to show up

        (digest,) = _digests(smtp, alpha)
        assert [m.kind for m in smtp.to(alpha)] == ["application.received", "digest"]
        assert digest.message["Subject"] == f"Cluster Matchmaking {w.tag}: 3 updates"
        text = digest.part("text/plain") or ""
        assert text.count("Dear Alpha Cluster") == 1
        for heading in (
            f"== You are in: Cluster Matchmaking {w.tag} ==",
            "== Beta Cluster would like to meet you ==",
            f"== How did your meetings at Cluster Matchmaking {w.tag} go? ==",
        ):
            assert heading in text, text
        # The invitation's times in the event's zone and in Alpha's own.
        assert "your time (Asia/Kolkata): Beta Cluster - rate it at" in text
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            rows = (await http.get(f"/api/registrations/{a}/notifications", headers=own)).json()
            digest_rows = [d for d in rows if d["digest"]]
            assert len(digest_rows) == 3
            assert {d["message_id"] for d in digest_rows} == {digest.message_id}
            assert all(d["attempts"] == 1 for d in digest_rows)

            # Held for tomorrow's digest, then the digest is turned off: it goes now.
            await w.request(str(uuid.uuid4()), b, a)

            async def tomorrow() -> bool:
                r = await http.get(f"/api/registrations/{a}/notifications", headers=own)
                return any(d["status"] == "pending" and d["digest"] for d in r.json())

            await wait_until(tomorrow, limit=30, what="a message held for tomorrow")
            rows = (await http.get(f"/api/registrations/{a}/notifications", headers=own)).json()
            (pending,) = [d for d in rows if d["status"] == "pending"]
            assert pending["next_attempt_at"] == (due + timedelta(days=1)).isoformat()
            r = await http.put(
                f"/api/registrations/{a}/preferences", json={"digest": False}, headers=own
            )
            assert r.status_code == 200, r.text
        await wait_until(lambda: len(_digests(smtp, alpha)) == 2, what="the held message sent")
        await asyncio.sleep(1.5)
        assert len(smtp.to(alpha)) == 3
        assert _digests(smtp, alpha)[1].message["Subject"] == (
            f"Cluster Matchmaking {w.tag}: 1 update"
        )
    finally:
        await service.stop()
        await producer.stop()
        await smtp.stop()
        await contacts.http.stop()
        await drop_database(infra.admin_dsn, name)


async def test_concurrent_senders_put_each_recipients_digest_in_one_email(
    infra: Infra, tmp_path: Path
) -> None:
    """Many senders at once on due digests: one email per recipient, with all of its rows.

    A component test of the sender and its queue on a fresh database (rows made
    with the queue's own `enqueue`), so that many workers race on the same due
    digests at the same moment; the service would reach the same race with its
    `DELIVERY_WORKERS` only now and then.
    """
    smtp, contacts = SmtpSink(), Contacts()
    await smtp.start()
    await contacts.http.start()
    name, dsn = await create_database(infra.admin_dsn)
    pool = await create_pool(dsn, max_size=WORKERS + 2)
    try:
        await migrate(pool, MIGRATIONS)
        event_id, kinds = str(uuid.uuid4()), ROW_KINDS
        await pool.execute(
            "INSERT INTO brokerage_events VALUES ($1, 'org', 'Race Fair', 'Hall', 'UTC')",
            event_id,
        )
        recipients = [str(uuid.uuid4()) for _ in range(RECIPIENTS)]
        rows = []
        for n, rid in enumerate(recipients):
            contacts.by_id[rid] = [{"name": "Rep", "email": f"rep{n}-{rid[:8]}@example.org"}]
            await pool.execute(
                "INSERT INTO recipients VALUES ($1, $2, $3, 'approved', 'sealed', false)",
                rid,
                event_id,
                f"Org {n}",
            )
            rows += [
                email_delivery(event_id, rid, kind, due=DUE, mail_domain="race.test")
                for kind in kinds
            ]
        async with pool.acquire() as conn:
            await enqueue(conn, rows)
        settings = NotificationSettings(
            notification_database_url=dsn,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            registration_url=contacts.http.url,
            platform_admin_key=ADMIN_KEY,
            smtp_sender="Matchmaking <noreply@race.test>",
        )
        async with httpx.AsyncClient(timeout=10) as http:
            sender = Sender(pool, dsn, settings, http)
            start = asyncio.Event()

            async def worker() -> None:
                await start.wait()
                while await pool.fetchval(
                    "SELECT count(*) FROM deliveries WHERE status = 'pending'"
                ):
                    if not await sender.send_one():
                        await asyncio.sleep(0.01)

            workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
            start.set()
            await asyncio.wait_for(asyncio.gather(*workers), 120)

        for n, rid in enumerate(recipients):
            mails = smtp.to(f"rep{n}-{rid[:8]}@example.org")
            subjects = [m.message["Subject"] for m in mails]
            assert subjects == [f"Race Fair: {len(kinds)} updates"], (rid, subjects)
        statuses = await pool.fetch("SELECT DISTINCT status, attempts FROM deliveries")
        assert [tuple(r) for r in statuses] == [("sent", 1)]
    finally:
        await pool.close()
        await smtp.stop()
        await contacts.http.stop()
        await drop_database(infra.admin_dsn, name)
