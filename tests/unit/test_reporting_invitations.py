"""Who is asked to rate which meetings in a round of feedback invitations (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.reporting import invitations

NOW = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)
NAMES = {"a": "Alpha", "b": "Beta", "c": "Gamma"}


def held(mid: str, a: str, b: str, hours_ago: float) -> dict[str, Any]:
    start = NOW - timedelta(hours=hours_ago)
    return {
        "meeting_id": mid,
        "participants": [a, b],
        "slot_start": start,
        "slot_end": start + timedelta(minutes=30),
    }


def url(mid: str) -> str:
    return f"https://r/{mid}/feedback"


def test_each_side_gets_its_ended_meetings_in_time_order_with_the_partners_name() -> None:
    rows = [held("m2", "a", "c", 2), held("m1", "a", "b", 5), held("m3", "b", "c", 0.25)]
    ended = invitations.held_and_ended(rows, NOW)
    assert [m["meeting_id"] for m in ended] == ["m2", "m1"]  # m3 ends in 15 minutes
    got = invitations.invitations(ended, NAMES, set(), url)
    assert [(p.registration_id, [m.meeting_id for m in p.meetings]) for p in got] == [
        ("a", ["m1", "m2"]),
        ("b", ["m1"]),
        ("c", ["m2"]),
    ]
    first = got[0].meetings[0]
    assert (first.partner_id, first.partner_name, first.feedback_url) == ("b", "Beta", url("m1"))
    assert first.slot_start == NOW - timedelta(hours=5)


def test_a_side_that_rated_is_not_asked_again_and_unknown_partners_have_a_placeholder() -> None:
    rows = [held("m1", "a", "b", 5), held("m2", "a", "x", 2)]
    got = invitations.invitations(rows, NAMES, {("m1", "b"), ("m1", "a")}, url)
    assert [(p.registration_id, [m.meeting_id for m in p.meetings]) for p in got] == [
        ("a", ["m2"]),
        ("x", ["m2"]),
    ]
    assert got[0].meetings[0].partner_name == "another participant"
    assert invitations.invitations(rows[:1], NAMES, {("m1", "b"), ("m1", "a")}, url) == []
