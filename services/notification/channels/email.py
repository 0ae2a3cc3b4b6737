"""Email over SMTP (aiosmtplib): plain text and HTML, with the meeting's calendar entry.

A message's Message-ID comes from its delivery (see `domain.message_id`), so a
copy sent again after a crash carries the same one and mail clients collapse
the two. A calendar entry travels twice, as the iTIP `text/calendar` part of the
alternative (what calendar-aware clients act on) and as an `invite.ics`
attachment (for the rest).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from hashlib import sha256

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


@dataclass(frozen=True)
class Mail:
    """A message ready for SMTP: its envelope and its bytes (RFC 5322, CRLF lines)."""

    sender: str  # MAIL FROM: the bare address
    recipients: tuple[str, ...]
    content: bytes

    @property
    def needs_smtputf8(self) -> bool:
        """An address is not ASCII: only a server offering SMTPUTF8 can take it."""
        return not all(a.isascii() for a in (self.sender, *self.recipients))


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
) -> Mail:
    """The message: text and HTML as alternatives, and with a calendar entry, its iTIP
    part among them and an `invite.ics` (or `cancel.ics`) attached.

    Written here rather than with the stdlib's `email` package, which took two thirds
    of the sender's CPU (its header parsing and folding, some 30 headers a message,
    each parsed again when flattened). The structure is fixed, so the bytes are
    simple: text parts in quoted-printable (readable, 7-bit), the attachment in
    base64, boundaries named after the message (neither encoding can contain "=_",
    so no boundary can occur in a body). A test parses the result with the stdlib and
    compares it with what the stdlib's `EmailMessage` builds.
    """
    headers = [
        ("From", _address(sender)),
        ("To", ",\r\n ".join(_one_line(a) for a in to)),
        ("Subject", _subject(rendered.subject)),
        ("Message-ID", _one_line(message_id)),
        ("Date", format_datetime(date)),
        ("Auto-Submitted", "auto-generated"),
    ]
    # RFC 2369 / RFC 8058: one-click unsubscribe, no login needed.
    if unsubscribe_url:
        headers += [
            ("List-Unsubscribe", f"<{_one_line(unsubscribe_url)}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    headers += [("X-Matchmaking-Kind", _one_line(kind)), ("MIME-Version", "1.0")]
    boundary = "=_" + sha256(message_id.encode()).hexdigest()[:24]
    alternatives = [
        _text_part("plain", rendered.text),
        _text_part("html", rendered.html),
    ]
    if calendar is None:
        body = _multipart("alternative", boundary + "_a", alternatives)
    else:
        method = calendar.method.value
        alternatives.append(_text_part("calendar", calendar.ics.decode(), f'; method="{method}"'))
        filename = "invite.ics" if calendar.method is Method.REQUEST else "cancel.ics"
        attachment = (
            b"Content-Type: application/ics\r\nContent-Transfer-Encoding: base64\r\n"
            + f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n'.encode()
            + base64.encodebytes(calendar.ics).replace(b"\n", b"\r\n")
        )
        inner = _multipart("alternative", boundary + "_a", alternatives)
        body = _multipart("mixed", boundary + "_m", [inner, attachment])
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    return Mail(envelope_sender(sender), tuple(to), head + body)


def _subject(subject: str) -> str:
    """Folded before a space so that lines stay within 78 columns where the words allow;
    not ASCII: in RFC 2047 encoded words, by the stdlib's `Header` (which costs more than
    the rest of the message, so an ASCII subject, the usual one, is folded here)."""
    subject = _one_line(subject)
    if not subject.isascii():
        return Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
    first, *words = subject.split(" ")
    lines = [first]
    width = len("Subject: ")
    for word in words:
        # Folding puts a line break before the space: unfolded, the text is the same.
        if lines[-1].strip() and width + len(lines[-1]) + 1 + len(word) > 78:
            lines.append(word)
            width = 1  # a folded line starts with the space
        else:
            lines[-1] = f"{lines[-1]} {word}"
    return "\r\n ".join(lines)


def _one_line(value: str) -> str:
    """A header value on one line: a line break in a name or a subject (an
    organisation's name is its own to choose) must not start a header of its own."""
    return " ".join(value.splitlines()) if "\n" in value or "\r" in value else value


@lru_cache(maxsize=64)  # the platform's sender, parsed once rather than per message
def _address(sender: str) -> str:
    """`Name <address>`, the name in an RFC 2047 encoded word when not ASCII (an address
    that is not ASCII goes as it is: it needs SMTPUTF8 anyway)."""
    name, address = parseaddr(_one_line(sender))
    if not address.isascii():
        return _one_line(sender)
    return formataddr((name, address), charset="utf-8")


def _text_part(subtype: str, text: str, params: str = "") -> bytes:
    """A text part, UTF-8 in quoted-printable, its lines ending in CRLF."""
    lines = text.replace("\r\n", "\n").encode()
    if not lines.endswith(b"\n"):
        lines += b"\n"  # as the stdlib ends every text part
    encoded = binascii.b2a_qp(lines, istext=True).replace(b"\n", b"\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{params}\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode() + encoded


def _multipart(subtype: str, boundary: str, parts: Sequence[bytes]) -> bytes:
    """A multipart entity (its Content-Type header, a blank line, then its parts)."""
    delimiter = f"\r\n--{boundary}\r\n".encode()
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
        + delimiter[2:]
        + delimiter.join(parts)
        + f"\r\n--{boundary}--\r\n".encode()
    )


@lru_cache(maxsize=64)
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

    async def send(self, msg: Mail) -> None:
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

    async def _send(self, msg: Mail) -> None:
        if not self.is_open:
            await self.close()
            smtp = aiosmtplib.SMTP(
                hostname=self._host, port=self._port, timeout=self._timeout, start_tls=False
            )
            await smtp.connect()
            self._smtp = smtp
            self.opened += 1
        assert self._smtp is not None
        options = ["SMTPUTF8"] if msg.needs_smtputf8 else []
        await self._smtp.sendmail(msg.sender, msg.recipients, msg.content, mail_options=options)

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


async def send(msg: Mail, *, host: str, port: int, timeout_seconds: float) -> None:
    """Send one message on a session of its own."""
    connection = Connection(host=host, port=port, timeout_seconds=timeout_seconds)
    try:
        await connection.send(msg)
    finally:
        await connection.close()
