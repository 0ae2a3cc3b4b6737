"""Side programme items: registration's rules and the slots they block in scheduling."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from services.registration import domain
from services.registration.domain import Registration, SideProgrammeItem
from services.scheduling.grid import EventGrid, parse_intervals, usable_slots
from shared.access.policy import RegistrationStatus
from shared.contracts.registration import (
    BrokerageEventCreated,
    Session,
    SideProgrammeItemAdded,
)
from shared.errors import RuleViolation

TOUR_START = datetime.fromisoformat("2015-04-13T14:00:00+02:00")
TOUR_END = datetime.fromisoformat("2015-04-13T15:30:00+02:00")


def add_tour(
    capacity: int | None = None, start: datetime = TOUR_START, end: datetime = TOUR_END
) -> SideProgrammeItemAdded:
    return domain.add_side_programme_item(
        event(),
        item_id="t1",
        title="Guided tour",
        kind="guided_tour",
        start=start,
        end=end,
        capacity=capacity,
    )


def event() -> BrokerageEventCreated:
    return BrokerageEventCreated(
        event_id="e1",
        organiser_id="o1",
        name="Hannover",
        venue="Hannover",
        time_zone="Europe/Berlin",
        days=[date(2015, 4, 13), date(2015, 4, 14)],
        sessions=[Session(start=time(9, 30), end=time(12, 30))],
        slot_minutes=30,
        tables=10,
        meeting_types=[],
        registration_deadline=datetime(2015, 4, 1, tzinfo=UTC),
    )


def item(capacity: int | None = None, joined: tuple[str, ...] = ()) -> SideProgrammeItem:
    tour = SideProgrammeItem()
    tour.apply(add_tour(capacity))
    tour.participants.extend(joined)
    return tour


def registration(rid: str = "r1", status: str = "approved") -> Registration:
    return Registration(registration_id=rid, event_id="e1", status=RegistrationStatus(status))


def test_an_approved_participant_joins_and_is_busy_for_the_item() -> None:
    joined = domain.join_side_programme(item(), registration())
    assert (joined.registration_id, joined.start, joined.end) == ("r1", TOUR_START, TOUR_END)


@pytest.mark.parametrize(
    ("tour", "who", "field"),
    [
        (item(joined=("r1",)), registration(), "registration_id"),
        (item(capacity=1, joined=("r9",)), registration(), "capacity"),
        (item(), registration(status="pending"), "status"),
    ],
)
def test_joining_is_refused(tour: SideProgrammeItem, who: Registration, field: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        domain.join_side_programme(tour, who)
    assert caught.value.field == field


def test_an_item_must_lie_within_the_event() -> None:
    with pytest.raises(RuleViolation):
        add_tour(
            start=datetime(2015, 4, 20, 10, tzinfo=UTC), end=datetime(2015, 4, 20, 11, tzinfo=UTC)
        )


def test_blocked_time_removes_the_overlapping_slots() -> None:
    grid = EventGrid(
        event_id="e1",
        organiser_id=None,
        time_zone="Europe/Berlin",
        days=(date(2015, 4, 13),),
        sessions=((time(9, 30), time(12, 30)), (time(13, 30), time(17, 30))),
        slot_minutes=30,
        tables=5,
        max_meetings=None,
        published=False,
    )
    blocked = parse_intervals(
        [{"start": "2015-04-13T14:15:00+02:00", "end": "2015-04-13T15:30:00+02:00"}]
    )
    usable = usable_slots(grid, (), blocked)
    assert usable is not None
    assert sorted({s.id for s in grid.slots} - usable) == ["d1-s2-02", "d1-s2-03", "d1-s2-04"]
    assert usable_slots(grid, (), ()) is None
