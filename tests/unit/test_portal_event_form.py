"""The portal's edit-event form: an event's settings shown on it and read back from it,
and the API's field names mapped to the form's fields (errors shown beside them)."""

from __future__ import annotations

import pytest

from services.portal.forms import FormErrors, field_of, settings_body, settings_form

EVENT = {
    "event_id": "e1",
    "name": "Photonics matchmaking",
    "venue": "Hall 2",
    "time_zone": "Europe/Berlin",
    "days": ["2031-04-13", "2031-04-14"],
    "sessions": [
        {"start": "09:00:00", "end": "11:00:00"},
        {"start": "14:00:00", "end": "16:00:00"},
    ],
    "slot_minutes": 30,
    "tables": 3,
    "meeting_types": ["Cluster2Cluster"],
    "registration_deadline": "2031-04-01T16:00:00Z",
    "max_meetings_per_participant": None,
    "request_expiry_hours": 48,
}


def test_the_form_shows_the_settings_in_the_events_zone_and_reads_them_back() -> None:
    form = settings_form(EVENT)
    assert form["registration_deadline"] == "2031-04-01T18:00"  # Berlin, summer time
    assert form["sessions"] == "09:00-11:00\n14:00-16:00"
    assert form["days"] == "2031-04-13, 2031-04-14"
    assert form["max_meetings_per_participant"] == ""
    body = settings_body(form, ["Cluster2Cluster"], "Europe/Berlin")
    assert body["registration_deadline"] == "2031-04-01T18:00:00+02:00"
    assert body["sessions"][1] == {"start": "14:00", "end": "16:00"}
    assert body["days"] == EVENT["days"] and body["tables"] == 3
    assert body["max_meetings_per_participant"] is None  # an empty field lifts the cap


def test_unreadable_fields_are_named() -> None:
    form = settings_form(EVENT) | {
        "tables": "many",
        "registration_deadline": "soon",
        "slot_minutes": "",
    }
    with pytest.raises(FormErrors) as refused:
        settings_body(form, [], "Europe/Berlin")
    assert set(refused.value.errors) == {"tables", "registration_deadline", "slot_minutes"}


@pytest.mark.parametrize(
    ("api_field", "form_field"),
    [
        ("sessions[1]", "sessions"),
        ("days", "days"),
        ("support_offices[0].countries", ""),
        ("settings", ""),
    ],
)
def test_api_fields_map_to_form_fields(api_field: str, form_field: str) -> None:
    assert field_of(api_field) == form_field
