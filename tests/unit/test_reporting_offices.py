"""Support offices in the read side: an office's share of an event and the figures by
office (pure functions, hand-made rows as in test_reporting_report)."""

from __future__ import annotations

from typing import Any

import pytest

from services.reporting import dashboard_api, offices, report
from shared.access.policy import RULES, Action, Grant, Grants, Relation, Scope
from shared.problems import ProblemError
from tests.unit.test_reporting_report import EVENT, MEETINGS, PLACED, REGS

# c1 and b1 (DE) belong to north, c2 (FR) and c4 (IT) to south; c3 (RO) to no office.
OFFICE_OF: dict[str, str | None] = {
    "c1": "north",
    "b1": "north",
    "c2": "south",
    "c4": "south",
    "c3": None,
}
DECLARED = [
    {"office_id": "north", "name": "EEN North", "countries": ["DE"]},
    {"office_id": "south", "name": "EEN South", "countries": ["FR", "IT"]},
]


def rows(**changes: Any) -> offices.EventRows:
    parts: dict[str, Any] = {
        "event": EVENT,
        "registrations": REGS,
        "meetings": MEETINGS,
        "placements": PLACED,
        "requests": [
            {"request_id": "r1", "meeting_type": "Cluster2Cluster", "participants": ["c1", "c2"]},
            {"request_id": "r2", "meeting_type": "Cluster2Cluster", "participants": ["c3", "c2"]},
            {"request_id": "r3", "meeting_type": "Cluster2Cluster", "participants": None},
        ],
        "attendance": [
            {"registration_id": "c1", "attended": True},
            {"registration_id": "c2", "attended": True},
        ],
        "not_held": [{"meeting_id": "m4"}],
        "feedback": [
            {"meeting_id": "m5", "registration_id": "c2", "rating": "did_not_take_place"},
            {"meeting_id": "m1", "registration_id": "c1", "rating": "cooperation_possible"},
        ],
        "outcomes": [
            {
                "meeting_id": "m1",
                "registration_id": "c1",
                "outcome": "agreement_reached",
                "kind": "joint_event",
            },
        ],
        "side_programme": [],
        **changes,
    }
    return offices.EventRows(**parts)


def test_an_office_share_holds_its_participants_and_what_involves_them() -> None:
    north = offices.share(rows(), OFFICE_OF, "north")
    assert [r["registration_id"] for r in north.registrations] == ["c1", "b1"]
    # Every meeting of the rows includes c1 or b1.
    assert {m["meeting_id"] for m in north.meetings} == {"m1", "m2", "m3", "m4", "m5", "m6"}
    assert [r["request_id"] for r in north.requests] == ["r1"]  # r3: participants unknown
    assert [a["registration_id"] for a in north.attendance] == ["c1"]
    south = offices.share(rows(), OFFICE_OF, "south")
    assert [r["registration_id"] for r in south.registrations] == ["c2", "c4"]
    assert {m["meeting_id"] for m in south.meetings} == {"m1", "m3", "m4", "m5"}
    assert [r["request_id"] for r in south.requests] == ["r1", "r2"]


def test_held_means_the_same_in_an_office_share_as_in_the_event() -> None:
    # m5 was rated did_not_take_place by c2 (south); it is not held for north either.
    whole = rows().report()
    north = offices.share(rows(), OFFICE_OF, "north").report()
    assert whole["meetings"]["held"] == north["meetings"]["held"] == 2  # m1, m2
    south = offices.share(rows(), OFFICE_OF, "south").report()
    assert south["meetings"]["held"] == 1  # m1
    assert south["outcomes"]["agreements"] == 1 and south["feedback"]["responses"] == 2


def test_figures_by_office_with_a_line_for_participants_without_one() -> None:
    lines = offices.by_office(rows(), DECLARED, OFFICE_OF)
    assert lines == [
        {
            "office_id": "north",
            "name": "EEN North",
            "registrations": 2,
            "approved": 2,
            "meetings_requested": 1,
            "meetings_held": 2,
            "feedback_responses": 2,
            "agreements": 1,
        },
        {
            "office_id": "south",
            "name": "EEN South",
            "registrations": 2,
            "approved": 1,
            "meetings_requested": 2,
            "meetings_held": 1,
            "feedback_responses": 2,
            "agreements": 1,
        },
        {
            "office_id": None,
            "name": offices.UNASSIGNED,
            "registrations": 1,
            "approved": 1,
            "meetings_requested": 1,
            "meetings_held": 0,
            "feedback_responses": 0,
            "agreements": 0,
        },
    ]


def test_offices_not_declared_are_listed_by_their_id() -> None:
    assert offices.offices_of(DECLARED[:1], OFFICE_OF) == [
        {"office_id": "north", "name": "EEN North"},
        {"office_id": "south", "name": "south"},
    ]


def test_the_report_shows_the_office_lines_and_a_co_organisers_office() -> None:
    built = rows().report()
    built["by_office"] = offices.by_office(rows(), DECLARED, OFFICE_OF)
    text = report.markdown(built)
    assert "## By support office" in text
    assert "| EEN North (north) | 2 registrations, 2 approved, 1 meetings requested" in text
    mine = offices.share(rows(), OFFICE_OF, "south").report()
    mine["office"] = {"office_id": "south", "name": "EEN South"}
    assert "| EEN South | south: its participants only |" in report.markdown(mine)
    assert "By support office" not in report.markdown(mine)


def test_co_organisers_read_the_report_and_dashboard_of_their_office() -> None:
    assert RULES[Action.VIEW_REPORT].by[Relation.CO_ORGANISER] is Grants.OWN_OFFICE
    assert Relation.PARTICIPANT not in RULES[Action.VIEW_REPORT].by


def test_a_grant_limits_the_dashboard_to_an_office_or_not_at_all() -> None:
    assert dashboard_api.office_of(Grant(None, Relation.LEAD_ORGANISER, Scope.EVENT)) is None
    office = Grant(None, Relation.CO_ORGANISER, Scope.OFFICE, office="north")
    assert dashboard_api.office_of(office) == "north"
    with pytest.raises(ProblemError):
        dashboard_api.office_of(Grant(None, Relation.CO_ORGANISER, Scope.OFFICE))
