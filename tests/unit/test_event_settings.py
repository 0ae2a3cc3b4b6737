"""Changing an event's settings: registration's rules (pure) and scheduling's test of
which placed meetings still fit the changed grid."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from services.registration import domain
from services.scheduling.domain import still_fits
from services.scheduling.grid import EventGrid
from shared.contracts.registration import EventSettingsChanged, Session
from shared.errors import Conflict, RuleViolation
from tests.unit.test_registration_domain import hannover

BEFORE = datetime(2015, 3, 1, tzinfo=UTC)  # weeks before the event's first day
DURING = datetime(2015, 4, 13, 11, tzinfo=UTC)


def test_a_change_carries_every_setting_and_names_the_changed_ones() -> None:
    changed = domain.change_settings(hannover(), {"tables": 12, "venue": "Hall 2"}, now=BEFORE)
    assert changed.tables == 12 and changed.venue == "Hall 2"
    assert changed.slot_minutes == 30  # unchanged settings travel too
    assert changed.changed == ["venue", "tables"]


def test_the_current_settings_are_the_last_change_applied_to_the_creation() -> None:
    created = hannover()
    first = domain.change_settings(created, {"tables": 12}, now=BEFORE)
    second = domain.change_settings(
        domain.current_settings([created, first]),
        {"slot_minutes": 20, "sessions": [Session(start=time(10), end=time(12))]},
        now=BEFORE,
    )
    current = domain.current_settings([created, first, second])
    assert (current.tables, current.slot_minutes, len(current.sessions)) == (12, 20, 1)
    assert current.time_zone == created.time_zone and current.organiser_id == "o1"


def test_nothing_changed_is_refused() -> None:
    with pytest.raises(Conflict) as refused:
        domain.change_settings(hannover(), {"tables": 20}, now=BEFORE)
    assert refused.value.field == "settings"


@pytest.mark.parametrize("setting", ["time_zone", "support_offices", "organiser_id"])
def test_settings_fixed_at_creation_are_refused(setting: str) -> None:
    with pytest.raises(RuleViolation) as refused:
        domain.change_settings(hannover(), {setting: "x"}, now=BEFORE)
    assert refused.value.field == setting


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"slot_minutes": 45}, "sessions[0]"),  # 2 h is not a whole number of 45-min slots
        ({"days": [date(2015, 4, 13), date(2015, 4, 13)]}, "days"),
        ({"registration_deadline": datetime(2015, 5, 1, tzinfo=UTC)}, "registration_deadline"),
        ({"meeting_types": []}, "meeting_types"),
        ({"max_meetings_per_participant": 0}, "max_meetings_per_participant"),
        ({"sessions": [Session(start=time(12), end=time(10))]}, "sessions[0]"),
    ],
)
def test_new_settings_follow_the_rules_of_a_new_event(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(RuleViolation) as refused:
        domain.change_settings(hannover(), changes, now=BEFORE)
    assert refused.value.field == field


def test_once_the_event_has_begun_its_grid_is_fixed_but_caps_may_change() -> None:
    with pytest.raises(Conflict) as refused:
        domain.change_settings(hannover(), {"slot_minutes": 20}, now=DURING)
    assert refused.value.field == "slot_minutes"
    changed = domain.change_settings(hannover(), {"max_meetings_per_participant": 5}, now=DURING)
    assert isinstance(changed, EventSettingsChanged) and changed.changed == [
        "max_meetings_per_participant"
    ]


def _grid(slot_minutes: int, tables: int, days: tuple[date, ...]) -> EventGrid:
    return EventGrid(
        "e1", "o1", "Europe/Berlin", days, ((time(10), time(12)),), slot_minutes, tables
    )


def test_a_placed_meeting_fits_while_its_slot_names_the_same_time_and_its_table_exists() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    first_slot = datetime(2015, 4, 13, 10, tzinfo=berlin)
    grid = _grid(30, 10, (date(2015, 4, 13),))
    assert still_fits(grid, "d1-s1-01", first_slot, 10)
    assert not still_fits(_grid(30, 5, (date(2015, 4, 13),)), "d1-s1-01", first_slot, 10)
    # Slots of 20 minutes: d1-s1-04 starts at 11:00, not at the 11:30 it stood for.
    assert not still_fits(
        _grid(20, 10, (date(2015, 4, 13),)),
        "d1-s1-04",
        datetime(2015, 4, 13, 11, 30, tzinfo=berlin),
        1,
    )
    # A day added before: "d1" is now another date.
    assert not still_fits(
        _grid(30, 10, (date(2015, 4, 12), date(2015, 4, 13))), "d1-s1-01", first_slot, 1
    )
    assert not still_fits(grid, "d9-s1-01", first_slot, 1)
