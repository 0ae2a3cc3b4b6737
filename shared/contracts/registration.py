"""Events published by the registration service on `registration.events`.

Representatives' contact details are personal data: they travel only as
`representatives_encrypted`, sealed with a key per registration that erasure
destroys (see `shared.crypto`).
"""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.base import EventPayload


class MeetingType(StrEnum):
    CLUSTER2CLUSTER = "Cluster2Cluster"
    BUSINESS2CLUSTER = "Business2Cluster"
    BUSINESS2BUSINESS = "Business2Business"


class OrganisationType(StrEnum):
    CLUSTER = "cluster"
    BUSINESS = "business"
    RESEARCH = "research"
    OTHER = "other"


class Attendance(StrEnum):
    ON_SITE = "on_site"
    REMOTE = "remote"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Session(_Part):
    """A block of meeting slots, the same on every day of the event (local time)."""

    start: time
    end: time


class Interval(_Part):
    start: datetime
    end: datetime


class SupportOffice(_Part):
    """A network's support office co-organising an event (in EEN, identified by its
    network id), with the countries whose participants it looks after by default."""

    office_id: str
    name: str
    countries: list[str] = Field(default_factory=list)  # ISO 3166-1 alpha-2; the country rule


class _RegistrationEvent(EventPayload):
    producer: ClassVar[str] = "registration"


class OrganiserRegistered(_RegistrationEvent):
    event_name: ClassVar[str] = "OrganiserRegistered"
    organiser_id: str
    name: str
    api_key_digest: str


class BrokerageEventCreated(_RegistrationEvent):
    event_name: ClassVar[str] = "BrokerageEventCreated"
    event_id: str
    organiser_id: str
    name: str
    venue: str
    time_zone: str
    days: list[date]
    sessions: list[Session]
    slot_minutes: int
    tables: int
    meeting_types: list[MeetingType]
    registration_deadline: datetime
    max_meetings_per_participant: int | None = None
    request_expiry_hours: int = 48
    support_offices: list[SupportOffice] = Field(default_factory=list)


# What an organiser may change after creating an event (`EventSettingsChanged`). The time
# zone and the support offices stay as created: every wall-clock time, availability and
# co-organiser of the event depends on them.
EDITABLE_SETTINGS = (
    "name",
    "venue",
    "days",
    "sessions",
    "slot_minutes",
    "tables",
    "meeting_types",
    "registration_deadline",
    "max_meetings_per_participant",
    "request_expiry_hours",
)


class EventSettingsChanged(_RegistrationEvent):
    """The organiser changed the event's settings: every editable setting as it now is
    (not only the changed ones), so that a consumer replaces its copy without merging."""

    event_name: ClassVar[str] = "EventSettingsChanged"
    event_id: str
    name: str
    venue: str
    days: list[date]
    sessions: list[Session]
    slot_minutes: int
    tables: int
    meeting_types: list[MeetingType]
    registration_deadline: datetime
    max_meetings_per_participant: int | None = None
    request_expiry_hours: int = 48
    changed: list[str] = Field(default_factory=list)  # which of them differ from before


class DirectoryField(StrEnum):
    """Profile fields a participant may publish in the event's participant directory
    (shown to the event's approved participants and organisers, never to the world)."""

    COUNTRY = "country"
    SECTORS = "sectors"
    TECHNOLOGIES = "technologies"
    VALUE_CHAIN_POSITION = "value_chain_position"
    MARKETS = "markets"
    OFFERS = "offers"
    REQUESTS = "requests"
    ATTENDANCE = "attendance"


class OrganisationProfile(_Part):
    """What an organisation says about itself; shared by registration and updates."""

    organisation_type: OrganisationType
    name: str
    country: str  # ISO 3166-1 alpha-2
    sectors: list[str]
    technologies: list[str]
    value_chain_position: str | None
    markets: list[str]
    offers: list[str]
    requests: list[str]
    attendance: Attendance
    availability: list[Interval]  # empty: available throughout the event
    representatives_encrypted: str
    representative_count: int
    # What the directory shows besides name and organisation type (all, unless chosen).
    published: list[DirectoryField] = Field(default_factory=lambda: list(DirectoryField))


class RegisteredBase(_RegistrationEvent):
    registration_id: str
    event_id: str
    profile: OrganisationProfile
    api_key_digest: str


class ClusterRegistered(RegisteredBase):
    event_name: ClassVar[str] = "ClusterRegistered"


class BusinessRegistered(RegisteredBase):
    event_name: ClassVar[str] = "BusinessRegistered"


class ResearchOrganisationRegistered(RegisteredBase):
    event_name: ClassVar[str] = "ResearchOrganisationRegistered"


class OrganisationRegistered(RegisteredBase):
    """An organisation of type `other`."""

    event_name: ClassVar[str] = "OrganisationRegistered"


REGISTERED_BY_TYPE: dict[OrganisationType, type[RegisteredBase]] = {
    OrganisationType.CLUSTER: ClusterRegistered,
    OrganisationType.BUSINESS: BusinessRegistered,
    OrganisationType.RESEARCH: ResearchOrganisationRegistered,
    OrganisationType.OTHER: OrganisationRegistered,
}


class ProfileUpdated(_RegistrationEvent):
    event_name: ClassVar[str] = "ProfileUpdated"
    registration_id: str
    event_id: str
    profile: OrganisationProfile


class DecisionBase(_RegistrationEvent):
    """A decision on a registration; `status_after` is the status it records (the
    event's meaning, so that every consumer reads it the same way)."""

    status_after: ClassVar[str]
    registration_id: str
    event_id: str
    reason: str | None = None


class RegistrationApproved(DecisionBase):
    event_name: ClassVar[str] = "RegistrationApproved"
    status_after: ClassVar[str] = "approved"


class RegistrationRejected(DecisionBase):
    event_name: ClassVar[str] = "RegistrationRejected"
    status_after: ClassVar[str] = "rejected"


class RegistrationWaitlisted(DecisionBase):
    event_name: ClassVar[str] = "RegistrationWaitlisted"
    status_after: ClassVar[str] = "waitlisted"


class RegistrationWithdrawn(DecisionBase):
    event_name: ClassVar[str] = "RegistrationWithdrawn"
    status_after: ClassVar[str] = "withdrawn"


DECISIONS: list[type[DecisionBase]] = [
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
]


class PersonalDataErased(_RegistrationEvent):
    """The registration's key is destroyed: its contact details are unreadable everywhere."""

    event_name: ClassVar[str] = "PersonalDataErased"
    registration_id: str
    event_id: str


class SideProgrammeItemAdded(_RegistrationEvent):
    """The organiser adds a side programme item (a guided tour, ...) at a fixed time."""

    event_name: ClassVar[str] = "SideProgrammeItemAdded"
    event_id: str
    item_id: str
    title: str
    kind: str  # e.g. guided_tour
    start: datetime
    end: datetime
    capacity: int | None = None


class SideProgrammeJoined(_RegistrationEvent):
    """A participant joins a side programme item: it is busy from `start` to `end`,
    so no meeting of its may take place then."""

    event_name: ClassVar[str] = "SideProgrammeJoined"
    event_id: str
    item_id: str
    registration_id: str
    start: datetime
    end: datetime


class CoOrganiserAdded(_RegistrationEvent):
    """The lead organiser gives a support office its own key for one event."""

    event_name: ClassVar[str] = "CoOrganiserAdded"
    co_organiser_id: str
    event_id: str
    office_id: str
    name: str
    email: str | None = None  # where registrations of its participants are announced
    api_key_digest: str


class CoOrganiserRemoved(_RegistrationEvent):
    """The co-organiser's key stops working for the event."""

    event_name: ClassVar[str] = "CoOrganiserRemoved"
    co_organiser_id: str
    event_id: str


class SignInLinkRequested(_RegistrationEvent):
    """Someone asked for a sign-in link at an address of this registration's
    representatives: notification e-mails it there. The address travels sealed with the
    registration's key (erasure makes it unreadable); the link itself is in no event:
    registration signs it from these facts when notification asks for the message."""

    event_name: ClassVar[str] = "SignInLinkRequested"
    registration_id: str
    event_id: str
    link_id: str
    address_encrypted: str
    issued_at: datetime
    expires_at: datetime


class SignedInByLink(_RegistrationEvent):
    """A sign-in link was used (once: it opens nothing afterwards): the browser got a key
    of the organisation's own that stops working at `key_expires_at`."""

    event_name: ClassVar[str] = "SignedInByLink"
    registration_id: str
    event_id: str
    link_id: str
    api_key_digest: str
    key_expires_at: datetime


class AssignedBy(StrEnum):
    PARTICIPANT = "participant"  # chosen at registration
    COUNTRY_RULE = "country_rule"  # the event's rule for the participant's country
    ORGANISER = "organiser"  # reassigned by the lead organiser


class ParticipantAssignedToSupportOffice(_RegistrationEvent):
    event_name: ClassVar[str] = "ParticipantAssignedToSupportOffice"
    registration_id: str
    event_id: str
    office_id: str
    assigned_by: AssignedBy


REGISTRATION_EVENTS: list[type[EventPayload]] = [
    OrganiserRegistered,
    BrokerageEventCreated,
    EventSettingsChanged,
    ClusterRegistered,
    BusinessRegistered,
    ResearchOrganisationRegistered,
    OrganisationRegistered,
    ProfileUpdated,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
    PersonalDataErased,
    SideProgrammeItemAdded,
    SideProgrammeJoined,
    CoOrganiserAdded,
    CoOrganiserRemoved,
    ParticipantAssignedToSupportOffice,
    SignInLinkRequested,
    SignedInByLink,
]
