"""SIGKILL while sending: no message lost, none doubled beyond a same-Message-ID resend.

The SMTP server stalls two sessions: for Alpha it keeps the message and never
answers (the worst case: the server has it, the service never hears so), for
Beta it never accepts the data. The service is killed with both in flight,
while a third message (Gamma) has been sent and recorded, and while a
reminder's timer is still ahead. After the restart:

- Gamma's message is not sent again (its outcome was committed);
- Beta's message arrives once (the server never accepted the first copy);
- Alpha's arrives a second time with the same Message-ID, which mail clients
  collapse: the guarantee is at least once, and at most once more per crash,
  identifiable as the same message;
- the reminder, due while the service was down, is sent once after the restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.notification_support import (
    Contacts,
    ServiceProcess,
    SmtpSink,
    World,
    create_database,
    deliveries,
    drop_database,
    service_env,
)
from tests.integration.support import Infra, wait_until

pytestmark = pytest.mark.integration

LEAD_MINUTES = 60
REMINDER_IN = 18.0  # seconds from now: after the kill, before the restart


async def test_sigkill_during_sending_neither_loses_nor_doubles_a_message(
    infra: Infra, tmp_path: Path
) -> None:
    smtp, contacts = SmtpSink(), Contacts()
    await smtp.start()
    await contacts.http.start()
    name, dsn = await create_database(infra.admin_dsn)
    service = ServiceProcess(
        service_env(
            dsn=dsn,
            bootstrap=infra.bootstrap_servers,
            smtp_port=smtp.port,
            registration_url=contacts.http.url,
            DELIVERY_WORKERS="3",
            # One row per claim: the scenario needs each stalled message on a worker
            # of its own, with Gamma's sent and committed beside them. In a batch of
            # 16 one worker takes all three, and Gamma's outcome waits for the stalled
            # ones to time out and be recorded as retries before the kill
            # (test_notification_batches covers batches, two senders at once).
            DELIVERY_BATCH_SIZE="1",
            REMINDER_LEAD_MINUTES=str(LEAD_MINUTES),
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
        alpha, beta, gamma = w.email_of("Alpha"), w.email_of("Beta"), w.email_of("Gamma")
        smtp.stall = lambda rcpts: {alpha: "after", beta: "before"}.get(rcpts[0])
        await w.open_event()
        a, b, c = [await w.register(n) for n in ("Alpha", "Beta", "Gamma")]
        d, e = await w.register("Delta"), await w.register("Epsilon")
        await wait_until(lambda: len(smtp.to(w.email_of("Delta"))) == 1, what="Delta received")
        start = datetime.now(UTC) + timedelta(minutes=LEAD_MINUTES, seconds=REMINDER_IN)
        reminder_due = time.monotonic() + REMINDER_IN
        meeting = str(uuid.uuid4())
        await w.place(meeting, d, e, start)

        async def gamma_recorded() -> bool:
            rows = await deliveries(dsn, "SELECT status FROM deliveries WHERE recipient = $1", c)
            return [r["status"] for r in rows] == ["sent"]

        await wait_until(lambda: len(smtp.to(alpha)) == 1, what="Alpha's message kept, unanswered")
        await wait_until(lambda: (beta,) in smtp.seen_data, what="Beta's data stalled")
        await wait_until(gamma_recorded, what="Gamma's message sent and recorded")

        async def placements_recorded() -> bool:
            # Both sides' messages, and recorded: the one free worker may still be on
            # Delta's when Epsilon's has arrived.
            rows = await deliveries(
                dsn,
                "SELECT status FROM deliveries WHERE meeting_id = $1 AND template = $2",
                meeting,
                "meeting.placed",
            )
            return [r["status"] for r in rows] == ["sent", "sent"]

        await wait_until(placements_recorded, what="the placement sent to both and recorded")
        assert time.monotonic() < reminder_due, "too slow: the reminder fell due before the kill"

        await service.kill()
        smtp.stall = lambda _: None
        smtp.release()
        pending = await deliveries(
            dsn,
            "SELECT recipient, template FROM deliveries WHERE status = 'pending' AND event_id = $1",
            w.event_id,
        )
        assert sorted((r["recipient"], r["template"]) for r in pending) == sorted(
            [
                (a, "application.received"),
                (b, "application.received"),
                (d, "meeting.reminder"),
                (e, "meeting.reminder"),
            ]
        )
        await asyncio.sleep(max(reminder_due - time.monotonic(), 0) + 1)
        before_restart = len(smtp.mails)
        await service.start()

        await wait_until(lambda: len(smtp.to(alpha)) == 2, what="Alpha's message resent")
        await wait_until(lambda: len(smtp.to(beta)) == 1, what="Beta's message sent")
        for who in ("Delta", "Epsilon"):
            await wait_until(smtp.holds(w.email_of(who), 3), what=f"{who}")
        await asyncio.sleep(1.5)  # room for anything sent twice to show up

        first, again = smtp.to(alpha)
        assert first.message_id == again.message_id and first.kind == "application.received"
        assert len(smtp.to(beta)) == 1 and len(smtp.to(gamma)) == 1
        for who in ("Delta", "Epsilon"):
            got = smtp.to(w.email_of(who))
            kinds = [m.kind for m in got]
            assert kinds == ["application.received", "meeting.placed", "meeting.reminder"]
            assert smtp.mails.index(got[2]) >= before_restart, "the reminder came after restart"
        rows = await deliveries(
            dsn,
            "SELECT recipient, template, status, attempts, message_id FROM deliveries"
            " WHERE event_id = $1",
            w.event_id,
        )
        assert {r["status"] for r in rows} == {"sent"}
        assert len(rows) == 5 + 2 + 2
        assert all(r["attempts"] == 1 for r in rows), [(r["template"], r["attempts"]) for r in rows]
        sent_ids = {m.message_id for m in smtp.mails if w.tag in m.rcpt_tos[0]}
        assert sent_ids == {r["message_id"] for r in rows}
    finally:
        await service.stop()
        await producer.stop()
        await smtp.stop()
        await contacts.http.stop()
        await drop_database(infra.admin_dsn, name)
