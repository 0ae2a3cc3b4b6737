"""Registration's rules, on the pure domain: no database, no broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from services.registration import domain
from services.registration.domain import Registration
from shared.contracts.registration import (
    BrokerageEventCreated,
    ClusterRegistered,
    OrganisationProfile,
    RegistrationApproved,
    RegistrationWithdrawn,
    Session,
)
from shared.errors import RuleViolation


def hannover(**changes: Any) -> BrokerageEventCreated:
    fields: dict[str, Any] = dict(
        event_id="e1",
        organiser_id="o1",
        name="European Cluster Matchmaking",
        venue="HANNOVER MESSE",
        time_zone="Europe/Berlin",
        days=[date(2015, 4, 13), date(2015, 4, 14)],
        sessions=[Session(start=time(10), end=time(12)), Session(start=time(14), end=time(17))],
        slot_minutes=30,
        tables=20,
        meeting_types=["Cluster2Cluster", "Business2Cluster"],
        registration_deadline=datetime(2015, 4, 1, tzinfo=UTC),
    )
    return BrokerageEventCreated(**{**fields, **changes})


def profile(**changes: Any) -> OrganisationProfile:
    fields: dict[str, Any] = dict(
        organisation_type="cluster",
        name="Photonics Valley",
        country="de",
        sectors=["photonics"],
        technologies=[],
        value_chain_position=None,
        markets=[],
        offers=["laser welding"],
        requests=[],
        attendance="on_site",
        availability=[],
        representatives_encrypted="x",
        representative_count=1,
    )
    return OrganisationProfile(**{**fields, **changes})


def test_slot_grid_covers_each_session_of_each_day() -> None:
    slots = domain.slot_grid(hannover())
    assert len(slots) == 2 * (4 + 6)
    assert slots[0].start.isoformat() == "2015-04-13T10:00:00+02:00"
    assert slots[-1].end.isoformat() == "2015-04-14T17:00:00+02:00"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"name": "  "}, "name"),
        ({"sessions": [Session(start=time(17), end=time(10))]}, "sessions[0]"),
        ({"sessions": [Session(start=time(10), end=time(10, 45))]}, "sessions[0]"),
        ({"sessions": [Session(start=time(10), end=time(10, 15))]}, "sessions[0]"),
        (
            {
                "sessions": [
                    Session(start=time(10), end=time(12)),
                    Session(start=time(11), end=time(13)),
                ]
            },
            "sessions[1]",
        ),
        ({"days": []}, "days"),
        ({"registration_deadline": datetime(2015, 5, 1, tzinfo=UTC)}, "registration_deadline"),
        ({"meeting_types": []}, "meeting_types"),
    ],
)
def test_unsound_event_definitions_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        domain.check_new_event(hannover(**changes))
    assert caught.value.field == field


def test_register_emits_the_type_specific_event_with_normalised_country() -> None:
    event = domain.register(
        hannover(),
        registration_id="r1",
        profile=profile(),
        api_key_digest="d",
        now=datetime(2015, 3, 1, tzinfo=UTC),
    )
    assert isinstance(event, ClusterRegistered)
    assert event.profile.country == "DE"


def test_registration_after_the_deadline_is_refused() -> None:
    with pytest.raises(RuleViolation) as caught:
        domain.register(
            hannover(),
            registration_id="r1",
            profile=profile(),
            api_key_digest="d",
            now=datetime(2015, 4, 2, tzinfo=UTC),
        )
    assert (caught.value.field, caught.value.status) == ("registration_deadline", 409)


def test_the_organiser_may_register_after_the_deadline() -> None:
    event = domain.register(
        hannover(),
        registration_id="r1",
        profile=profile(),
        api_key_digest="d",
        now=datetime(2026, 11, 25, tzinfo=UTC),
        by_organiser=True,
    )
    assert isinstance(event, ClusterRegistered)


def test_the_organiser_override_still_checks_the_profile() -> None:
    with pytest.raises(RuleViolation) as caught:
        domain.register(
            hannover(),
            registration_id="r1",
            profile=profile(country="ZZ"),
            api_key_digest="d",
            now=datetime(2026, 11, 25, tzinfo=UTC),
            by_organiser=True,
        )
    assert caught.value.field == "country"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"country": "ZZ"}, "country"),
        ({"name": ""}, "name"),
        ({"representative_count": 0}, "representatives"),
    ],
)
def test_bad_profiles_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        domain.register(
            hannover(),
            registration_id="r1",
            profile=profile(**changes),
            api_key_digest="d",
            now=datetime(2015, 3, 1, tzinfo=UTC),
        )
    assert caught.value.field == field


def test_decisions_follow_the_status_rules() -> None:
    registration = Registration()
    registration.apply(
        domain.register(
            hannover(),
            registration_id="r1",
            profile=profile(),
            api_key_digest="d",
            now=datetime(2015, 3, 1, tzinfo=UTC),
        )
    )
    registration.apply(domain.decide(registration, RegistrationApproved, None))
    assert registration.status == "approved"
    with pytest.raises(RuleViolation):
        domain.decide(registration, RegistrationApproved, None)
    registration.apply(domain.decide(registration, RegistrationWithdrawn, "cannot travel"))
    assert registration.status == "withdrawn"
    for decision in domain.ALLOWED:
        with pytest.raises(RuleViolation):
            domain.decide(registration, decision, None)
    with pytest.raises(RuleViolation):
        domain.update_profile(registration, profile(), hannover())
