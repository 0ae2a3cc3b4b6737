"""Events published by the registration service on `registration.events`.

Representatives' contact details are personal data: they travel only as
`representatives_encrypted`, sealed with a key per registration that erasure
destroys (see `shared.crypto`).
"""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

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
    registration_id: str
    event_id: str
    reason: str | None = None


class RegistrationApproved(DecisionBase):
    event_name: ClassVar[str] = "RegistrationApproved"


class RegistrationRejected(DecisionBase):
    event_name: ClassVar[str] = "RegistrationRejected"


class RegistrationWaitlisted(DecisionBase):
    event_name: ClassVar[str] = "RegistrationWaitlisted"


class RegistrationWithdrawn(DecisionBase):
    event_name: ClassVar[str] = "RegistrationWithdrawn"


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


REGISTRATION_EVENTS: list[type[EventPayload]] = [
    OrganiserRegistered,
    BrokerageEventCreated,
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
]
