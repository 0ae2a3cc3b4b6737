"""Payloads of registration's and matching's events, as the scheduling service consumes them."""

from __future__ import annotations

from datetime import date, datetime, time

from shared.contracts.matching import (
    CancelledBy,
    MeetingAccepted,
    MeetingCancelled,
    MeetingMode,
    MeetingParty,
)
from shared.contracts.registration import (
    Attendance,
    BrokerageEventCreated,
    BusinessRegistered,
    Interval,
    MeetingType,
    OrganisationProfile,
    OrganisationType,
    OrganiserRegistered,
    RegistrationApproved,
    RegistrationWithdrawn,
    Session,
)

DAY = date(2031, 6, 2)


def organiser(organiser_id: str, key_digest: str) -> OrganiserRegistered:
    return OrganiserRegistered(organiser_id=organiser_id, name="Org", api_key_digest=key_digest)


def event(
    event_id: str,
    organiser_id: str,
    *,
    tables: int = 2,
    cap: int | None = None,
    sessions: tuple[tuple[time, time], ...] = ((time(9), time(10, 30)), (time(14), time(15))),
    time_zone: str = "Europe/Berlin",
) -> BrokerageEventCreated:
    return BrokerageEventCreated(
        event_id=event_id,
        organiser_id=organiser_id,
        name="Photonics brokerage",
        venue="Hall 3",
        time_zone=time_zone,
        days=[DAY],
        sessions=[Session(start=a, end=b) for a, b in sessions],
        slot_minutes=30,
        tables=tables,
        meeting_types=[MeetingType.BUSINESS2BUSINESS],
        registration_deadline=datetime(2031, 5, 1, 12, 0).astimezone(),
        max_meetings_per_participant=cap,
    )


def registered(
    event_id: str,
    registration_id: str,
    key_digest: str,
    *,
    remote: bool = False,
    availability: tuple[tuple[datetime, datetime], ...] = (),
) -> BusinessRegistered:
    profile = OrganisationProfile(
        organisation_type=OrganisationType.BUSINESS,
        name=f"Business {registration_id}",
        country="DE",
        sectors=["photonics"],
        technologies=[],
        value_chain_position=None,
        markets=[],
        offers=["lasers"],
        requests=[],
        attendance=Attendance.REMOTE if remote else Attendance.ON_SITE,
        availability=[Interval(start=a, end=b) for a, b in availability],
        representatives_encrypted="sealed",
        representative_count=1,
    )
    return BusinessRegistered(
        registration_id=registration_id,
        event_id=event_id,
        profile=profile,
        api_key_digest=key_digest,
    )


def approved(event_id: str, registration_id: str) -> RegistrationApproved:
    return RegistrationApproved(registration_id=registration_id, event_id=event_id)


def withdrawn(event_id: str, registration_id: str) -> RegistrationWithdrawn:
    return RegistrationWithdrawn(registration_id=registration_id, event_id=event_id)


def accepted(
    event_id: str, request_id: str, a: str, b: str, *, remote: tuple[bool, bool] = (False, False)
) -> MeetingAccepted:
    parties = [
        MeetingParty(
            registration_id=r,
            name=f"Business {r}",
            organisation_type=OrganisationType.BUSINESS,
            attendance=Attendance.REMOTE if far else Attendance.ON_SITE,
        )
        for r, far in zip((a, b), remote, strict=True)
    ]
    return MeetingAccepted(
        request_id=request_id,
        event_id=event_id,
        requester_id=a,
        recipient_id=b,
        meeting_type=MeetingType.BUSINESS2BUSINESS,
        mode=MeetingMode.ONLINE if any(remote) else MeetingMode.ONSITE,
        participants=parties,
        accepted_by=b,
    )


def cancelled(event_id: str, request_id: str, a: str, b: str) -> MeetingCancelled:
    return MeetingCancelled(
        request_id=request_id,
        event_id=event_id,
        requester_id=a,
        recipient_id=b,
        cancelled_by=a,
        cancelled_by_role=CancelledBy.PARTICIPANT,
        was_accepted=True,
    )
