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
from email.message import EmailMessage
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
    msg = EmailMessage()
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


async def send(msg: EmailMessage, *, host: str, port: int, timeout_seconds: float) -> None:
    try:
        await aiosmtplib.send(
            msg, hostname=host, port=port, timeout=timeout_seconds, start_tls=False
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise SendFailed(f"recipients refused: {exc}", permanent=True) from exc
    except aiosmtplib.SMTPNotSupported as exc:
        # The server lacks what the message needs (SMTPUTF8 for a non-ASCII address):
        # asking it again will not help.
        raise SendFailed(f"not supported by the SMTP server: {exc}", permanent=True) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise SendFailed(f"SMTP {exc.code}: {exc.message}", permanent=exc.code >= 500) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}", permanent=False) from exc
