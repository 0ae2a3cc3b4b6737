"""The sender's batches: many workers in two senders claim due rows a batch at a time,
and every delivery is sent exactly once, each worker on one SMTP session.

A component test of the sender and its queue on a fresh database (rows made with the
queue's own `enqueue`, as the digest race does), with a real SMTP server and a
stand-in for registration's contacts endpoint.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.notification.domain import Kind
from services.notification.queue import NewDelivery, claim, enqueue
from services.notification.sender import Sender
from shared.db import create_pool, migrate
from shared.settings import NotificationSettings
from tests.integration.notification_support import (
    ADMIN_KEY,
    Contacts,
    SmtpSink,
    create_database,
    drop_database,
    email_delivery,
)
from tests.integration.support import Infra

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "notification" / "migrations"
SENDERS, WORKERS, BATCH = 2, 3, 7
RECIPIENTS, DIGESTERS = 50, 6
KINDS = (Kind.APPLICATION_APPROVED, Kind.REQUEST_DECLINED, Kind.REQUEST_EXPIRED)
DUE = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)  # long due: every digest row at once


class SessionCountingSink(SmtpSink):
    """The SMTP sink, counting sessions (one EHLO each)."""

    sessions = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk contacts", "contacts one by one"])
async def test_senders_claiming_batches_send_every_delivery_once(infra: Infra, bulk: bool) -> None:
    """`bulk`: registration answers a batch's contacts in one request; without (a
    registration from before that route), each recipient is asked for alone."""
    smtp, contacts = SessionCountingSink(), Contacts(bulk=bulk)
    await smtp.start()
    await contacts.http.start()
    name, dsn = await create_database(infra.admin_dsn)
    statements: list[str] = []

    async def logged(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda query: statements.append(query.query))

    pool = await create_pool(dsn, max_size=SENDERS * WORKERS + 4, init=logged)
    try:
        await migrate(pool, MIGRATIONS)
        event_id = str(uuid.uuid4())
        await pool.execute(
            "INSERT INTO brokerage_events VALUES ($1, 'org', 'Batch Fair', 'Hall', 'UTC')",
            event_id,
        )
        rows = []
        for n in range(RECIPIENTS):
            rid = str(uuid.uuid4())
            contacts.by_id[rid] = [{"name": "Rep", "email": f"rep{n}@example.org"}]
            await pool.execute(
                "INSERT INTO recipients VALUES ($1, $2, $3, 'approved', 'sealed', false)",
                rid,
                event_id,
                f"Org {n}",
            )
            digest = n < DIGESTERS  # a few recipients' rows wait for a digest, mixed in
            rows += [
                email_delivery(
                    event_id, rid, kind, due=DUE if digest else None, mail_domain="batch.test"
                )
                for kind in KINDS
            ]
        async with pool.acquire() as conn:
            await enqueue(conn, rows)
        settings = NotificationSettings(
            notification_database_url=dsn,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            registration_url=contacts.http.url,
            platform_admin_key=ADMIN_KEY,
            smtp_sender="Matchmaking <noreply@batch.test>",
            delivery_workers=WORKERS,
            delivery_batch_size=BATCH,
            delivery_poll_seconds=0.2,
        )
        async with httpx.AsyncClient(timeout=10) as http:
            senders = [
                asyncio.create_task(Sender(pool, dsn, settings, http).run()) for _ in range(SENDERS)
            ]
            try:
                for _ in range(600):
                    pending = await pool.fetchval(
                        "SELECT count(*) FROM deliveries WHERE status = 'pending'"
                    )
                    if not pending:
                        break
                    await asyncio.sleep(0.1)
                assert not pending, f"{pending} deliveries still pending"
            finally:
                for task in senders:
                    task.cancel()
                await asyncio.gather(*senders, return_exceptions=True)

        immediate = [r for r in rows if not r.digest]
        arrived = Counter(m.message_id for m in smtp.mails)
        assert {r.message_id for r in immediate} <= arrived.keys()
        assert [mid for mid, n in arrived.items() if n > 1] == []  # nothing twice
        digests = [m for m in smtp.mails if m.kind == "digest"]
        assert len(digests) == DIGESTERS  # one per digest recipient, all its rows in it
        assert len(smtp.mails) == len(immediate) + DIGESTERS
        statuses = await pool.fetch(
            "SELECT status, attempts, count(*) FROM deliveries GROUP BY 1, 2"
        )
        assert [tuple(r) for r in statuses] == [("sent", 1, len(rows))]
        # Each delivery's stream: queued, then sent once.
        versions = await pool.fetch(
            "SELECT max(version) AS v, count(*) AS n FROM events"
            " WHERE stream_id LIKE 'delivery-%' GROUP BY stream_id"
        )
        assert {(r["v"], r["n"]) for r in versions} == {(2, 2)} and len(versions) == len(rows)
        # A savepoint per delivery only where its processing runs a statement: a digest
        # locks its recipient's rows; an immediate e-mail's reads are its batch's.
        savepoints = [q for q in statements if q.startswith("SAVEPOINT")]
        assert len(savepoints) <= DIGESTERS * len(KINDS), len(savepoints)
        # A session per worker, kept from batch to batch (not one per message).
        assert smtp.sessions <= SENDERS * WORKERS, smtp.sessions
        # Contacts: one request per claimed batch of immediate rows (a digest asks for
        # its one recipient); without the bulk route (404), each recipient alone.
        paths = [r.path.partition("?")[0] for r in contacts.http.requests]
        in_bulk, alone = paths.count("/api/contacts"), len(paths) - paths.count("/api/contacts")
        assert 0 < in_bulk <= len(immediate) // 2, paths
        if bulk:
            assert alone == DIGESTERS, paths
        else:
            assert alone >= RECIPIENTS, paths
    finally:
        await pool.close()
        await smtp.stop()
        await contacts.http.stop()
        await drop_database(infra.admin_dsn, name)


async def test_urgent_deliveries_are_claimed_before_older_ones(infra: Infra) -> None:
    """A calendar update or a sign-in link queued behind a backlog of older messages is
    claimed first (`domain.urgent`); among equals, the oldest first."""
    name, dsn = await create_database(infra.admin_dsn)
    pool = await create_pool(dsn, max_size=2)
    try:
        await migrate(pool, MIGRATIONS)
        event_id, rid = str(uuid.uuid4()), str(uuid.uuid4())

        def queued(kind: Kind) -> NewDelivery:
            return email_delivery(event_id, rid, kind, due=None, mail_domain="urgent.test")

        backlog = [queued(Kind.REQUEST_RECEIVED) for _ in range(4)]
        placed, sign_in = queued(Kind.MEETING_PLACED), queued(Kind.SIGN_IN_LINK)
        async with pool.acquire() as conn:
            for rows in (backlog[:2], [placed], backlog[2:], [sign_in]):
                await enqueue(conn, rows)  # one after the other: each later than the last
        async with pool.acquire() as conn, conn.transaction():
            claimed = await claim(conn, 4)
        ids = [d.delivery_id for d in claimed]
        assert ids[:2] == [placed.delivery_id, sign_in.delivery_id]
        assert set(ids[2:]) == {r.delivery_id for r in backlog[:2]}  # queued together
    finally:
        await pool.close()
        await drop_database(infra.admin_dsn, name)
