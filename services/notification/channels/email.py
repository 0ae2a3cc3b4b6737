"""Email over SMTP (aiosmtplib): plain text and HTML, with the meeting's calendar entry.

A message's Message-ID comes from its delivery (see `domain.message_id`), so a
copy sent again after a crash carries the same one and mail clients collapse
the two. A calendar entry travels twice, as the iTIP `text/calendar` part of the
alternative (what calendar-aware clients act on) and as an `invite.ics`
attachment (for the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime

import aiosmtplib

from services.notification.domain import Method
from services.notification.templates import Rendered


@dataclass(frozen=True)
class Calendar:
    method: Method
    ics: bytes


class SendFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header's class once.

    The stdlib's registry builds a new class (`type(...)`) every time a header is
    set, some 30 times per message (each MIME part has its own headers): a third
    of the time it took to build an e-mail. The classes are the same every time,
    so the message is the same, byte for byte.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


_POLICY = default_policy.clone(header_factory=_HeaderClasses())


def build(
    *,
    sender: str,
    to: Sequence[str],
    rendered: Rendered,
    message_id: str,
    date: datetime,
    unsubscribe_url: str | None,
    kind: str,
    calendar: Calendar | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = rendered.subject
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(date)
    msg["Auto-Submitted"] = "auto-generated"
    # RFC 2369 / RFC 8058: one-click unsubscribe, no login needed.
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Matchmaking-Kind"] = kind
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    if calendar is not None:
        msg.add_alternative(
            calendar.ics.decode(), subtype="calendar", params={"method": calendar.method.value}
        )
        msg.add_attachment(
            calendar.ics,
            maintype="application",
            subtype="ics",
            filename="invite.ics" if calendar.method is Method.REQUEST else "cancel.ics",
        )
    return msg


def envelope_sender(sender: str) -> str:
    """The bare address of a `Name <address>` sender."""
    return sender.rsplit("<", 1)[-1].rstrip(">").strip()


def mail_domain(sender: str) -> str:
    return envelope_sender(sender).rsplit("@", 1)[-1]


class Connection:
    """One SMTP session kept open from message to message (one per sender worker).

    Opening a session costs a TCP handshake, the greeting and EHLO (and aiosmtplib
    asks the resolver for the local host's name each time): more than the message
    itself. A session the server closed meanwhile (its idle timeout, a restart) is
    noticed when the next message is handed to it, and that message goes at once on
    a new session. When a session dies with a message on it, the server may or may
    not have kept the message: the delivery is sent again either way, with the same
    Message-ID (the sender's at-least-once). A message the server refuses leaves the
    session usable (aiosmtplib sends RSET); any other failure closes it.
    """

    def __init__(self, *, host: str, port: int, timeout_seconds: float) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout_seconds
        self._smtp: aiosmtplib.SMTP | None = None
        self.opened = 0  # sessions opened so far (tests and logs)

    @property
    def is_open(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    async def send(self, msg: EmailMessage) -> None:
        """Send `msg` on the kept session (opened if needed); `SendFailed` if it did not go."""
        kept = self.is_open
        try:
            await self._send(msg)
            return
        except Exception as exc:
            await self._after(exc)
            if not (kept and _dropped(exc)):
                raise _failure(exc) from exc
        # The kept session had gone (closed while idle): once more, on a new one.
        try:
            await self._send(msg)
        except Exception as exc:
            await self._after(exc)
            raise _failure(exc) from exc

    async def _after(self, exc: Exception) -> None:
        """Close the session unless the server answered the message and is still there
        (then aiosmtplib has sent RSET and the session goes on); re-raise what is not
        a failure to send (a bug, an address that cannot be put in an envelope)."""
        if _dropped(exc) or not isinstance(exc, _ANSWERED):
            await self.close()
        if not isinstance(exc, _SMTP_FAILURES):
            raise exc

    async def _send(self, msg: EmailMessage) -> None:
        if not self.is_open:
            await self.close()
            smtp = aiosmtplib.SMTP(
                hostname=self._host, port=self._port, timeout=self._timeout, start_tls=False
            )
            await smtp.connect()
            self._smtp = smtp
            self.opened += 1
        assert self._smtp is not None
        await self._smtp.send_message(msg)

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if smtp.is_connected:
            try:
                await smtp.quit(timeout=min(self._timeout, 5.0))
            except Exception:  # a QUIT that fails changes nothing: the socket goes anyway
                smtp.close()
        else:
            smtp.close()


# The server answered the message: the session is intact (aiosmtplib sent RSET).
_ANSWERED = (
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPNotSupported,
    aiosmtplib.SMTPResponseException,
)
_SMTP_FAILURES = (aiosmtplib.SMTPException, OSError, TimeoutError)


def _dropped(exc: Exception) -> bool:
    """A session the server closed (or that died): worth one immediate try on a new one.
    421: the server says it is closing the session (RFC 5321 3.8)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
        return True
    return isinstance(
        exc, (aiosmtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError)
    )


def _failure(exc: Exception) -> SendFailed:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return SendFailed(f"recipients refused: {exc}", permanent=True)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # The server lacks what the message needs (SMTPUTF8 for a non-ASCII address):
        # asking it again will not help.
        return SendFailed(f"not supported by the SMTP server: {exc}", permanent=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendFailed(f"SMTP {exc.code}: {exc.message}", permanent=exc.code >= 500)
    return SendFailed(f"{type(exc).__name__}: {exc}", permanent=False)


async def send(msg: EmailMessage, *, host: str, port: int, timeout_seconds: float) -> None:
    """Send one message on a session of its own."""
    connection = Connection(host=host, port=port, timeout_seconds=timeout_seconds)
    try:
        await connection.send(msg)
    finally:
        await connection.close()
