"""Message texts, pure: a notice's facts and what we know of the people → subject, text, HTML.

Times are shown in the event's time zone, and also in the recipient's own when
it differs. One function per message kind returns the subject and the body's
paragraphs; the plain-text and HTML versions are made from the same paragraphs.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.notification.domain import CalendarEntry, Kind, Method
from shared.contracts.reporting import Rating


@dataclass(frozen=True)
class Link:
    label: str
    url: str


Block = str | Link


@dataclass(frozen=True)
class EventInfo:
    event_id: str
    name: str
    venue: str
    time_zone: str


@dataclass(frozen=True)
class AgendaItem:
    meeting_id: str
    with_name: str
    start: datetime
    end: datetime
    table: int | None
    mode: str


@dataclass(frozen=True)
class RenderInput:
    kind: Kind
    recipient_id: str
    recipient_name: str
    time_zone: str | None  # the recipient's own; None: the event's
    event: EventInfo
    facts: Mapping[str, Any]
    names: Mapping[str, str]  # registration id -> organisation name
    calendar: CalendarEntry | None
    unsubscribe_url: str
    feed_url: str
    agenda: Sequence[AgendaItem] = ()


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def when(start: datetime, end: datetime, event_zone: str, own_zone: str | None) -> str:
    """'Tue 14 Apr 2026, 10:00-10:30 (Europe/Berlin)', plus the recipient's own time."""
    ez = ZoneInfo(event_zone)
    s, e = start.astimezone(ez), end.astimezone(ez)
    text = f"{s:%a %d %b %Y}, {s:%H:%M}-{e:%H:%M} ({event_zone})"
    if own_zone and own_zone != event_zone:
        oz = ZoneInfo(own_zone)
        so, eo = start.astimezone(oz), end.astimezone(oz)
        day = f"{so:%a %d %b} " if so.date() != s.date() else ""
        text += f" - {day}{so:%H:%M}-{eo:%H:%M} your time ({own_zone})"
    return text


def _where(table: int | None, mode: str, venue: str) -> str:
    if mode == "online":
        return "online"
    return f"table {table}, {venue}" if table is not None else venue


def _name(r: RenderInput, registration_id: str | None) -> str:
    if not registration_id:
        return "another participant"
    return r.names.get(registration_id, "another participant")


def _other(r: RenderInput) -> str:
    """The other side of a meeting or request, seen from the recipient."""
    f = r.facts
    people = list(f.get("participants") or [f.get("requester_id"), f.get("recipient_id")])
    others = [p for p in people if p and p != r.recipient_id]
    return _name(r, others[0] if others else None)


def _slot(r: RenderInput, facts: Mapping[str, Any] | None = None) -> str:
    f = facts if facts is not None else r.facts
    start, end = datetime.fromisoformat(f["start"]), datetime.fromisoformat(f["end"])
    at = when(start, end, r.event.time_zone, r.time_zone)
    return f"{at}, {_where(f.get('table'), f.get('mode', 'onsite'), r.event.venue)}"


def _reason(r: RenderInput) -> list[Block]:
    reason = r.facts.get("reason")
    return [f"Reason given: {reason}"] if reason else []


Template = Callable[[RenderInput], tuple[str, list[Block]]]


def _received(r: RenderInput) -> tuple[str, list[Block]]:
    return f"We received your application to {r.event.name}", [
        f"Thank you: {r.recipient_name}'s application to {r.event.name} has arrived.",
        "The organiser reviews applications and we will write again with the decision.",
    ]


def _approved(r: RenderInput) -> tuple[str, list[Block]]:
    return f"You are in: {r.event.name}", [
        f"{r.recipient_name}'s application to {r.event.name} is approved.",
        "You can now ask other participants for meetings.",
        *_reason(r),
    ]


def _rejected(r: RenderInput) -> tuple[str, list[Block]]:
    return f"Your application to {r.event.name}", [
        f"We are sorry: {r.recipient_name}'s application to {r.event.name} was not accepted.",
        *_reason(r),
    ]


def _waitlisted(r: RenderInput) -> tuple[str, list[Block]]:
    return f"You are on the waiting list for {r.event.name}", [
        f"{r.recipient_name} is on the waiting list for {r.event.name}.",
        "We will write again if a place becomes free.",
        *_reason(r),
    ]


def _request_received(r: RenderInput) -> tuple[str, list[Block]]:
    requester = _name(r, r.facts.get("requester_id"))
    expires = datetime.fromisoformat(r.facts["expires_at"])
    zone = ZoneInfo(r.time_zone or r.event.time_zone)
    blocks: list[Block] = [f"{requester} would like to meet you at {r.event.name}."]
    if r.facts.get("message"):
        blocks.append(f"Their message: {r.facts['message']}")
    blocks.append(f"Please answer by {expires.astimezone(zone):%a %d %b %Y, %H:%M} ({zone.key}).")
    return f"{requester} would like to meet you", blocks


def _request_accepted(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    if r.facts.get("arranged_by_organiser"):
        first = f"The organiser of {r.event.name} arranged a meeting for you with {other}."
    else:
        first = f"{other} agreed to meet you at {r.event.name}."
    return f"Meeting agreed with {other}", [
        first,
        "We will write again as soon as it has a time and a place.",
    ]


def _request_declined(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"{other} declined your meeting request", [
        f"{other} cannot meet you at {r.event.name}.",
        *_reason(r),
    ]


def _request_cancelled(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"Meeting request from {other} withdrawn", [
        f"The meeting request between you and {other} at {r.event.name} was withdrawn.",
        *_reason(r),
    ]


def _request_expired(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"Your meeting request to {other} expired", [
        f"{other} did not answer your meeting request in time, so it has expired.",
        "You are free to ask someone else for that time.",
    ]


def _meeting_cancelled(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    by_you = r.facts.get("cancelled_by") == r.recipient_id
    first = (
        f"You cancelled your meeting with {other}."
        if by_you
        else f"Your meeting with {other} at {r.event.name} is cancelled."
    )
    blocks: list[Block] = [first, *_reason(r)]
    if r.calendar is not None:
        blocks.append(f"It was planned for {_slot(r)}; the calendar entry is removed.")
    return f"Cancelled: meeting with {other}", blocks


def _placed(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"Meeting with {other}: {_slot(r)}", [
        f"Your meeting with {other} at {r.event.name} is scheduled:",
        _slot(r),
        "The attached calendar entry adds it to your calendar.",
    ]


def _moved(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"Moved: meeting with {other}, now {_slot(r)}", [
        f"Your meeting with {other} at {r.event.name} has moved.",
        f"New time: {_slot(r)}",
        f"It was: {_slot(r, r.facts['previous'])}",
        "The attached calendar entry updates the one you have.",
    ]


def _released(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"Unscheduled: meeting with {other}", [
        f"Your meeting with {other} at {r.event.name} no longer has a time slot.",
        f"It was planned for {_slot(r)}; the calendar entry is removed.",
        "The meeting is still agreed; we will write again if it is placed anew.",
    ]


def _unschedulable(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"No time found for your meeting with {other}", [
        f"We could not find a time for your meeting with {other} at {r.event.name}.",
        *_reason(r),
        "The organiser has been told and may arrange it by hand.",
    ]


def _agenda_line(r: RenderInput, item: AgendaItem) -> str:
    at = when(item.start, item.end, r.event.time_zone, r.time_zone)
    return f"{at}: {item.with_name}, {_where(item.table, item.mode, r.event.venue)}"


def _agenda(r: RenderInput) -> tuple[str, list[Block]]:
    lines: list[Block] = [f"The agenda of {r.event.name} is published."]
    if r.agenda:
        lines.append("Your meetings:")
        lines.extend(_agenda_line(r, item) for item in r.agenda)
    else:
        lines.append("You have no meetings scheduled yet.")
    lines.append(Link("Subscribe to your calendar feed (always current)", r.feed_url))
    return f"Your agenda for {r.event.name}", lines


def _reminder(r: RenderInput) -> tuple[str, list[Block]]:
    other = _other(r)
    return f"Reminder: meeting with {other}, {_slot(r)}", [
        f"A reminder of your meeting with {other} at {r.event.name}:",
        _slot(r),
    ]


# How a participant rates a meeting at reporting's endpoint, in plain words.
RATING_WORDS = {
    Rating.DID_NOT_TAKE_PLACE: "the meeting did not take place",
    Rating.NO_INTEREST: "no interest",
    Rating.INFORMATIVE_NO_COOPERATION: "informative, but no cooperation in sight",
    Rating.COOPERATION_POSSIBLE: "cooperation possible",
}


def _feedback_invitation(r: RenderInput) -> tuple[str, list[Block]]:
    # The round carries the event's name and zone as reporting knew them, so the
    # message reads right even before registration's events have reached us.
    f = r.facts
    name = f.get("event_title") or r.event.name
    zone = f.get("time_zone") or r.event.time_zone
    meetings = f.get("meetings", [])
    count = f"{len(meetings)} meeting{'s' if len(meetings) != 1 else ''}"
    subject = f"How did your meetings at {name} go?"
    if f.get("round", 1) > 1:
        subject = f"Reminder: {subject[0].lower()}{subject[1:]}"
    blocks: list[Block] = [
        f"The organiser of {name} asks you to rate your {count} there:",
    ]
    for m in meetings:
        at = when(
            datetime.fromisoformat(m["start"]), datetime.fromisoformat(m["end"]), zone, r.time_zone
        )
        blocks.append(f"{at}: {m['partner_name']} - rate it at {m['feedback_url']}")
    ratings = "; ".join(f'"{k.value}" ({words})' for k, words in RATING_WORDS.items())
    if meetings and "/api/" not in meetings[0]["feedback_url"]:  # the web portal's pages
        return subject, [
            *blocks,
            "Open a meeting's link, sign in with your organisation's key if asked, and choose"
            " a rating: one click per meeting.",
            "Rating again replaces your earlier rating. Your answers go into the event's report.",
        ]
    blocks += [
        "To rate a meeting, POST to its address with your organisation's API key"
        ' (X-API-Key header) a JSON body such as {"rating": "cooperation_possible",'
        ' "comment": "optional"}. The rating is one of: ' + ratings + ".",
        "Rating again replaces your earlier rating. Your answers go into the event's report.",
    ]
    return subject, blocks


_ASSIGNED = {
    "participant": "It chose your office when registering.",
    "country_rule": "The event's rule for its country assigned it to your office.",
}


def _office_registration(r: RenderInput) -> tuple[str, list[Block]]:
    f = r.facts
    who = f.get("organisation") or _name(r, f.get("registration_id"))
    return f"{who} registered for {r.event.name}", [
        f"{who} registered for {r.event.name} and belongs to your office.",
        _ASSIGNED.get(f.get("assigned_by", ""), "It was assigned to your office."),
        "You can review and validate its registration with your co-organiser key.",
    ]


def _sign_in_link(r: RenderInput) -> tuple[str, list[Block]]:
    expires = datetime.fromisoformat(r.facts["expires_at"]).astimezone(ZoneInfo("UTC"))
    return f"Sign in to {r.event.name}", [
        f"Someone, we hope you, asked to sign in to {r.event.name} as {r.recipient_name}.",
        Link("Sign in", r.facts["url"]),
        f"The link works once, until {expires:%H:%M} UTC on {expires:%d %b %Y}."
        " If you did not ask for it, ignore this e-mail: nothing happens without the link.",
    ]


TEMPLATES: dict[Kind, Template] = {
    Kind.SIGN_IN_LINK: _sign_in_link,
    Kind.APPLICATION_RECEIVED: _received,
    Kind.APPLICATION_APPROVED: _approved,
    Kind.APPLICATION_REJECTED: _rejected,
    Kind.APPLICATION_WAITLISTED: _waitlisted,
    Kind.REQUEST_RECEIVED: _request_received,
    Kind.REQUEST_ACCEPTED: _request_accepted,
    Kind.REQUEST_DECLINED: _request_declined,
    Kind.REQUEST_CANCELLED: _request_cancelled,
    Kind.REQUEST_EXPIRED: _request_expired,
    Kind.MEETING_CANCELLED: _meeting_cancelled,
    Kind.MEETING_PLACED: _placed,
    Kind.MEETING_MOVED: _moved,
    Kind.MEETING_RELEASED: _released,
    Kind.MEETING_UNSCHEDULABLE: _unschedulable,
    Kind.AGENDA_PUBLISHED: _agenda,
    Kind.MEETING_REMINDER: _reminder,
    Kind.FEEDBACK_INVITATION: _feedback_invitation,
    Kind.OFFICE_REGISTRATION: _office_registration,
}


def _footer(r: RenderInput) -> list[Block]:
    blocks: list[Block] = []
    if r.calendar is not None and r.calendar.method is Method.REQUEST:
        blocks.append(Link("Your calendar feed (always current)", r.feed_url))
    if r.unsubscribe_url:  # a co-organiser's notices have none: they come with the role
        blocks.append(Link("Unsubscribe from these emails", r.unsubscribe_url))
    return blocks


_HTML_HEAD = '<!doctype html><html><head><meta charset="utf-8"></head><body>'
_HTML_TAIL = "</body></html>"


def _text(blocks: Sequence[Block]) -> str:
    return "\n\n".join(f"{b.label}: {b.url}" if isinstance(b, Link) else b for b in blocks)


def _html(blocks: Sequence[Block]) -> str:
    def one(b: Block) -> str:
        if isinstance(b, Link):
            return f'<p><a href="{html.escape(b.url)}">{html.escape(b.label)}</a></p>'
        return f"<p>{html.escape(b)}</p>"

    return _HTML_HEAD + "".join(one(b) for b in blocks) + _HTML_TAIL


def calendar_summary(r: RenderInput) -> str:
    """The calendar entry's title."""
    return f"Meeting with {_other(r)} ({r.event.name})"


def render(r: RenderInput, *, standalone: bool = True) -> Rendered:
    """The message; without `standalone`, no greeting or footer (a part of a digest)."""
    subject, body = TEMPLATES[r.kind](r)
    blocks = [f"Dear {r.recipient_name},", *body, *_footer(r)] if standalone else body
    return Rendered(subject=subject, text=_text(blocks) + "\n", html=_html(blocks))


def render_digest(
    recipient_name: str, event_name: str, parts: Sequence[Rendered], unsubscribe_url: str
) -> Rendered:
    """Several messages of one day in one email (the daily digest preference)."""
    subject = f"{event_name}: {len(parts)} update{'s' if len(parts) != 1 else ''}"
    head: list[Block] = [f"Dear {recipient_name},", "Here is what happened since yesterday."]
    foot: list[Block] = [Link("Unsubscribe from these emails", unsubscribe_url)]
    texts = [_text(head), *(f"== {p.subject} ==\n\n{p.text}" for p in parts), _text(foot)]
    inner = "".join(f"<h2>{html.escape(p.subject)}</h2>{_inner(p.html)}" for p in parts)
    body = _inner(_html(head)) + inner + _inner(_html(foot))
    return Rendered(
        subject=subject,
        text="\n\n".join(t.rstrip("\n") for t in texts) + "\n",
        html=f"{_HTML_HEAD}{body}{_HTML_TAIL}",
    )


def _inner(document: str) -> str:
    return document.removeprefix(_HTML_HEAD).removesuffix(_HTML_TAIL)
