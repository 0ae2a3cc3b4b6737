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
    """The calendar object attached to one meeting message."""
    cal = _calendar(entry.method)
    event = _event(entry.uid, entry.sequence, summary, entry.start, entry.end, entry.stamp)
    event.add("location", location)
    event.add("organizer", f"mailto:{organizer}")
    for address in attendees:
        event.add("attendee", f"mailto:{address}")
    event.add("status", "CANCELLED" if entry.method is Method.CANCEL else "CONFIRMED")
    cal.add_component(event)
    ics: bytes = cal.to_ical()
    return ics


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
