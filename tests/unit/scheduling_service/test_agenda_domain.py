"""The pure parts of the scheduling service: grid, instances from the projection, diffs."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from services.scheduling import domain
from services.scheduling.domain import AgendaMeeting, Attendee, Change, MeetingStatus, Place
from services.scheduling.grid import EventGrid, available_slots
from services.scheduling.solver import Assignment, Fixed, Schedule, Unscheduled, check
from shared.contracts.scheduling import ReleaseReason, SlotAssigned, SlotReleased

PARIS = ZoneInfo("Europe/Paris")
GRID = EventGrid(
    event_id="ev1",
    organiser_id="org1",
    time_zone="Europe/Paris",
    days=(date(2026, 3, 11), date(2026, 3, 10)),  # out of order on purpose
    sessions=((time(14, 0), time(15, 0)), (time(9, 0), time(10, 30))),
    slot_minutes=30,
    tables=2,
    max_meetings=3,
)


def test_slot_ids_are_stable_and_in_time_order() -> None:
    ids = [s.id for s in GRID.slots]
    assert ids[:5] == ["d1-s1-01", "d1-s1-02", "d1-s1-03", "d1-s2-01", "d1-s2-02"]
    assert len(ids) == 10
    first = GRID.by_id["d1-s1-01"]
    assert first.start == datetime(2026, 3, 10, 9, 0, tzinfo=PARIS)
    assert first.end.isoformat() == "2026-03-10T09:30:00+01:00"
    starts = [s.start for s in GRID.slots]
    assert starts == sorted(starts)


def test_availability_is_the_slots_wholly_inside_an_interval() -> None:
    assert available_slots(GRID, ()) is None
    morning = (
        datetime(2026, 3, 10, 8, 0, tzinfo=ZoneInfo("UTC")),  # 09:00 Paris
        datetime(2026, 3, 10, 9, 45, tzinfo=ZoneInfo("UTC")),
    )
    assert available_slots(GRID, (morning,)) == frozenset({"d1-s1-01", "d1-s1-02", "d1-s1-03"})
    naive = (datetime(2026, 3, 11, 14, 0), datetime(2026, 3, 11, 14, 45))  # event's zone
    assert available_slots(GRID, (naive,)) == frozenset({"d2-s2-01"})


def _m(mid: str, a: str, b: str, place: Place | None = None, **kw: object) -> AgendaMeeting:
    return AgendaMeeting(
        mid,
        (a, b),
        status=MeetingStatus.PLACED if place else MeetingStatus.UNSCHEDULED,
        place=place,
        mode=kw.get("mode", "onsite"),  # type: ignore[arg-type]
        locked=bool(kw.get("locked", False)),
    )


def test_meeting_mode_is_online_when_either_side_is_remote() -> None:
    assert domain.meeting_mode("onsite", ["on_site", "on_site"]) == "onsite"
    assert domain.meeting_mode("onsite", ["on_site", "remote"]) == "online"
    assert domain.meeting_mode("online", ["on_site", "on_site"]) == "online"


def test_instance_from_the_projection() -> None:
    attendees = {
        "a": Attendee(
            "a", "on_site", ((datetime(2026, 3, 10, 9, 0), datetime(2026, 3, 10, 10, 0)),)
        )
    }
    meetings = [
        _m("m1", "a", "b", Place("d1-s1-01", 2), locked=True),
        _m("m2", "b", "c", Place("d1-s1-02", None), mode="online"),
        _m("m3", "a", "c"),
    ]
    inst = domain.build_instance(GRID, attendees, meetings)
    assert inst.tables == 2 and len(inst.slots) == 10
    assert [s.id for s in inst.sessions][:2] == ["d1-s1", "d1-s2"]
    by_id = {p.id: p for p in inst.participants}
    assert by_id["a"].available == frozenset({"d1-s1-01", "d1-s1-02"})
    assert by_id["b"].available is None  # unknown attendee: available throughout
    assert {p.max_meetings for p in inst.participants} == {3}
    assert inst.meeting("m1").fixed == Fixed("d1-s1-01", 2)
    assert inst.meeting("m2").fixed is None and inst.meeting("m2").mode == "online"
    current = domain.current_schedule(meetings)
    assert current.assignments == [
        Assignment("m1", "d1-s1-01", 2),
        Assignment("m2", "d1-s1-02", None),
    ]
    # The current agenda plus the unplaced meeting listed as such is a valid schedule.
    current.unscheduled.append(Unscheduled("m3", ""))
    assert check(inst, current).valid


def test_diff_names_every_change_and_nothing_else() -> None:
    before: dict[str, Place | None] = {
        "stay": Place("d1-s1-01", 1),
        "move": Place("d1-s1-02", 1),
        "table": Place("d1-s1-03", 1),
        "lose": Place("d2-s1-01", 2),
        "new": None,
        "still": None,
    }
    after = Schedule(
        [
            Assignment("stay", "d1-s1-01", 1),
            Assignment("move", "d1-s1-01", 2),
            Assignment("table", "d1-s1-03", 2),
            Assignment("new", "d1-s2-01", None),
        ],
        [Unscheduled("lose", "no slot"), Unscheduled("still", "caps")],
    )
    changes = domain.diff(before, after)
    assert sorted(changes, key=lambda c: c.meeting_id) == [
        Change("lose", "released", reason="no slot"),
        Change("move", "moved", Place("d1-s1-01", 2)),
        Change("new", "assigned", Place("d1-s2-01", None)),
        Change("still", "unscheduled", reason="caps"),
        Change("table", "moved", Place("d1-s1-03", 2)),
    ]
    meetings = {k: _m(k, "x", "y", v) for k, v in before.items()}
    events = domain.events_of(GRID, meetings, changes)
    assigned = [e for e in events if isinstance(e, SlotAssigned)]
    released = [e for e in events if isinstance(e, SlotReleased)]
    assert sorted(e.meeting_id for e in assigned) == ["move", "new", "table"]
    assert [(e.meeting_id, e.reason) for e in released] == [("lose", ReleaseReason.REOPTIMISED)]
    move = next(e for e in assigned if e.meeting_id == "move")
    assert move.slot_start == datetime(2026, 3, 10, 9, 0, tzinfo=PARIS) and move.table == 2
    assert move.participants == ["x", "y"] and move.event_id == "ev1"


def test_a_window_per_meeting_type_reaches_the_instance_and_the_placement() -> None:
    from services.scheduling.solver import place

    afternoon = domain.window_slots(GRID, ["d1-s2-02", "d1-s2-01", "d2-s2-01"])
    assert afternoon == ("d1-s2-01", "d1-s2-02", "d2-s2-01")  # in time order
    meetings = [
        AgendaMeeting(
            "m1", ("a", "b"), "onsite", MeetingStatus.PENDING, meeting_type="Business2Cluster"
        ),
        AgendaMeeting(
            "m2", ("a", "c"), "onsite", MeetingStatus.PENDING, meeting_type="Cluster2Cluster"
        ),
        AgendaMeeting(
            "m3",
            ("b", "c"),
            "onsite",
            MeetingStatus.PLACED,
            Place("d1-s1-01", 1),
            locked=True,
            meeting_type="Business2Cluster",
        ),
    ]
    windows = {"Business2Cluster": afternoon}
    instance = domain.build_instance(GRID, {}, meetings, windows, max_idle_spread=1)
    by_id = {m.id: m for m in instance.meetings}
    assert by_id["m1"].allowed_slots == frozenset(afternoon)
    assert by_id["m2"].allowed_slots is None  # no window for its type
    assert by_id["m3"].allowed_slots is None  # locked: stays where it is
    assert instance.max_idle_spread == 1
    result = place(instance, domain.current_schedule(meetings), "m1")
    assert isinstance(result, Assignment) and result.slot in afternoon


def test_a_window_with_an_unknown_slot_is_refused() -> None:
    import pytest

    from shared.errors import RuleViolation

    with pytest.raises(RuleViolation, match="unknown slot"):
        domain.window_slots(GRID, ["d1-s1-01", "d9-s9-09"])


def test_the_organiser_view_of_idle_time() -> None:
    from services.scheduling.views import idle_summary

    placed = [
        (["a", "b"], "d1-s1-01"),
        (["a", "c"], "d1-s1-03"),  # a idles in d1-s1-02
        (["b", "c"], "d1-s2-01"),  # another session: no idle for b
    ]
    summary = idle_summary(GRID, placed)
    assert summary["by_participant"] == {"a": 1, "b": 0, "c": 0}
    assert summary["distribution"] == {"0": 2, "1": 1}
    assert (summary["total"], summary["max"], summary["spread"]) == (1, 1, 1)
