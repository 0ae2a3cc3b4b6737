"""iCalendar (RFC 5545 / iTIP RFC 5546) entries for meeting messages and the calendar feed.

A meeting keeps one UID for its life; each message about it carries a higher
SEQUENCE, METHOD:REQUEST to add or update the entry and METHOD:CANCEL (with
STATUS:CANCELLED) to remove it. The feed is a plain published calendar (no
METHOD) of a participant's current agenda.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from icalendar import Calendar, Event

from services.notification.domain import CalendarEntry, Method, meeting_uid

PRODID = "-//Matchmaking platform//notification//EN"


@dataclass(frozen=True)
class FeedItem:
    meeting_id: str
    sequence: int
    summary: str
    start: datetime
    end: datetime
    location: str
    stamp: datetime  # when the entry last changed


def _calendar(method: Method | None) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method is not None:
        cal.add("method", method.value)
    return cal


def _event(
    uid: str, sequence: int, summary: str, start: datetime, end: datetime, stamp: datetime
) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    # DTSTAMP: when this version of the entry was made (the domain event's time,
    # not the clock), so a resent message carries the same entry.
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", start.astimezone(UTC))
    event.add("dtend", end.astimezone(UTC))
    event.add("summary", summary)
    return event


def entry_ics(
    entry: CalendarEntry,
    *,
    summary: str,
    location: str,
    organizer: str,
    attendees: Sequence[str] = (),
) -> bytes:
    """The calendar object attached to one meeting message.

    Written here, not with `icalendar` (which `feed_ics` uses): one goes with every
    calendar e-mail, and building it with the library cost a fifth of the sender's CPU
    for such a message. The lines are the ones `icalendar` writes, byte for byte, in its
    order (a test compares the two on generated entries)."""
    status = "CANCELLED" if entry.method is Method.CANCEL else "CONFIRMED"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{_text(PRODID)}",
        "CALSCALE:GREGORIAN",
        f"METHOD:{entry.method.value}",
        "BEGIN:VEVENT",
        f"SUMMARY:{_text(summary)}",
        f"DTSTART:{_utc(entry.start)}",
        f"DTEND:{_utc(entry.end)}",
        f"DTSTAMP:{_utc(entry.stamp)}",
        f"UID:{_text(entry.uid)}",
        f"SEQUENCE:{entry.sequence}",
        *(f"ATTENDEE:mailto:{address}" for address in attendees),
        f"LOCATION:{_text(location)}",
        f"ORGANIZER:mailto:{organizer}",
        f"STATUS:{status}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(_folded(line) + "\r\n" for line in lines).encode()


def _text(value: str) -> str:
    """An RFC 5545 TEXT value, escaped (3.3.11)."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _folded(line: str) -> str:
    """The line folded at 75 octets (RFC 5545 3.1) as `icalendar` folds it: a character
    whose octets would reach the limit starts the next line, and so does a backslash
    that would end one (an escape is not split)."""
    if len(line) < 75 and line.isascii():
        return line
    parts: list[str] = []
    current: list[str] = []
    octets = 0
    for char in line:
        size = len(char.encode())
        if current and octets + size >= 75:
            if len(current) > 1 and current[-1] in "\\^":
                carried = current.pop()
                parts.append("".join(current))
                current, octets = [carried], len(carried.encode())
            else:
                parts.append("".join(current))
                current, octets = [], 0
        current.append(char)
        octets += size
    parts.append("".join(current))
    return "\r\n ".join(parts)


def feed_ics(name: str, items: Sequence[FeedItem]) -> bytes:
    """A participant's whole current agenda, for calendar subscriptions."""
    cal = _calendar(None)
    cal.add("x-wr-calname", name)
    for item in items:
        uid = meeting_uid(item.meeting_id)
        event = _event(uid, item.sequence, item.summary, item.start, item.end, item.stamp)
        event.add("location", item.location)
        event.add("status", "CONFIRMED")
        cal.add_component(event)
    ics: bytes = cal.to_ical()
    return ics
