"""Rendering, iCalendar entries, the email's MIME shape, and Standard Webhooks signatures."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default
from typing import Any, cast

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notification.channels import calendar, email, webhooks
from services.notification.domain import CalendarEntry, Kind, Method, meeting_uid
from services.notification.templates import (
    AgendaItem,
    EventInfo,
    Rendered,
    RenderInput,
    render,
    render_digest,
    when,
)

EVENT = EventInfo("ev-1", "Cluster Matchmaking <Hannover>", "Hall 2", "Europe/Berlin")
START = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)  # 10:00 in Berlin
STAMP = datetime(2026, 4, 1, tzinfo=UTC)


def entry(method: Method = Method.REQUEST, sequence: int = 0) -> CalendarEntry:
    return CalendarEntry(
        uid=meeting_uid("req-1"),
        sequence=sequence,
        method=method,
        start=START,
        end=START + timedelta(minutes=30),
        table=4,
        mode="onsite",
        stamp=STAMP,
    )


def placed_input(**changes: Any) -> RenderInput:
    values: dict[str, Any] = {
        "kind": Kind.MEETING_PLACED,
        "recipient_id": "a",
        "recipient_name": "Alpha Cluster",
        "time_zone": None,
        "event": EVENT,
        "facts": {
            "participants": ["a", "b"],
            "start": START.isoformat(),
            "end": (START + timedelta(minutes=30)).isoformat(),
            "table": 4,
            "mode": "onsite",
        },
        "names": {"a": "Alpha Cluster", "b": "Beta & Co"},
        "calendar": entry(),
        "unsubscribe_url": "https://n.example/unsubscribe/t",
        "feed_url": "https://n.example/calendar/f.ics",
    }
    values.update(changes)
    return RenderInput(**values)


def test_times_in_the_events_zone_and_the_recipients_own() -> None:
    end = START + timedelta(minutes=30)
    assert when(START, end, "Europe/Berlin", None) == "Tue 14 Apr 2026, 10:00-10:30 (Europe/Berlin)"
    both = when(START, end, "Europe/Berlin", "America/New_York")
    assert both.endswith("04:00-04:30 your time (America/New_York)")
    far = when(START, end, "Europe/Berlin", "Pacific/Auckland")
    assert "Tue 14 Apr" in far and "20:00-20:30 your time" in far


def test_placed_message_names_the_other_side_time_and_place_and_escapes_html() -> None:
    out = render(placed_input(time_zone="Europe/London"))
    assert out.subject.startswith("Meeting with Beta & Co: Tue 14 Apr 2026, 10:00-10:30")
    assert "09:00-09:30 your time (Europe/London)" in out.text
    assert "table 4, Hall 2" in out.text
    assert "https://n.example/unsubscribe/t" in out.text
    assert "https://n.example/calendar/f.ics" in out.text
    assert "Beta &amp; Co" in out.html and "Beta & Co" not in out.html
    assert "&lt;Hannover&gt;" in out.html


def test_every_kind_renders() -> None:
    facts = {
        "participants": ["a", "b"],
        "requester_id": "b",
        "recipient_id": "a",
        "start": START.isoformat(),
        "end": (START + timedelta(minutes=30)).isoformat(),
        "table": None,
        "mode": "online",
        "previous": {
            "start": (START - timedelta(hours=1)).isoformat(),
            "end": START.isoformat(),
            "table": None,
            "mode": "online",
        },
        "expires_at": START.isoformat(),
        "reason": "overbooked",
        "message": "Let us talk about lasers",
        "url": "https://portal.example/signin/link?token=t.k",
    }
    agenda = [AgendaItem("m", "Beta & Co", START, START + timedelta(minutes=30), 3, "onsite")]
    for kind in Kind:
        out = render(placed_input(kind=kind, facts=facts, agenda=agenda))
        assert out.subject and "Dear Alpha Cluster," in out.text, kind
    requested = render(placed_input(kind=Kind.REQUEST_RECEIVED, facts=facts))
    assert "Let us talk about lasers" in requested.text
    sign_in = render(placed_input(kind=Kind.SIGN_IN_LINK, facts=facts))
    assert "https://portal.example/signin/link?token=t.k" in sign_in.text
    assert "works once, until" in sign_in.text
    assert "Please answer by Tue 14 Apr 2026, 10:00 (Europe/Berlin)" in requested.text
    published = render(placed_input(kind=Kind.AGENDA_PUBLISHED, facts=facts, agenda=agenda))
    assert "10:00-10:30 (Europe/Berlin): Beta & Co, table 3, Hall 2" in published.text


def test_digest_gathers_parts_without_their_greetings() -> None:
    parts = [
        render(placed_input(kind=Kind.APPLICATION_APPROVED, facts={}), standalone=False),
        render(placed_input(kind=Kind.APPLICATION_RECEIVED, facts={}), standalone=False),
    ]
    out = render_digest("Alpha Cluster", "Fair", parts, "https://u")
    assert out.subject == "Fair: 2 updates"
    assert out.text.count("Dear Alpha Cluster") == 1
    assert all(p.subject in out.text and html.escape(p.subject) in out.html for p in parts)


def _vevent(ics: bytes, method: str) -> Any:
    cal = icalendar.Calendar.from_ical(ics)
    assert str(cal["METHOD"]) == method
    (event,) = cal.walk("VEVENT")
    return event


def test_calendar_entries_update_and_cancel_one_uid() -> None:
    made = calendar.entry_ics(
        entry(), summary="Meeting", location="Table 4", organizer="n@x.org", attendees=["a@x.org"]
    )
    gone = calendar.entry_ics(
        entry(Method.CANCEL, 2), summary="Meeting", location="Table 4", organizer="n@x.org"
    )
    first, last = _vevent(made, "REQUEST"), _vevent(gone, "CANCEL")
    assert str(first["UID"]) == str(last["UID"]) == "meeting-req-1@meetings.matchmaking"
    assert (int(first["SEQUENCE"]), int(last["SEQUENCE"])) == (0, 2)
    assert (str(first["STATUS"]), str(last["STATUS"])) == ("CONFIRMED", "CANCELLED")
    assert first.decoded("DTSTART") == START
    assert first.decoded("DTSTAMP") == STAMP
    assert str(first["ATTENDEE"]) == "mailto:a@x.org"


def test_feed_lists_the_agenda() -> None:
    item = calendar.FeedItem(
        "req-1", 3, "Meeting", START, START + timedelta(minutes=30), "T", STAMP
    )
    cal = icalendar.Calendar.from_ical(calendar.feed_ics("Fair: Alpha", [item]))
    assert "METHOD" not in cal
    (event,) = cal.walk("VEVENT")
    assert str(event["UID"]) == meeting_uid("req-1") and str(event["SEQUENCE"]) == "3"


def test_email_carries_text_html_and_the_calendar_twice() -> None:
    ics = calendar.entry_ics(entry(), summary="M", location="T", organizer="n@x.org")
    msg = email.build(
        sender="Matchmaking <noreply@x.org>",
        to=["a@example.org", "b@example.org"],
        rendered=render(placed_input()),
        message_id="<abc@x.org>",
        date=STAMP,
        unsubscribe_url="https://u",
        kind="meeting.placed",
        calendar=email.Calendar(Method.REQUEST, ics),
    )
    parsed: Message = message_from_bytes(msg.content)
    assert parsed["Message-ID"] == "<abc@x.org>"
    assert parsed["List-Unsubscribe"] == "<https://u>"
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
        "application/ics",
    ]
    cal_part = next(p for p in parsed.walk() if p.get_content_type() == "text/calendar")
    assert cal_part.get_param("method") == "REQUEST"
    assert email.mail_domain("Matchmaking <noreply@x.org>") == "x.org"


def test_webhook_signature_matches_a_vector_computed_by_hand() -> None:
    # Computed independently with openssl, following the Standard Webhooks spec:
    #   key = base64-decode of the secret after "whsec_"
    #   printf '%s' 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' \
    #     | openssl dgst -sha256 -mac HMAC -macopt hexkey:<key as hex> -binary | base64
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert webhooks.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    headers = webhooks.headers(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert headers["webhook-timestamp"] == "1614265330"
    assert headers["webhook-signature"] == expected
    assert webhooks.signature(secret, "msg_other", 1614265330, body) != expected
    assert webhooks.new_secret().startswith("whsec_")


async def test_a_server_without_smtputf8_fails_a_non_ascii_address_for_good() -> None:
    """A real SMTP server that does not offer SMTPUTF8: the address cannot go through it,
    however often it is tried, so the failure is permanent (not retried)."""
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    with socket.socket() as probe:  # a free port (aiosmtpd does not report one it chose)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    try:
        msg = _message("Meeting placed", to="kontakt@gdańsk-energy.example")
        assert msg.needs_smtputf8
        with pytest.raises(email.SendFailed) as failed:
            await email.send(msg, host="127.0.0.1", port=port, timeout_seconds=5)
        assert failed.value.permanent, failed.value
    finally:
        controller.stop()


class _Inbox:
    """An aiosmtpd handler that keeps what arrives and refuses `refused@...` addresses."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, str]] = []  # (peer, Subject)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("refused@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        subject = message_from_bytes(envelope.content)["Subject"]
        self.messages.append((session.peer, subject))
        return "250 OK"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:  # aiosmtpd does not report a port it chose
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _message(subject: str, to: str = "rep@example.org") -> email.Mail:
    return email.build(
        sender="platform@example.org",
        to=[to],
        rendered=Rendered(subject, "Table 4, 10:30", "<p>Table 4, 10:30</p>"),
        message_id=f"<{subject}@example.org>",
        date=STAMP,
        unsubscribe_url=None,
        kind="test",
    )


async def test_one_session_carries_many_messages_and_survives_a_refused_one() -> None:
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    session = email.Connection(host="127.0.0.1", port=port, timeout_seconds=5)
    try:
        await session.send(_message("one"))
        with pytest.raises(email.SendFailed) as refused:
            await session.send(_message("lost", to="refused@example.org"))
        assert refused.value.permanent
        await session.send(_message("two"))
        assert session.opened == 1 and session.is_open
        assert [subject for _, subject in inbox.messages] == ["one", "two"]
        assert len({peer for peer, _ in inbox.messages}) == 1  # one TCP connection
    finally:
        await session.close()
        controller.stop()
    assert not session.is_open


async def test_a_session_the_server_dropped_is_replaced_and_the_message_goes() -> None:
    """The server restarts between two messages: the kept session is dead, the next
    message goes on a new one, once; while no server listens, sending fails (to be
    retried), and the session after that works again."""
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    session = email.Connection(host="127.0.0.1", port=port, timeout_seconds=5)
    try:
        await session.send(_message("before"))
        controller.stop()  # closes the session from the server's side
        with pytest.raises(email.SendFailed) as down:
            await session.send(_message("while down"))
        assert not down.value.permanent
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        await session.send(_message("after"))
        await session.send(_message("after, same session"))
        assert [subject for _, subject in inbox.messages] == [
            "before",
            "after",
            "after, same session",
        ]
        assert session.opened == 2
        assert inbox.messages[1][0] == inbox.messages[2][0]
    finally:
        await session.close()
        controller.stop()


async def test_a_kept_session_closed_by_the_server_is_retried_at_once() -> None:
    """The server closed the idle session (its timeout) but is up: the message goes on
    a new session within the same `send`, not after a retry's backoff."""
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    session = email.Connection(host="127.0.0.1", port=port, timeout_seconds=5)
    try:
        await session.send(_message("first"))
        controller.stop()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        await session.send(_message("second"))
        assert [subject for _, subject in inbox.messages] == ["first", "second"]
        assert session.opened == 2
    finally:
        await session.close()
        controller.stop()


def _stdlib_build(
    to: list[str], rendered: Rendered, calendar_part: email.Calendar | None
) -> EmailMessage:
    """The message as the stdlib's `EmailMessage` builds it (what `email.build` did
    before it wrote the bytes itself): the reference it is compared with."""
    from email.utils import format_datetime

    msg = EmailMessage()
    msg["From"] = "Plattform Größe <noreply@x.org>"
    msg["To"] = ", ".join(to)
    msg["Subject"] = rendered.subject
    msg["Message-ID"] = "<abc@x.org>"
    msg["Date"] = format_datetime(STAMP)
    msg["Auto-Submitted"] = "auto-generated"
    msg["List-Unsubscribe"] = "<https://u>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Matchmaking-Kind"] = "meeting.placed"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    if calendar_part is not None:
        method = calendar_part.method.value
        msg.add_alternative(
            calendar_part.ics.decode(), subtype="calendar", params={"method": method}
        )
        msg.add_attachment(
            calendar_part.ics, maintype="application", subtype="ics", filename="invite.ics"
        )
    policy: Any = msg.policy  # typeshed's clone() does not know EmailPolicy's fields
    return _parse(msg.as_bytes(policy=policy.clone(utf8=True)))


def _parse(raw: bytes) -> EmailMessage:
    """As a mail client reads it (the stdlib's parser, its modern policy)."""
    return message_from_bytes(raw, policy=default)


def _outline(msg: EmailMessage) -> list[Any]:
    """What a mail client sees of a message: its headers (decoded) and, per part, the
    content type with its parameters, the file name, and the decoded content."""
    headers = sorted(
        (k, str(v)) for k, v in msg.items() if k not in ("Content-Type", "MIME-Version")
    )
    parts = []
    for part in cast(list[EmailMessage], list(msg.walk())):
        params = {k: v for k, v in part.get_params() or [] if k not in ("boundary", "charset")}
        content = None if part.is_multipart() else part.get_content()
        if isinstance(content, str):
            content = content.replace("\r\n", "\n")
        parts.append((part.get_content_type(), params, part.get_filename(), content))
    return [headers, parts]


@pytest.mark.parametrize(
    ("with_calendar", "subject"),
    [
        (True, "Meeting placed: Größe " + "long subject " * 8),
        (False, "Meeting placed: Alpha Cluster and Beta & Co, " + "an ASCII subject " * 6),
        (False, "Short: " + "x" * 90 + " y"),
    ],
)
def test_the_written_message_reads_as_the_stdlib_would_have_built_it(
    with_calendar: bool, subject: str
) -> None:
    """`email.build` writes the bytes itself: a mail client (the stdlib's parser) reads
    the same headers, parts and contents as from the stdlib's own `EmailMessage`,
    non-ASCII names and subjects, long lines and an address needing SMTPUTF8 included."""
    ics = calendar.entry_ics(entry(), summary="Café", location="T", organizer="n@x.org")
    cal = email.Calendar(Method.REQUEST, ics) if with_calendar else None
    to = ["a@example.org", "kontakt@gdańsk.example"]
    placed = render(placed_input())
    long_text = placed.text + "\n" + "Größe = " * 40 + "\n.\nend"
    rendered = Rendered(subject, long_text, placed.html)
    mail = email.build(
        sender="Plattform Größe <noreply@x.org>",
        to=to,
        rendered=rendered,
        message_id="<abc@x.org>",
        date=STAMP,
        unsubscribe_url="https://u",
        kind="meeting.placed",
        calendar=cal,
    )
    assert mail.sender == "noreply@x.org" and mail.recipients == tuple(to)
    assert mail.needs_smtputf8
    assert all(len(line) <= 998 for line in mail.content.split(b"\r\n"))
    assert b"\n" not in mail.content.replace(b"\r\n", b"")  # CRLF line ends only
    assert _outline(_parse(mail.content)) == _outline(_stdlib_build(to, rendered, cal))


def test_a_line_break_in_a_subject_or_name_starts_no_header_of_its_own() -> None:
    mail = email.build(
        sender="Evil\r\nBcc: victim@example.org <noreply@x.org>",
        to=["a@example.org"],
        rendered=Rendered("Hi\r\nBcc: victim@example.org", "t", "<p>t</p>"),
        message_id="<abc@x.org>",
        date=STAMP,
        unsubscribe_url=None,
        kind="test",
    )
    parsed = _parse(mail.content)
    assert "Bcc" not in parsed and parsed["Subject"] == "Hi Bcc: victim@example.org"


def _library_entry_ics(
    entry: CalendarEntry, *, summary: str, location: str, organizer: str, attendees: list[str]
) -> bytes:
    """The calendar object as `icalendar` builds it (what `entry_ics` did before it wrote
    the lines itself): the reference it is compared with."""
    cal = icalendar.Calendar()
    cal.add("prodid", calendar.PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", entry.method.value)
    event = icalendar.Event()
    event.add("uid", entry.uid)
    event.add("sequence", entry.sequence)
    event.add("dtstamp", entry.stamp.astimezone(UTC))
    event.add("dtstart", entry.start.astimezone(UTC))
    event.add("dtend", entry.end.astimezone(UTC))
    event.add("summary", summary)
    event.add("location", location)
    event.add("organizer", f"mailto:{organizer}")
    for address in attendees:
        event.add("attendee", f"mailto:{address}")
    event.add("status", "CANCELLED" if entry.method is Method.CANCEL else "CONFIRMED")
    cal.add_component(event)
    ics: bytes = cal.to_ical()
    return ics


# icalendar turns a literal backslash-N into a line break (its own quirk, not RFC 5545):
# texts with one are left out of the comparison.
_TEXTS = st.text(min_size=0, max_size=200).filter(lambda t: "\\N" not in t)
_ADDRESSES = st.lists(st.emails().map(str), max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    summary=_TEXTS,
    location=_TEXTS,
    attendees=_ADDRESSES,
    method=st.sampled_from(Method),
    sequence=st.integers(min_value=0, max_value=10_000),
    offset_minutes=st.integers(min_value=-10_000_000, max_value=10_000_000),
)
def test_a_meeting_entry_is_the_library_s_bytes(
    summary: str,
    location: str,
    attendees: list[str],
    method: Method,
    sequence: int,
    offset_minutes: int,
) -> None:
    """`entry_ics` writes the lines itself: the same bytes as `icalendar` for any texts
    (escapes, non-ASCII, long lines folded at 75 octets), addresses and times."""
    start = START + timedelta(minutes=offset_minutes, microseconds=offset_minutes % 999)
    one = CalendarEntry(
        uid=meeting_uid(f"req-{sequence}"),
        sequence=sequence,
        method=method,
        start=start,
        end=start + timedelta(minutes=30),
        table=None,
        mode="online",
        stamp=STAMP + timedelta(seconds=sequence),
    )
    options: dict[str, Any] = {
        "summary": summary,
        "location": location,
        "organizer": "noreply@x.org",
        "attendees": attendees,
    }
    assert calendar.entry_ics(one, **options) == _library_entry_ics(one, **options)
