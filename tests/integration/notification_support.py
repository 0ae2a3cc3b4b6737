"""What the notification tests run against, all real and in process or as a subprocess.

- `SmtpSink`: a real SMTP server (aiosmtpd) on a free port in the test's event
  loop; it keeps every message it accepted and can be told to stall a session.
- `MiniHttp`: a tiny HTTP/1.1 server (asyncio streams) for the webhook receiver
  and for registration's contacts endpoint.
- `ServiceProcess`: `python -m services.notification` (or another service) on a fresh database,
  with its own consumer group, pointed at the above.
- `World`: one brokerage event's domain events, as the other services would
  publish them, produced to the real topics under TEST_TOPIC_PREFIX (where the
  test services read them).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from services.notification.domain import (
    Kind,
    Notice,
    dedupe_key,
    delivery_id,
    message_id,
    reminder_cause,
)
from services.notification.handlers import cause_of
from services.notification.queue import NewDelivery
from shared.auth import digest
from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    CancelledBy,
    MeetingAccepted,
    MeetingCancelled,
    MeetingMode,
    MeetingParty,
    MeetingRequested,
)
from shared.contracts.notification import Channel
from shared.contracts.registration import (
    Attendance,
    BrokerageEventCreated,
    ClusterRegistered,
    MeetingType,
    OrganisationProfile,
    OrganisationType,
    OrganiserRegistered,
    RegistrationApproved,
)
from shared.contracts.registration import (
    Session as EventSession,
)
from shared.contracts.scheduling import ReleaseReason, SlotAssigned, SlotReleased
from shared.envelope import Envelope
from tests.integration import support
from tests.integration.support import (
    REPO_ROOT,
    TEST_TOPIC_PREFIX,
    consumer_groups,
    send_envelope,
    start_service_groups_at_end,
    topic_under_test,
    wait_until,
)
from tests.integration.support import drop_database as drop_database

ADMIN_KEY = "notification-test-admin-key"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and never handed out before in this test run: the
    kernel can give the same free port to two calls in a row (seen in CI: registration
    and notification of one platform were both given one port, and requests meant for
    registration reached notification)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


# -- SMTP ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    rcpt_tos: tuple[str, ...]
    message: Message

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def kind(self) -> str:
        return str(self.message["X-Matchmaking-Kind"])

    def part(self, content_type: str) -> str | None:
        for p in self.message.walk():
            if p.get_content_type() == content_type:
                payload = p.get_payload(decode=True)
                assert isinstance(payload, bytes)
                return payload.decode()
        return None


# Given a message's recipients: None to accept it, "before" to stall before
# keeping it (the client never finishes), "after" to keep it and then stall
# (the client never hears the 250).
Staller = Callable[[tuple[str, ...]], str | None]


class SmtpSink:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.seen_data: list[tuple[str, ...]] = []  # every DATA, accepted or not
        self.stall: Staller = lambda _: None
        self.delay = 0.0  # seconds each message is held before it is kept (in flight)
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        rcpts = tuple(envelope.rcpt_tos)
        self.seen_data.append(rcpts)
        mode = self.stall(rcpts)
        if mode == "before":
            await self._release.wait()
            return "451 try again later"
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.content
        assert isinstance(content, bytes)
        self.mails.append(Mail(rcpts, email.message_from_bytes(content)))
        if mode == "after":
            await self._release.wait()
        return "250 OK"

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.test", loop=loop), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def release(self) -> None:
        self._release.set()

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.rcpt_tos]

    def holds(self, address: str, count: int) -> Callable[[], bool]:
        """A condition for `wait_until`: exactly `count` messages to `address` arrived."""
        return lambda: len(self.to(address)) == count


# -- HTTP ------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


Responder = Callable[[HttpRequest], Awaitable[tuple[int, bytes]]]


class MiniHttp:
    """Enough HTTP/1.1 for a test: one request per connection, a JSON answer."""

    def __init__(self, respond: Responder) -> None:
        self.requests: list[HttpRequest] = []
        self._respond = respond
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = HttpRequest(method, path, headers, body, time.monotonic())
            self.requests.append(request)
            status, answer = await self._respond(request)
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(answer)}\r\nconnection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


class Contacts:
    """Registration's contacts endpoints: representatives by registration id (None:
    erased), one at a time and in bulk (`bulk=False`: a registration from before the
    bulk route, which answers it 404)."""

    def __init__(self, *, bulk: bool = True) -> None:
        self.by_id: dict[str, list[dict[str, str]] | None] = {}
        self.bulk = bulk
        self.http = MiniHttp(self._respond)

    async def _respond(self, request: HttpRequest) -> tuple[int, bytes]:
        if request.headers.get("x-api-key") != ADMIN_KEY:
            return 401, b"{}"
        path, _, query = request.path.partition("?")
        if path == "/api/contacts" and self.bulk:
            asked = [v for k, v in parse_qsl(query) if k == "registration_id"]
            known = [rid for rid in dict.fromkeys(asked) if rid in self.by_id]
            answer: dict[str, Any] = {
                "contacts": [
                    {"registration_id": rid, "representatives": self.by_id[rid]} for rid in known
                ],
                "unknown": [rid for rid in asked if rid not in self.by_id],
            }
            return 200, json.dumps(answer).encode()
        parts = path.strip("/").split("/")  # api/registrations/<id>/contacts
        if len(parts) != 4 or parts[3] != "contacts" or parts[2] not in self.by_id:
            return 404, b'{"title": "Not found"}'
        answer = {"registration_id": parts[2], "representatives": self.by_id[parts[2]]}
        return 200, json.dumps(answer).encode()


# -- the service ---------------------------------------------------------------------


async def create_database(admin_dsn: str) -> tuple[str, str]:
    """A fresh, empty database `test_ntf_<hex>`: its name and DSN."""
    name = f"test_ntf_{uuid.uuid4().hex[:16]}"
    return name, await support.create_database(admin_dsn, name)


class ServiceProcess:
    """`python -m services.<service>` (notification unless told otherwise) on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, service: str = "notification") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = service
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            f"{service.upper()}_PORT": str(self.port),
            "PUBLIC_BASE_URL": self.url,
            "PLATFORM_ADMIN_KEY": ADMIN_KEY,
            "OTEL_TRACES_EXPORTER": "none",
            **env,
            "TOPIC_PREFIX": TEST_TOPIC_PREFIX,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False

    async def start(self) -> None:
        if not self._started:
            # A fresh consumer group would replay the test topics' whole history
            # (every earlier test's events); start it at their end instead. Only
            # on the first start: a restart must resume from its own commits.
            suffix = self.env.get("CONSUMER_GROUP_SUFFIX", "")
            if suffix:
                await start_service_groups_at_end(
                    self.env["KAFKA_BOOTSTRAP_SERVERS"], consumer_groups([self.service]), suffix
                )
            self._started = True
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.service}"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                assert self.proc is not None and self.proc.poll() is None, self.log()
                try:
                    return (await http.get(f"{self.url}/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, limit=60, interval=0.2, what=f"{self.service} ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 15)
            except TimeoutError:
                await self.kill()


def service_env(
    *, dsn: str, bootstrap: str, smtp_port: int, registration_url: str, **extra: str
) -> dict[str, str]:
    return {
        "NOTIFICATION_DATABASE_URL": dsn,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CONSUMER_GROUP_SUFFIX": f"-ntest-{uuid.uuid4().hex[:10]}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_SENDER": "Matchmaking <noreply@notify.test>",
        "REGISTRATION_URL": registration_url,
        "DELIVERY_POLL_SECONDS": "0.2",
        **extra,
    }


# -- the domain events of one brokerage event ------------------------------------------


@dataclass
class World:
    """A brokerage event, its organiser and participants, and a producer to publish with."""

    producer: AIOKafkaProducer
    contacts: Contacts
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    organiser_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    organiser_key: str = field(default_factory=lambda: f"org_{uuid.uuid4().hex}")
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    sent: list[Envelope] = field(default_factory=list)

    def email_of(self, name: str) -> str:
        return f"{name.lower()}-{self.tag}@example.org"

    async def publish(self, payload: EventPayload, *, event_id: str | None = None) -> Envelope:
        envelope = Envelope.wrap(payload, key=self.event_id, event_id=event_id)
        await self.republish(envelope)
        return envelope

    async def republish(self, envelope: Envelope) -> None:
        self.sent.append(envelope)
        await send_envelope(self.producer, envelope_topic(envelope), envelope)

    async def open_event(self, start_day: date | None = None) -> None:
        day = start_day or (datetime.now(UTC) + timedelta(days=30)).date()
        await self.publish(
            OrganiserRegistered(
                organiser_id=self.organiser_id,
                name="EEN",
                api_key_digest=digest(self.organiser_key),
            )
        )
        await self.publish(
            BrokerageEventCreated(
                event_id=self.event_id,
                organiser_id=self.organiser_id,
                name=f"Cluster Matchmaking {self.tag}",
                venue="Hall 2",
                time_zone="Europe/Berlin",
                days=[day],
                sessions=[EventSession(start=dtime(9), end=dtime(17))],
                slot_minutes=30,
                tables=10,
                meeting_types=[MeetingType.CLUSTER2CLUSTER],
                registration_deadline=datetime.now(UTC) + timedelta(days=10),
            )
        )

    async def register(self, name: str, *, erased: bool = False) -> str:
        registration_id = str(uuid.uuid4())
        self.contacts.by_id[registration_id] = (
            None if erased else [{"name": f"{name} Rep", "email": self.email_of(name)}]
        )
        profile = OrganisationProfile(
            organisation_type=OrganisationType.CLUSTER,
            name=f"{name} Cluster",
            country="DE",
            sectors=[],
            technologies=[],
            value_chain_position=None,
            markets=[],
            offers=[],
            requests=[],
            attendance=Attendance.ON_SITE,
            availability=[],
            representatives_encrypted="sealed",
            representative_count=1,
        )
        await self.publish(
            ClusterRegistered(
                registration_id=registration_id,
                event_id=self.event_id,
                profile=profile,
                api_key_digest=digest(f"reg-{registration_id}"),
            )
        )
        return registration_id

    async def approve(self, registration_id: str) -> Envelope:
        return await self.publish(
            RegistrationApproved(registration_id=registration_id, event_id=self.event_id)
        )

    # -- meetings --

    async def request(self, meeting_id: str, a: str, b: str) -> Envelope:
        return await self.publish(
            MeetingRequested(
                request_id=meeting_id,
                event_id=self.event_id,
                requester_id=a,
                recipient_id=b,
                meeting_type=MeetingType.CLUSTER2CLUSTER,
                expires_at=datetime.now(UTC) + timedelta(days=2),
            )
        )

    async def accept(self, meeting_id: str, a: str, b: str) -> Envelope:
        def party(rid: str) -> MeetingParty:
            return MeetingParty(
                registration_id=rid,
                name=rid,
                organisation_type=OrganisationType.CLUSTER,
                attendance=Attendance.ON_SITE,
            )

        return await self.publish(
            MeetingAccepted(
                request_id=meeting_id,
                event_id=self.event_id,
                requester_id=a,
                recipient_id=b,
                meeting_type=MeetingType.CLUSTER2CLUSTER,
                mode=MeetingMode.ONSITE,
                participants=[party(a), party(b)],
                accepted_by=b,
            )
        )

    async def place(
        self, meeting_id: str, a: str, b: str, start: datetime, table: int = 1
    ) -> Envelope:
        return await self.publish(
            SlotAssigned(
                meeting_id=meeting_id,
                event_id=self.event_id,
                participants=[a, b],
                slot_start=start,
                slot_end=start + timedelta(minutes=30),
                table=table,
                mode=MeetingMode.ONSITE,
            )
        )

    async def cancel(self, meeting_id: str, a: str, b: str, by: str) -> Envelope:
        return await self.publish(
            MeetingCancelled(
                request_id=meeting_id,
                event_id=self.event_id,
                requester_id=a,
                recipient_id=b,
                cancelled_by=by,
                cancelled_by_role=CancelledBy.PARTICIPANT,
                reason="plans changed",
                was_accepted=True,
            )
        )

    async def release(self, meeting_id: str, a: str, b: str, reason: ReleaseReason) -> Envelope:
        return await self.publish(
            SlotReleased(
                meeting_id=meeting_id, event_id=self.event_id, participants=[a, b], reason=reason
            )
        )


def envelope_topic(envelope: Envelope) -> str:
    """Where the envelope's producer would publish it, as a test service (prefixed)."""
    return topic_under_test(f"{envelope.source.rsplit('/', 1)[-1]}.events")


async def foreign_causes(dsn: str, world: World, meeting_id: str) -> list[str]:
    """Causes of the meeting's deliveries that are not events `world` published.

    Empty when the test's events are the meeting's whole story; anything else is
    another producer acting on it (a scheduling service placing the accepted
    meeting), which makes the test's expected messages wrong, not the service.
    """
    ours = {cause_of(e) for e in world.sent}
    ours |= {reminder_cause(c) for c in ours}
    rows = await deliveries(
        dsn, "SELECT DISTINCT cause_id FROM deliveries WHERE meeting_id = $1", meeting_id
    )
    return sorted(r["cause_id"] for r in rows if r["cause_id"] not in ours)


async def deliveries(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


def email_delivery(
    event_id: str, rid: str, kind: Kind, *, due: datetime | None, mail_domain: str
) -> NewDelivery:
    """An e-mail of `kind` to `rid` from a cause of its own, queued as a consumer would
    (a digest row when `due` is given)."""
    cause = f"/services/test#{uuid.uuid4()}"
    key = dedupe_key(cause, rid, Channel.EMAIL, kind)
    notice = Notice(kind, event_id, (rid,), {"registration_id": rid, "reason": None})
    return NewDelivery(
        delivery_id=delivery_id(key),
        cause_id=cause,
        recipient=rid,
        channel=Channel.EMAIL,
        template=kind.value,
        event_id=event_id,
        meeting_id=None,
        context=notice.context(),
        message_id=message_id(key, mail_domain),
        digest=due is not None,
        due=due,
    )
