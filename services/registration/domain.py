"""Registration's rules, pure: no I/O, no clock, no randomness passed in implicitly.

Aggregates are rebuilt from their events (`apply`); decisions check the rules
against that state and return the new events, or raise `RuleViolation` naming
the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry

from shared.access.policy import RegistrationStatus
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    DECISIONS,
    EDITABLE_SETTINGS,
    REGISTERED_BY_TYPE,
    AssignedBy,
    BrokerageEventCreated,
    CoOrganiserAdded,
    CoOrganiserRemoved,
    DecisionBase,
    EventSettingsChanged,
    OrganisationProfile,
    ParticipantAssignedToSupportOffice,
    PersonalDataErased,
    ProfileUpdated,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
    Session,
    SideProgrammeItemAdded,
    SideProgrammeJoined,
)
from shared.dispatch import StateChanges
from shared.errors import Conflict, RuleViolation

# -- brokerage events ---------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    start: datetime  # aware, in the event's time zone
    end: datetime


def slot_grid(event: BrokerageEventCreated) -> list[Slot]:
    """Every meeting slot of the event, in order."""
    zone = ZoneInfo(event.time_zone)
    step = timedelta(minutes=event.slot_minutes)
    slots = []
    for day in event.days:
        for session in event.sessions:
            start = datetime.combine(day, session.start, zone)
            end = datetime.combine(day, session.end, zone)
            while start + step <= end:
                slots.append(Slot(start, start + step))
                start += step
    return slots


def check_new_event(event: BrokerageEventCreated) -> BrokerageEventCreated:
    """Validate a brokerage event's definition; return it unchanged when sound."""
    if not event.name.strip():
        raise RuleViolation("name", "must not be empty")
    try:
        ZoneInfo(event.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleViolation("time_zone", f"unknown IANA time zone {event.time_zone!r}") from exc
    if not event.days:
        raise RuleViolation("days", "at least one day is needed")
    if len(set(event.days)) != len(event.days):
        raise RuleViolation("days", "a day is listed twice")
    if not event.sessions:
        raise RuleViolation("sessions", "at least one session is needed")
    if not 5 <= event.slot_minutes <= 240:
        raise RuleViolation("slot_minutes", "must be between 5 and 240 minutes")
    _check_sessions(event.sessions, event.slot_minutes)
    if event.tables < 0:
        raise RuleViolation("tables", "must not be negative")
    if not event.meeting_types:
        raise RuleViolation("meeting_types", "at least one meeting type is needed")
    if event.registration_deadline.tzinfo is None:
        raise RuleViolation("registration_deadline", "needs a time zone offset")
    last_day_end = datetime.combine(max(event.days), time.max, ZoneInfo(event.time_zone))
    if event.registration_deadline > last_day_end:
        raise RuleViolation("registration_deadline", "is after the event's last day")
    if event.max_meetings_per_participant is not None and event.max_meetings_per_participant < 1:
        raise RuleViolation("max_meetings_per_participant", "must be at least 1")
    if event.request_expiry_hours < 1:
        raise RuleViolation("request_expiry_hours", "must be at least 1")
    _check_support_offices(event)
    return event


def current_settings(events: list[EventPayload]) -> BrokerageEventCreated:
    """The event as it stands: its creation with every later settings change applied
    (a change carries all editable settings, so the last one wins)."""
    created = events[0]
    assert isinstance(created, BrokerageEventCreated)
    for event in events[1:]:
        if isinstance(event, EventSettingsChanged):
            settings = event.model_dump(include=set(EDITABLE_SETTINGS))
            created = BrokerageEventCreated.model_validate({**created.model_dump(), **settings})
    return created


# Settings that shape the slot grid: fixed once the event has begun (meetings are held).
GRID_SETTINGS = ("days", "sessions", "slot_minutes")


def change_settings(
    event: BrokerageEventCreated, changes: dict[str, object], *, now: datetime
) -> EventSettingsChanged:
    """The organiser's new settings, checked with the rules of a new event. Meetings placed
    in slots or at tables that no longer exist are moved by scheduling (it knows them)."""
    unknown = sorted(set(changes) - set(EDITABLE_SETTINGS))
    if unknown:
        raise RuleViolation(unknown[0], "cannot be changed after the event is created")
    before = event.model_dump(include=set(EDITABLE_SETTINGS))
    after = BrokerageEventCreated.model_validate({**event.model_dump(), **changes})
    now_settings = after.model_dump(include=set(EDITABLE_SETTINGS))
    changed = [name for name in EDITABLE_SETTINGS if before[name] != now_settings[name]]
    if not changed:
        raise Conflict("settings", "nothing would change")
    zone = ZoneInfo(event.time_zone)
    begun = now >= datetime.combine(min(event.days), time.min, zone)
    for name in GRID_SETTINGS:
        if begun and name in changed:
            raise Conflict(name, "the event has begun: its days and slots can no longer change")
    check_new_event(after)
    return EventSettingsChanged(event_id=event.event_id, changed=changed, **now_settings)


def _check_support_offices(event: BrokerageEventCreated) -> None:
    seen_ids: set[str] = set()
    seen_countries: set[str] = set()
    for index, office in enumerate(event.support_offices):
        where = f"support_offices[{index}]"
        if not office.office_id.strip() or not office.name.strip():
            raise RuleViolation(where, "needs an office_id and a name")
        if office.office_id in seen_ids:
            raise RuleViolation(f"{where}.office_id", "is used twice")
        seen_ids.add(office.office_id)
        for country in office.countries:
            if pycountry.countries.get(alpha_2=country.upper()) is None:
                raise RuleViolation(f"{where}.countries", f"{country!r} is not an ISO 3166-1 code")
            if country.upper() in seen_countries:
                raise RuleViolation(f"{where}.countries", f"{country} is given to two offices")
            seen_countries.add(country.upper())


def _check_sessions(sessions: list[Session], slot_minutes: int) -> None:
    ordered = sorted(sessions, key=lambda s: s.start)
    for index, session in enumerate(ordered):
        name = f"sessions[{sessions.index(session)}]"
        if session.end <= session.start:
            raise RuleViolation(name, "ends before it starts (sessions cannot cross midnight)")
        minutes = _minutes(session.end) - _minutes(session.start)
        if minutes < slot_minutes:
            raise RuleViolation(name, f"is shorter than one {slot_minutes}-minute slot")
        if minutes % slot_minutes:
            raise RuleViolation(
                name, f"lasts {minutes} minutes, not a whole number of {slot_minutes}-minute slots"
            )
        if index and ordered[index - 1].end > session.start:
            raise RuleViolation(name, "overlaps the session before it")


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


# -- registrations ------------------------------------------------------------


Status = RegistrationStatus
Decision = type[
    RegistrationApproved | RegistrationRejected | RegistrationWaitlisted | RegistrationWithdrawn
]


# Which decision may follow which status. Rejected organisations can be
# reconsidered; withdrawn ones have left and must register again.
ALLOWED: dict[Decision, set[Status]] = {
    RegistrationApproved: {Status.PENDING, Status.WAITLISTED, Status.REJECTED},
    RegistrationRejected: {Status.PENDING, Status.WAITLISTED, Status.APPROVED},
    RegistrationWaitlisted: {Status.PENDING, Status.REJECTED},
    RegistrationWithdrawn: {Status.PENDING, Status.WAITLISTED, Status.APPROVED, Status.REJECTED},
}


@dataclass
class Registration:
    registration_id: str = ""
    event_id: str = ""
    status: Status | None = None
    profile: OrganisationProfile | None = None
    office_id: str | None = None
    erased: bool = False
    version: int = 0
    history: list[str] = field(default_factory=list)

    def apply(self, event: EventPayload) -> None:
        self.version += 1
        CHANGES.apply(self, event)
        self.history.append(event.event_name)


CHANGES = StateChanges[Registration]()


@CHANGES.on(*REGISTERED_BY_TYPE.values())
def _registered(registration: Registration, event: RegisteredBase) -> None:
    registration.registration_id = event.registration_id
    registration.event_id = event.event_id
    registration.profile = event.profile
    registration.status = Status.PENDING


@CHANGES.on(ProfileUpdated)
def _profile_updated(registration: Registration, event: ProfileUpdated) -> None:
    registration.profile = event.profile


@CHANGES.on(PersonalDataErased)
def _erased(registration: Registration, _: PersonalDataErased) -> None:
    registration.erased = True


@CHANGES.on(ParticipantAssignedToSupportOffice)
def _assigned(registration: Registration, event: ParticipantAssignedToSupportOffice) -> None:
    registration.office_id = event.office_id


@CHANGES.on(*DECISIONS)
def _decided(registration: Registration, event: DecisionBase) -> None:
    registration.status = Status(event.status_after)


def check_profile(profile: OrganisationProfile, event: BrokerageEventCreated) -> None:
    if not profile.name.strip():
        raise RuleViolation("name", "must not be empty")
    if pycountry.countries.get(alpha_2=profile.country.upper()) is None:
        raise RuleViolation("country", f"{profile.country!r} is not an ISO 3166-1 alpha-2 code")
    if profile.representative_count < 1:
        raise RuleViolation("representatives", "at least one representative is needed")
    first = datetime.combine(min(event.days), time.min, ZoneInfo(event.time_zone))
    last = datetime.combine(max(event.days), time.max, ZoneInfo(event.time_zone))
    for index, interval in enumerate(profile.availability):
        where = f"availability[{index}]"
        if interval.start.tzinfo is None or interval.end.tzinfo is None:
            raise RuleViolation(where, "needs a time zone offset")
        if interval.end <= interval.start:
            raise RuleViolation(where, "ends before it starts")
        if interval.end < first or interval.start > last:
            raise RuleViolation(where, "lies outside the event's days")


def register(
    event: BrokerageEventCreated,
    *,
    registration_id: str,
    profile: OrganisationProfile,
    api_key_digest: str,
    now: datetime,
    by_organiser: bool = False,
) -> EventPayload:
    """A registration; after the deadline only the event's organiser may still register one
    (`by_organiser`): late entries agreed with the organiser, or an event imported afterwards."""
    if now > event.registration_deadline and not by_organiser:
        raise Conflict(
            "registration_deadline",
            f"registration closed at {event.registration_deadline.isoformat()}",
        )
    check_profile(profile, event)
    registered = REGISTERED_BY_TYPE[profile.organisation_type]
    return registered(
        registration_id=registration_id,
        event_id=event.event_id,
        profile=profile.model_copy(update={"country": profile.country.upper()}),
        api_key_digest=api_key_digest,
    )


# -- support offices and co-organisers (EEN) -------------------------------------


def office_for(
    event: BrokerageEventCreated, registration_id: str, country: str, chosen: str | None
) -> ParticipantAssignedToSupportOffice | None:
    """The support office a new participant belongs to: its choice from the event's list,
    else the office whose countries include its own, else none (the lead organiser's)."""
    offices = {o.office_id: o for o in event.support_offices}
    if chosen is not None:
        if chosen not in offices:
            raise RuleViolation("support_office", "is not one of the event's support offices")
        by, office_id = AssignedBy.PARTICIPANT, chosen
    else:
        ruled = [o for o in event.support_offices if country.upper() in o.countries]
        if not ruled:
            return None
        by, office_id = AssignedBy.COUNTRY_RULE, ruled[0].office_id
    return ParticipantAssignedToSupportOffice(
        registration_id=registration_id,
        event_id=event.event_id,
        office_id=office_id,
        assigned_by=by,
    )


def reassign_office(
    event: BrokerageEventCreated, registration: Registration, office_id: str
) -> ParticipantAssignedToSupportOffice:
    if office_id not in {o.office_id for o in event.support_offices}:
        raise RuleViolation("office_id", "is not one of the event's support offices")
    if registration.office_id == office_id:
        raise Conflict("office_id", "the participant belongs to this office already")
    return ParticipantAssignedToSupportOffice(
        registration_id=registration.registration_id,
        event_id=registration.event_id,
        office_id=office_id,
        assigned_by=AssignedBy.ORGANISER,
    )


@dataclass
class CoOrganiser:
    """A co-organiser rebuilt from its stream `co-organiser-<id>`."""

    added: CoOrganiserAdded | None = None
    removed: bool = False
    version: int = 0

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, CoOrganiserAdded):
            self.added = event
        elif isinstance(event, CoOrganiserRemoved):
            self.removed = True
        self.version += 1


def add_co_organiser(
    event: BrokerageEventCreated,
    *,
    co_organiser_id: str,
    office_id: str,
    name: str,
    email: str | None,
    api_key_digest: str,
) -> CoOrganiserAdded:
    if office_id not in {o.office_id for o in event.support_offices}:
        raise RuleViolation("office_id", "is not one of the event's support offices")
    if not name.strip():
        raise RuleViolation("name", "must not be empty")
    return CoOrganiserAdded(
        co_organiser_id=co_organiser_id,
        event_id=event.event_id,
        office_id=office_id,
        name=name.strip(),
        email=email,
        api_key_digest=api_key_digest,
    )


def remove_co_organiser(co_organiser: CoOrganiser) -> CoOrganiserRemoved:
    assert co_organiser.added is not None
    if co_organiser.removed:
        raise Conflict("co_organiser_id", "was removed already")
    return CoOrganiserRemoved(
        co_organiser_id=co_organiser.added.co_organiser_id, event_id=co_organiser.added.event_id
    )


def decide(
    registration: Registration,
    decision: Decision,
    reason: str | None,
) -> EventPayload:
    if registration.status not in ALLOWED[decision]:
        raise Conflict(
            "status", f"a {registration.status} registration cannot be {decision.status_after}"
        )
    return decision(
        registration_id=registration.registration_id, event_id=registration.event_id, reason=reason
    )


def update_profile(
    registration: Registration, profile: OrganisationProfile, event: BrokerageEventCreated
) -> ProfileUpdated:
    if registration.status == Status.WITHDRAWN:
        raise Conflict("status", "a withdrawn registration cannot be changed")
    assert registration.profile is not None
    if profile.organisation_type != registration.profile.organisation_type:
        raise RuleViolation("organisation_type", "cannot change after registering")
    check_profile(profile, event)
    return ProfileUpdated(
        registration_id=registration.registration_id,
        event_id=registration.event_id,
        profile=profile.model_copy(update={"country": profile.country.upper()}),
    )


def erase(registration: Registration) -> PersonalDataErased:
    if registration.erased:
        raise Conflict("registration", "personal data already erased")
    return PersonalDataErased(
        registration_id=registration.registration_id, event_id=registration.event_id
    )


# -- side programme -------------------------------------------------------------


@dataclass
class SideProgrammeItem:
    """A side programme item rebuilt from its stream `side-programme-<item_id>`."""

    added: SideProgrammeItemAdded | None = None
    participants: list[str] = field(default_factory=list)
    version: int = 0

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, SideProgrammeItemAdded):
            self.added = event
        elif isinstance(event, SideProgrammeJoined):
            self.participants.append(event.registration_id)
        self.version += 1


def add_side_programme_item(
    event: BrokerageEventCreated,
    *,
    item_id: str,
    title: str,
    kind: str,
    start: datetime,
    end: datetime,
    capacity: int | None,
) -> SideProgrammeItemAdded:
    if not title.strip():
        raise RuleViolation("title", "must not be empty")
    if start.tzinfo is None or end.tzinfo is None:
        raise RuleViolation("start", "needs a time zone offset")
    if end <= start:
        raise RuleViolation("end", "is not after the start")
    zone = ZoneInfo(event.time_zone)
    first = datetime.combine(min(event.days), time.min, zone)
    last = datetime.combine(max(event.days), time.max, zone)
    if start < first or end > last:
        raise RuleViolation("start", "lies outside the event's days")
    if capacity is not None and capacity < 1:
        raise RuleViolation("capacity", "must be at least 1")
    return SideProgrammeItemAdded(
        event_id=event.event_id,
        item_id=item_id,
        title=title.strip(),
        kind=kind,
        start=start,
        end=end,
        capacity=capacity,
    )


def join_side_programme(item: SideProgrammeItem, registration: Registration) -> SideProgrammeJoined:
    added = item.added
    assert added is not None
    if registration.event_id != added.event_id:
        raise RuleViolation("registration_id", "is not registered for this event")
    if registration.status != Status.APPROVED:
        raise Conflict("status", "only approved participants join")
    if registration.registration_id in item.participants:
        raise Conflict("registration_id", "has joined this item already")
    if added.capacity is not None and len(item.participants) >= added.capacity:
        raise Conflict("capacity", "the item is full")
    return SideProgrammeJoined(
        event_id=added.event_id,
        item_id=added.item_id,
        registration_id=registration.registration_id,
        start=added.start,
        end=added.end,
    )


# -- spreadsheet import -----------------------------------------------------------------


def organisation_key(name: str, country: str) -> tuple[str, str]:
    """What makes two registrations of one event the same organisation (as the unique
    index on the registrations says: the name regardless of case, and the country)."""
    return name.lower(), country.upper()


@dataclass(frozen=True)
class ImportRow:
    """One data row of an upload: its registration, or why it could not be read."""

    line: int
    profile: OrganisationProfile | None
    support_office: str | None = None
    unreadable: RuleViolation | None = None


@dataclass
class ImportPlan:
    """What an upload does: rows to create, rows already registered, rows refused."""

    create: list[ImportRow] = field(default_factory=list)
    unchanged: list[tuple[ImportRow, str]] = field(default_factory=list)  # with its registration
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # line, field, reason


def plan_import(
    event: BrokerageEventCreated, rows: list[ImportRow], registered: dict[tuple[str, str], str]
) -> ImportPlan:
    """Check every row with a single registration's rules; a row whose organisation is
    registered already (`registered`: key -> registration id) is unchanged, a second row
    for one organisation in the same upload is refused."""
    plan = ImportPlan()
    first_line: dict[tuple[str, str], int] = {}
    for row in rows:
        try:
            if row.unreadable is not None:
                raise row.unreadable
            assert row.profile is not None
            check_profile(row.profile, event)
            office_for(event, "", row.profile.country, row.support_office)
        except RuleViolation as refused:
            plan.refused.append((row.line, refused.field, refused.reason))
            continue
        key = organisation_key(row.profile.name, row.profile.country)
        if key in first_line:
            plan.refused.append(
                (row.line, "name", f"the same organisation as line {first_line[key]}")
            )
            continue
        first_line[key] = row.line
        if key in registered:
            plan.unchanged.append((row, registered[key]))
        else:
            plan.create.append(row)
    return plan
