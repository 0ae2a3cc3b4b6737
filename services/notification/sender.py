"""The background sender: claims due deliveries, sends them, records the outcome.

Workers (`delivery_workers`) each loop: in one transaction, lock a few due rows
(`delivery_batch_size`, `FOR UPDATE SKIP LOCKED`; a digest row alone), read what
their messages need in one go (`views.Lookups`), send them one after the other on
the worker's own SMTP session (kept open from batch to batch: `email.Connection`),
record each one's sent / retry later / failed / skipped together (`queue.Outcomes`),
commit. A NOTIFY from the deliveries trigger wakes one idle worker, one whose claim
came back full wakes one more: a burst fans out, a new row costs one claim (waking all
cost an empty claim per worker per NOTIFY). They poll as a fallback, so a timer (a
reminder, a digest, a retry) fires within one poll interval of its time.

What this guarantees: a delivery row is sent until an attempt succeeds or its
attempts run out, and never by two workers at once. If the process dies after
the SMTP server (or webhook receiver) accepted a message but before the commit,
the row is still pending and is sent again, with the same Message-ID (or
webhook-id): at least once, at most once more per crash, recognisably the same.
A batch widens "the row" to the batch's rows, not the guarantee: each of them is
sent again at most once per crash, none by two workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

import asyncpg
import httpx
from opentelemetry.trace import Span

from services.notification import domain, endpoints, queue, views
from services.notification.channels import calendar, email, webhooks
from services.notification.contacts import Contacts, ContactsUnavailable, RegistrationContacts
from services.notification.domain import CalendarEntry, Kind
from services.notification.links import Links
from services.notification.queue import Delivery
from services.notification.templates import (
    Rendered,
    RenderInput,
    calendar_summary,
    render,
    render_digest,
)
from shared import telemetry
from shared.contracts.notification import Channel
from shared.savepoints import LazySavepoint
from shared.settings import NotificationSettings

log = logging.getLogger(__name__)


class Skip(Exception):
    """Nothing to send, on purpose; the reason goes to the delivery log."""


class Transient(Exception):
    """This attempt failed; try again after the backoff (or fail after the last attempt)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


# The SMTP session of the sender worker running in this context (each worker task
# sets its own: one session per worker, kept from message to message).
_SESSION: ContextVar[email.Connection | None] = ContextVar("notification_smtp", default=None)


@dataclass
class _Batch:
    """One claimed batch's reads, decided outcomes and contact details (asked once per
    recipient per batch, never kept beyond it: registration's answer of the moment)."""

    look: views.Lookups
    outcomes: queue.Outcomes
    contacts: dict[str, Contacts] = field(default_factory=dict)
    # The batch's e-mail recipients, asked for in one request when the first of them is
    # needed (inside that delivery's span: the request joins its trace); emptied then.
    unasked: list[str] = field(default_factory=list)


def _people(d: Delivery) -> list[str]:
    """Whose names a delivery's message shows."""
    facts = d.context.get("facts", {})
    return [
        d.recipient,
        *facts.get("participants", []),
        *(facts[k] for k in ("requester_id", "recipient_id") if facts.get(k)),
    ]


class Sender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        settings: NotificationSettings,
        http: httpx.AsyncClient,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._s = settings
        self._http = http
        self._contacts = RegistrationContacts(
            http, settings.registration_url, settings.platform_admin_key
        )
        self._links = Links(settings.public_base_url.rstrip("/"), settings.notification_link_secret)
        self._domain = email.mail_domain(settings.smtp_sender)
        self._idle: deque[asyncio.Event] = deque()  # the waiting workers' alarms
        self._missed = False  # a wake-up came while no worker was waiting

    # -- loop -----------------------------------------------------------------

    async def run(self) -> None:
        listener: asyncpg.Connection = await asyncpg.connect(self._dsn)
        try:
            await listener.add_listener("deliveries", self._notified)
            workers = [
                asyncio.create_task(self._work(), name=f"notification-sender-{n}")
                for n in range(self._s.delivery_workers)
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
        finally:
            await listener.close()

    def _notified(self, *_: object) -> None:
        self._wake_one()

    def _wake_one(self) -> None:
        """Wake one waiting worker; with none waiting, the next to finish claims again."""
        while self._idle:
            alarm = self._idle.popleft()
            if not alarm.is_set():
                alarm.set()
                return
        self._missed = True

    async def _idle_until_woken(self) -> None:
        if self._missed:
            self._missed = False
            return
        alarm = asyncio.Event()
        self._idle.append(alarm)
        try:
            await asyncio.wait_for(alarm.wait(), self._s.delivery_poll_seconds)
        except TimeoutError:
            pass
        finally:
            if alarm in self._idle:
                self._idle.remove(alarm)

    async def _work(self) -> None:
        mail = self._mail_session()
        _SESSION.set(mail)  # this worker's (a task's own context)
        limit = self._s.delivery_batch_size
        try:
            while True:
                try:
                    claimed = await self._send(limit)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "notification sender: a batch of deliveries could not be processed"
                    )
                    claimed = 0
                if claimed >= limit:
                    # Maybe more due: go on, and bring another worker in.
                    self._wake_one()
                else:
                    # Nothing more was due when this claim ran (rows other workers held
                    # are theirs); new rows NOTIFY, timers are caught by the poll.
                    await self._idle_until_woken()
        finally:
            await mail.close()

    def _mail_session(self) -> email.Connection:
        return email.Connection(
            host=self._s.smtp_host,
            port=self._s.smtp_port,
            timeout_seconds=self._s.smtp_timeout_seconds,
        )

    async def send_one(self) -> bool:
        """Claim and process one due delivery; False when none is due."""
        return await self._send(1) > 0

    async def send_batch(self) -> bool:
        """Claim and process up to `delivery_batch_size` due deliveries; False when none is due."""
        return await self._send(self._s.delivery_batch_size) > 0

    async def _send(self, limit: int) -> int:
        """Claim up to `limit` due deliveries and process them; how many were claimed."""
        own = _SESSION.get() is None  # called outside a worker (a test): a session for this call
        token = _SESSION.set(self._mail_session()) if own else None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await self._send_claimed(conn, limit)
        finally:
            if token is not None:
                session = _SESSION.get()
                _SESSION.reset(token)
                if session is not None:
                    await session.close()

    async def _send_claimed(self, conn: asyncpg.Connection, limit: int) -> int:
        claimed = await queue.claim(conn, limit)
        if not claimed:
            return 0
        first = claimed[0]
        if first.digest and not await queue.lock_digest(conn, first):
            # Another worker is putting this recipient's digest together: it waits
            # for this row, which it gets when this transaction ends, now. Had both
            # gone on, each would send part of the digest under one Message-ID,
            # and mail clients would show only one of the two.
            return 0
        batch = _Batch(views.Lookups(conn), queue.Outcomes())
        if not first.digest:
            await batch.look.prefetch(
                (d.recipient for d in claimed if d.channel is Channel.EMAIL),
                (p for d in claimed for p in _people(d)),
                (d.event_id for d in claimed),
            )
            batch.unasked = [
                d.recipient
                for d in claimed
                if d.channel is Channel.EMAIL
                and d.template not in (Kind.OFFICE_REGISTRATION, Kind.SIGN_IN_LINK)
            ]
        for delivery in claimed:
            decided = len(batch.outcomes)
            # Each delivery's statements in a savepoint, taken only if it runs one.
            scope = LazySavepoint(conn)
            batch.look.conn = scope.connection()
            try:
                with _span(delivery):
                    await self._process(batch, delivery)
                await scope.release()
            except (asyncpg.PostgresConnectionError, OSError):
                raise  # the rows stay locked until the connection goes, then are due again
            except Exception as exc:
                # A fault of ours (a bug, bad data): count it as a failed attempt, so
                # the row backs off and ends as failed instead of blocking the queue.
                log.exception("delivery %s could not be processed", delivery.delivery_id)
                await scope.roll_back()
                batch.outcomes.forget_from(decided)
                reason = f"internal error: {type(exc).__name__}: {exc}"
                self._failed_attempt(batch, delivery, reason, permanent=False)
            finally:
                batch.look.conn = conn
        await batch.outcomes.record(conn)
        return len(claimed)

    async def _process(self, b: _Batch, d: Delivery) -> None:
        group = await self._digest_batch(b, d) if d.digest else [d]
        if not group:
            return  # every message of the digest is muted (each logged as skipped)
        try:
            if d.channel is Channel.WEBHOOK:
                message_id = await self._webhook(b, d)
            elif d.template == Kind.OFFICE_REGISTRATION:
                message_id = await self._office_email(b, d)
            elif d.template == Kind.SIGN_IN_LINK:
                message_id = await self._sign_in_email(b, d)
            elif d.digest:
                message_id = await self._digest(b, group)
            else:
                message_id = await self._email(b, d)
        except Skip as skip:
            for one in group:
                b.outcomes.skipped(one, str(skip))
            return
        except Transient as exc:
            for one in group:
                self._failed_attempt(b, one, str(exc), permanent=exc.permanent)
            return
        for one in group:
            b.outcomes.sent(one, message_id)

    async def _digest_batch(self, b: _Batch, first: Delivery) -> list[Delivery]:
        """The recipient's due digest rows, locked; muted kinds are logged as skipped here,
        so that a failed attempt later counts only against the messages it was to carry."""
        batch = await queue.claim_digest(b.look.conn, first)
        who = await b.look.recipient(first.recipient)
        prefs = await b.look.preferences(first.recipient)
        if who.erased or prefs.unsubscribed:
            return batch  # `_digest` skips them all, saying why
        wanted = [d for d in batch if domain.wants(Kind(d.template), prefs.muted, False)]
        for d in batch:
            if d not in wanted:
                b.outcomes.skipped(d, f"{d.template} muted")
        return wanted

    def _failed_attempt(self, b: _Batch, d: Delivery, reason: str, *, permanent: bool) -> None:
        attempts = d.attempts + 1
        if permanent or attempts >= self._s.delivery_max_attempts:
            log.warning("delivery %s failed after %d attempts: %s", d.delivery_id, attempts, reason)
            b.outcomes.failed(d, reason)
        else:
            delay = domain.backoff(attempts, self._s.delivery_backoff_seconds)
            b.outcomes.retry(d, delay, reason)

    # -- email ----------------------------------------------------------------

    async def _check(self, b: _Batch, d: Delivery) -> views.Preferences:
        who = await b.look.recipient(d.recipient)
        if who.erased:
            raise Skip("personal data erased")
        prefs = await b.look.preferences(d.recipient)
        if not domain.wants(Kind(d.template), prefs.muted, prefs.unsubscribed):
            raise Skip("unsubscribed" if prefs.unsubscribed else f"{d.template} muted")
        if d.template == Kind.MEETING_REMINDER:
            await self._check_reminder(b.look.conn, d)
        return prefs

    async def _check_reminder(self, conn: asyncpg.Connection, d: Delivery) -> None:
        start = datetime.fromisoformat(d.context["facts"]["start"])
        row = await conn.fetchrow(
            "SELECT slot_start, placed, cancelled FROM meetings WHERE meeting_id = $1",
            d.meeting_id,
        )
        if row is None or not row["placed"] or row["cancelled"] or row["slot_start"] != start:
            raise Skip("the meeting is no longer at this time")
        if datetime.now(UTC) >= start:
            raise Skip("the meeting has already started")

    async def _addresses(self, b: _Batch, d: Delivery) -> tuple[str, ...]:
        found = b.contacts.get(d.recipient)
        if found is None and d.recipient in b.unasked:
            b.contacts.update(await self._contacts_in_bulk(b.unasked))
            b.unasked = []
            found = b.contacts.get(d.recipient)
        if found is None:
            try:
                found = await self._contacts.of(d.recipient)
            except ContactsUnavailable as exc:
                raise Transient(str(exc)) from exc
            b.contacts[d.recipient] = found
        if not found.emails:
            raise Skip(found.why_none)
        return found.emails

    async def _contacts_in_bulk(self, recipients: Sequence[str]) -> dict[str, Contacts]:
        """The recipients' contacts in one request; none if registration cannot answer it
        (each is then asked for alone, and fails alone)."""
        try:
            return await self._contacts.of_many(recipients)
        except ContactsUnavailable as exc:
            log.warning("contacts in bulk unavailable, asking one by one: %s", exc)
            return {}

    async def _render(
        self, b: _Batch, d: Delivery, prefs: views.Preferences, *, standalone: bool
    ) -> tuple[Rendered, CalendarEntry | None, str]:
        ctx = d.context
        facts = ctx["facts"]
        known = await b.look.names(_people(d))
        entry = CalendarEntry.from_json(ctx["calendar"]) if ctx.get("calendar") else None
        agenda = []
        if d.template == Kind.AGENDA_PUBLISHED:
            agenda = [a.item for a in await views.agenda(b.look.conn, d.recipient)]
        data = RenderInput(
            kind=Kind(d.template),
            recipient_id=d.recipient,
            recipient_name=known.get(d.recipient, "participant"),
            time_zone=prefs.time_zone,
            event=await b.look.event_info(d.event_id),
            facts=facts,
            names=known,
            calendar=entry,
            unsubscribe_url=self._links.unsubscribe(d.recipient),
            feed_url=self._links.feed(d.recipient),
            agenda=agenda,
        )
        return render(data, standalone=standalone), entry, calendar_summary(data)

    async def _email(self, b: _Batch, d: Delivery) -> str:
        prefs = await self._check(b, d)
        to = await self._addresses(b, d)
        rendered, entry, summary = await self._render(b, d, prefs, standalone=True)
        attachment = None
        if entry is not None:
            event = await b.look.event_info(d.event_id)
            ics = calendar.entry_ics(
                entry,
                summary=summary,
                location=_location(entry, event.venue),
                organizer=email.envelope_sender(self._s.smtp_sender),
                attendees=to,
            )
            attachment = email.Calendar(entry.method, ics)
        await self._smtp(d.message_id, to, rendered, d, attachment)
        return d.message_id

    async def _office_email(self, b: _Batch, d: Delivery) -> str:
        """A support office's notice: to its co-organiser's own address, as of now."""
        row = await b.look.conn.fetchrow(
            "SELECT name, email, removed FROM co_organisers WHERE co_organiser_id = $1",
            d.recipient,
        )
        if row is None or row["removed"]:
            raise Skip("the co-organiser was removed")
        if not row["email"]:
            raise Skip("the co-organiser gave no email address")
        facts = d.context["facts"]
        participant = await b.look.recipient(facts["registration_id"])
        if participant.erased:
            raise Skip("the participant's personal data was erased")
        data = RenderInput(
            kind=Kind.OFFICE_REGISTRATION,
            recipient_id=d.recipient,
            recipient_name=row["name"],
            time_zone=None,
            event=await b.look.event_info(d.event_id),
            facts=facts,
            names={participant.registration_id: participant.name},
            calendar=None,
            unsubscribe_url="",
            feed_url="",
        )
        await self._smtp(d.message_id, (row["email"],), render(data), d, None, unsubscribe=False)
        return d.message_id

    async def _sign_in_email(self, b: _Batch, d: Delivery) -> str:
        """A sign-in link: to the one address that asked, with the link registration signs
        (asked for now, never stored here); nothing if it no longer works."""
        try:
            message = await self._contacts.sign_in_message(d.context["facts"]["link_id"])
        except ContactsUnavailable as exc:
            raise Transient(str(exc)) from exc
        if message is None:
            raise Skip("the sign-in link was used, expired or erased")
        portal = self._s.portal_public_url.rstrip("/")
        url = f"{portal}/signin/link?{urlencode({'token': message['token']})}"
        known = await b.look.names([d.recipient])
        data = RenderInput(
            kind=Kind.SIGN_IN_LINK,
            recipient_id=d.recipient,
            recipient_name=known.get(d.recipient, "participant"),
            time_zone=None,
            event=await b.look.event_info(d.event_id),
            facts={**d.context["facts"], "url": url},
            names=known,
            calendar=None,
            unsubscribe_url="",
            feed_url="",
        )
        to = (message["email"],)
        await self._smtp(d.message_id, to, render(data), d, None, unsubscribe=False)
        return d.message_id

    async def _digest(self, b: _Batch, batch: Sequence[Delivery]) -> str:
        first = batch[0]
        who = await b.look.recipient(first.recipient)
        if who.erased:
            raise Skip("personal data erased")
        prefs = await b.look.preferences(first.recipient)
        if prefs.unsubscribed:
            raise Skip("unsubscribed")
        to = await self._addresses(b, first)
        parts = [(await self._render(b, d, prefs, standalone=False))[0] for d in batch]
        event = await b.look.event_info(first.event_id)
        rendered = render_digest(
            who.name, event.name, parts, self._links.unsubscribe(first.recipient)
        )
        message_id = domain.digest_message_id(first.recipient, first.next_attempt_at, self._domain)
        await self._smtp(message_id, to, rendered, first, None, kind="digest")
        return message_id

    async def _smtp(
        self,
        message_id: str,
        to: Sequence[str],
        rendered: Rendered,
        d: Delivery,
        attachment: email.Calendar | None,
        *,
        kind: str | None = None,
        unsubscribe: bool = True,
    ) -> None:
        msg = email.build(
            sender=self._s.smtp_sender,
            to=to,
            rendered=rendered,
            message_id=message_id,
            date=datetime.now(UTC),
            unsubscribe_url=self._links.unsubscribe(d.recipient) if unsubscribe else None,
            kind=kind or d.template,
            calendar=attachment,
        )
        session = _SESSION.get()
        assert session is not None, "set by the worker, or by `_send` for one call"
        try:
            await session.send(msg)
        except email.SendFailed as exc:
            raise Transient(str(exc), permanent=exc.permanent) from exc

    # -- webhooks ---------------------------------------------------------------

    async def _webhook(self, b: _Batch, d: Delivery) -> str:
        endpoint = await b.look.conn.fetchrow(
            "SELECT w.sealed, w.active, k.key FROM webhook_endpoints w"
            " LEFT JOIN webhook_keys k USING (endpoint_id) WHERE w.endpoint_id = $1::uuid",
            d.recipient,
        )
        opened = None
        if endpoint is not None and endpoint["active"]:
            opened = endpoints.opened(endpoint["key"], endpoint["sealed"], d.recipient)
        if opened is None:
            raise Skip("the endpoint was removed")
        url, secret = opened
        body = d.webhook_body()
        try:
            await webhooks.post(
                self._http,
                url,
                secret=secret,
                webhook_id=d.message_id,
                timestamp=int(datetime.now(UTC).timestamp()),
                body=body,
            )
        except webhooks.WebhookFailed as exc:
            raise Transient(str(exc), permanent=exc.permanent) from exc
        return d.message_id


def _span(d: Delivery) -> AbstractContextManager[Span]:
    """The attempt's span, in the trace of the event that caused the delivery.

    A timer (a reminder, a digest) fires long after its cause: it starts a trace
    of its own, linked to the cause.
    """
    return telemetry.resumed_span(
        f"send {d.channel.value}",
        d.context.get(queue.TRACE_KEY),
        follows=d.digest or bool(d.context.get(queue.TIMER_KEY)),
        attributes={
            "notification.delivery_id": d.delivery_id,
            "notification.kind": d.template,
            "notification.cause_id": d.cause_id,
            "notification.attempt": d.attempts + 1,
        },
    )


def _location(entry: CalendarEntry, venue: str) -> str:
    if entry.mode == "online":
        return "Online"
    return f"Table {entry.table}, {venue}" if entry.table is not None else venue
