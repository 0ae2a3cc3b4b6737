"""The independent checker: every kind of violation, and the objective."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from scheduling_cases import small_doc

from services.scheduling.solver.check import KINDS, check
from services.scheduling.solver.model import (
    Assignment,
    Instance,
    Schedule,
    Unscheduled,
    parse_instance,
)

INSTANCE = parse_instance(small_doc())


def good() -> Schedule:
    """Valid: a idles one slot (am1, am3); m4 is out because c is at its cap of 2."""
    return Schedule(
        [
            Assignment("m1", "am1", 1),
            Assignment("m3", "am2", 2),
            Assignment("m2", "am3", None),
            Assignment("m5", "pm1", 1),
        ],
        [Unscheduled("m4", "c already has its maximum of 2 meetings")],
    )


def test_a_valid_schedule_and_its_score() -> None:
    report = check(INSTANCE, good())
    assert report.violations == []
    assert report.valid
    assert (report.scheduled, report.priority, report.idle) == (4, 5, 1)
    assert report.score == (5, -1)


def test_idle_counts_gaps_inside_a_session_only() -> None:
    s = good()
    s.assignments[3] = Assignment("m5", "pm3", 1)  # a: am1 . am3 | . . pm3
    assert check(INSTANCE, s).idle == 1
    s.assignments[2] = Assignment("m2", "pm2", None)  # a: am1 . . | . pm2 pm3; c: am2 | pm2
    report = check(INSTANCE, s)
    assert report.valid and report.idle == 0
    s.assignments[3] = Assignment("m5", "pm1", 1)
    s.assignments[2] = Assignment("m2", "pm3", None)  # a: am1 | pm1 . pm3
    assert check(INSTANCE, s).idle == 1


def _replace(meeting: str, slot: str, table: int | None) -> Callable[[Schedule], None]:
    def change(s: Schedule) -> None:
        s.assignments = [
            Assignment(meeting, slot, table) if a.meeting == meeting else a for a in s.assignments
        ]

    return change


def _add(a: Assignment) -> Callable[[Schedule], None]:
    return lambda s: s.assignments.append(a)


def _unschedule(meeting: str) -> Callable[[Schedule], None]:
    def change(s: Schedule) -> None:
        s.assignments = [a for a in s.assignments if a.meeting != meeting]
        s.unscheduled.append(Unscheduled(meeting, "why not"))

    return change


def _drop(meeting: str) -> Callable[[Schedule], None]:
    def change(s: Schedule) -> None:
        s.assignments = [a for a in s.assignments if a.meeting != meeting]

    return change


def _both(*changes: Callable[[Schedule], None]) -> Callable[[Schedule], None]:
    def change(s: Schedule) -> None:
        for c in changes:
            c(s)

    return change


BAD: list[tuple[str, Callable[[Schedule], None], set[str]]] = [
    ("unknown meeting", _add(Assignment("m9", "pm2", None)), {"unknown-meeting"}),
    ("listed twice", lambda s: s.unscheduled.append(Unscheduled("m1", "")), {"duplicate-meeting"}),
    ("assigned twice", _add(Assignment("m5", "pm1", 1)), {"duplicate-meeting"}),
    ("missing", _drop("m5"), {"missing-meeting"}),
    ("unknown slot", _replace("m5", "zz", 1), {"unknown-slot"}),
    ("double-booked", _replace("m5", "am1", 2), {"participant-double-booked"}),
    ("unavailable", _replace("m1", "pm2", 1), {"participant-unavailable"}),
    (
        "over the cap",
        _both(lambda s: s.unscheduled.clear(), _add(Assignment("m4", "pm2", 1))),
        {"max-meetings-exceeded"},
    ),
    ("table twice", _replace("m5", "am2", 2), {"table-double-booked"}),
    ("no table", _replace("m1", "am1", None), {"table-missing"}),
    ("table online", _replace("m2", "am3", 1), {"table-on-online"}),
    ("table 3 of 2", _replace("m1", "am1", 3), {"table-out-of-range"}),
    ("fixed table", _replace("m3", "am2", 1), {"fixed-moved"}),
    (
        "fixed slot",
        _both(_replace("m2", "pm2", None), _replace("m3", "am3", 2)),
        {"fixed-moved"},
    ),
    ("fixed out", _unschedule("m3"), {"fixed-unscheduled"}),
]


@pytest.mark.parametrize(
    ("change", "kinds"), [(c, k) for _, c, k in BAD], ids=[n for n, _, _ in BAD]
)
def test_each_violation_is_caught(change: Callable[[Schedule], None], kinds: set[str]) -> None:
    s = good()
    change(s)
    report = check(INSTANCE, s)
    assert {v.kind for v in report.violations} == kinds
    assert not report.valid
    assert all(v.message for v in report.violations)


def _windowed(spread: int | None) -> Instance:
    doc = small_doc()
    doc["meetings"][0]["allowed_slots"] = ["am1", "pm1"]
    doc["max_idle_spread"] = spread
    return parse_instance(doc)


def test_a_meeting_outside_its_allowed_slots() -> None:
    instance = _windowed(None)
    assert check(instance, good()).valid  # m1 in am1
    s = good()
    _replace("m1", "am3", 1)(s)
    _replace("m2", "am1", None)(s)
    report = check(instance, s)
    assert [v.kind for v in report.violations] == ["slot-not-allowed"]
    assert "m1 is in am3" in report.violations[0].message


def test_the_idle_spread_bound_and_the_idle_per_participant() -> None:
    report = check(_windowed(1), good())
    assert report.idle_by_participant == {"a": 1, "b": 0, "c": 0, "d": 0}
    assert report.valid
    s = good()
    _replace("m5", "pm3", 1)(s)  # a: am1 . am3 | pm3, still 1
    s.assignments.append(Assignment("m4", "pm1", 2))
    s.unscheduled.clear()
    s.assignments = [a for a in s.assignments if a.meeting != "m2"]
    s.unscheduled.append(Unscheduled("m2", "out"))
    # a: am1 | pm3 (0); c: am2 | pm1 (0); d: pm1 . pm3 (1)
    report = check(_windowed(0), s)
    assert report.idle_by_participant == {"a": 0, "b": 0, "c": 0, "d": 1}
    assert [v.kind for v in report.violations] == ["idle-spread-exceeded"]
    assert check(_windowed(1), s).valid


def test_every_kind_is_covered() -> None:
    covered = set().union(*(k for _, _, k in BAD)) | {"slot-not-allowed", "idle-spread-exceeded"}
    assert covered == set(KINDS)


def test_a_fixed_onsite_meeting_without_a_table_number_may_sit_at_any_table() -> None:
    doc = small_doc()
    doc["meetings"][2]["fixed"] = {"slot": "am2", "table": None}
    s = good()
    _replace("m3", "am2", 1)(s)
    assert check(parse_instance(doc), s).valid
