"""The event report's definitions, on hand-made projection rows (no I/O)."""

from __future__ import annotations

from typing import Any

from scripts.replay_hannover import b2c_pairs, c2c_pairs
from services.reporting import report

EVENT = {
    "event_id": "e1",
    "name": "Cluster matchmaking",
    "venue": "Hannover",
    "time_zone": "Europe/Berlin",
    "days": ["2015-04-13", "2015-04-14"],
}


def reg(
    rid: str, kind: str, country: str, *, status: str = "approved", remote: bool = False
) -> dict[str, Any]:
    return {
        "registration_id": rid,
        "organisation_type": kind,
        "name": f"Org {rid}",
        "country": country,
        "sectors": [f"sector-{rid}"],
        "attendance": "remote" if remote else "on_site",
        "status": status,
    }


def meeting(
    mid: str, a: str, b: str, kind: str = "Cluster2Cluster", **extra: Any
) -> dict[str, Any]:
    return {
        "meeting_id": mid,
        "meeting_type": kind,
        "mode": "onsite",
        "participants": [a, b],
        "cancelled": False,
        **extra,
    }


REGS = [
    reg("c1", "cluster", "DE"),
    reg("c2", "cluster", "FR"),
    reg("c3", "cluster", "RO", remote=True),
    reg("c4", "cluster", "IT", status="rejected"),
    reg("b1", "business", "DE"),
]
MEETINGS = [
    meeting("m1", "c1", "c2"),
    meeting("m2", "b1", "c1", "Business2Cluster"),
    meeting("m3", "c1", "c2", cancelled=True),
    meeting("m4", "b1", "c2", "Business2Cluster"),  # placed, marked not held
    meeting("m5", "c2", "b1", "Business2Cluster"),  # placed, rated did_not_take_place
    meeting("m6", "c1", "b1", "Business2Cluster"),  # never placed
]
PLACED = [{"meeting_id": m, "placed": True} for m in ("m1", "m2", "m3", "m4", "m5")]


def build(**changes: Any) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "registrations": REGS,
        "meetings": MEETINGS,
        "placements": PLACED,
        "requests": [],
        "attendance": [],
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
        **changes,
    }
    return report.build(EVENT, **parts)


def test_applied_counts_every_registration_whatever_its_status() -> None:
    applied = build()["applied"]
    assert (applied["organisations"], applied["clusters"], applied["countries"]) == (5, 4, 4)


def test_held_means_agreed_placed_and_not_reported_as_not_held() -> None:
    meetings = build()["meetings"]
    assert meetings["held"] == 2
    assert meetings["by_type"] == {
        "cluster2cluster": 1,
        "business2cluster": 1,
        "business2business": 0,
    }
    assert meetings["not_held"] == 2


def test_without_attendance_on_site_approved_with_a_held_meeting_took_part() -> None:
    built = build()
    assert built["participation_basis"].startswith("no attendance recorded")
    assert built["participated"]["organisations"] == 3  # c1, c2, b1; not remote c3
    assert built["remote"]["clusters"] == 1


def test_recorded_attendance_decides_participation() -> None:
    built = build(
        attendance=[
            {"registration_id": "c1", "attended": True},
            {"registration_id": "c2", "attended": False},
            {"registration_id": "c4", "attended": True},  # rejected: does not count
        ]
    )
    assert built["participation_basis"] == "attendance recorded by the organiser"
    assert built["participated"]["organisations"] == 1
    assert built["participated"]["by_country"] == {"DE": 1}


def test_feedback_and_outcomes_are_counted() -> None:
    built = build()
    assert built["feedback"]["by_rating"]["cooperation_possible"] == 1
    assert built["outcomes"]["agreements_by_kind"]["joint_event"] == 1


def test_markdown_and_page_show_the_figures() -> None:
    built = build()
    assert "| Meetings held | 2 |" in report.markdown(built)
    page = report.page(built)
    assert page.startswith("<!doctype html>") and "Cluster matchmaking" in page


def test_the_replays_meeting_plan_has_distinct_pairs() -> None:
    pairs = c2c_pairs(19, 45)
    assert len({frozenset(p) for p in pairs}) == 45 and all(a != b for a, b in pairs)
    assert len(set(b2c_pairs(6, 19, 18))) == 18
