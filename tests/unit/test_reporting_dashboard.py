"""The organiser dashboard's shaping, dead-letter reading and live fan-out (no I/O)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import ConsumerRecord

from services.reporting import dashboard, deadletters, live, report
from services.reporting.dashboard_api import page

BERLIN = ZoneInfo("Europe/Berlin")
EVENT: dict[str, Any] = {
    "event_id": "e1",
    "name": "Cluster matchmaking <2015>",
    "venue": "Hannover",
    "time_zone": "Europe/Berlin",
    "days": ["2015-04-13", "2015-04-14"],
    "sessions": [{"start": "09:30:00", "end": "11:00:00"}],
    "slot_minutes": 30,
    "tables": 3,
}


def reg(rid: str, kind: str, country: str, sectors: list[str], status: str) -> dict[str, Any]:
    return {
        "registration_id": rid,
        "organisation_type": kind,
        "name": f"Org {rid}",
        "country": country,
        "sectors": sectors,
        "attendance": "on_site",
        "status": status,
    }


def meeting(mid: str, a: str, b: str, kind: str, cancelled: bool = False) -> dict[str, Any]:
    return {
        "meeting_id": mid,
        "meeting_type": kind,
        "mode": "onsite",
        "participants": [a, b],
        "cancelled": cancelled,
    }


def placed(mid: str, hour: int, minute: int, table: int | None) -> dict[str, Any]:
    start = datetime(2015, 4, 13, hour, minute, tzinfo=BERLIN)
    return {
        "meeting_id": mid,
        "event_id": "e1",
        "placed": True,
        "slot_start": start.astimezone(UTC),
        "slot_end": (start + timedelta(minutes=30)).astimezone(UTC),
        "table_no": table,
        "mode": "online" if table is None else "onsite",
    }


REGS = [
    reg("c1", "cluster", "DE", ["ICT", "photonics"], "approved"),
    reg("c2", "cluster", "FR", ["ICT"], "approved"),
    reg("c3", "cluster", "DE", ["aerospace"], "pending"),
    reg("b1", "business", "IT", ["ICT"], "rejected"),
    reg("b2", "business", "DE", [], "approved"),
]
MEETINGS = [
    meeting("m1", "c1", "c2", "Cluster2Cluster"),
    meeting("m2", "b2", "c1", "Business2Cluster"),
    meeting("m3", "c1", "c2", "Cluster2Cluster", cancelled=True),
    meeting("m4", "b2", "c2", "Business2Cluster"),  # accepted, not placed
]
PLACEMENTS = [
    placed("m1", 9, 30, 2),
    placed("m2", 10, 0, None),  # online
    placed("m3", 10, 30, 1),  # cancelled: not on the agenda
]
REQUESTS = [
    {"request_id": r, "meeting_type": t}
    for r, t in [
        ("m1", "Cluster2Cluster"),
        ("m2", "Business2Cluster"),
        ("m3", "Cluster2Cluster"),
        ("m4", "Business2Cluster"),
        ("x1", "Cluster2Cluster"),
    ]
]
RATINGS = [
    {"meeting_id": "m1", "registration_id": "c1", "rating": "cooperation_possible"},
    {"meeting_id": "m1", "registration_id": "c2", "rating": "no_interest"},
    {"meeting_id": "m2", "registration_id": "b2", "rating": "did_not_take_place"},
]
OUTCOMES = [
    {
        "meeting_id": "m1",
        "registration_id": "c1",
        "outcome": "agreement_reached",
        "kind": "joint_event",
    }
]
COUNTS = [
    {"channel": "email", "kind": "application.approved", "outcome": "sent", "n": 3},
    {"channel": "email", "kind": "meeting.placed", "outcome": "sent", "n": 2},
    {"channel": "email", "kind": "meeting.placed", "outcome": "failed", "n": 1},
    {"channel": "webhook", "kind": "meeting.placed", "outcome": "sent", "n": 4},
]
AT = datetime(2026, 1, 1, tzinfo=UTC)
LETTER = {
    "topic": "matching.events.dlq",
    "original_topic": "matching.events",
    "consumer": "scheduling",
    "error_type": "ValueError",
    "event_type": "eu.matchmaking.matching.MeetingAccepted.v1",
    "dead_lettered_at": AT,
}


def build() -> dict[str, Any]:
    the_report = report.build(
        EVENT, REGS, MEETINGS, PLACEMENTS, REQUESTS, [], [], RATINGS, OUTCOMES
    )
    return dashboard.build(
        event=EVENT,
        report=the_report,
        registrations=REGS,
        meetings=MEETINGS,
        placements=PLACEMENTS,
        not_held=[],
        ratings=RATINGS,
        notification_counts=COUNTS,
        event_dead_letters=dashboard.DeadLetters(1, [LETTER]),
        platform_dead_letters=dashboard.DeadLetters(0, []),
        generated_at=AT,
    )


def test_applications_and_approvals_by_country_type_and_sector() -> None:
    apps = build()["applications"]
    assert (apps["applied"], apps["approved"]) == (5, 3)
    assert apps["by_status"] == {
        "pending": 1,
        "approved": 3,
        "waitlisted": 0,
        "rejected": 1,
        "withdrawn": 0,
    }
    assert apps["by_country"] == [
        {"key": "DE", "applied": 3, "approved": 2, "label": "Germany"},
        {"key": "FR", "applied": 1, "approved": 1, "label": "France"},
        {"key": "IT", "applied": 1, "approved": 0, "label": "Italy"},
    ]
    assert apps["by_type"] == [
        {"key": "cluster", "applied": 3, "approved": 2},
        {"key": "business", "applied": 2, "approved": 1},
    ]
    # Once under each sector an organisation names; none for an organisation naming none.
    assert apps["by_sector"] == [
        {"key": "ICT", "applied": 3, "approved": 2},
        {"key": "aerospace", "applied": 1, "approved": 0},
        {"key": "photonics", "applied": 1, "approved": 1},
    ]


def test_the_funnel_is_the_reports_by_meeting_type() -> None:
    flow = build()["funnel"]
    assert flow["stages"] == ["requested", "accepted", "placed", "held"]
    rows = {r["meeting_type"]: r for r in flow["by_type"]}
    assert rows["Cluster2Cluster"] == {
        "meeting_type": "Cluster2Cluster",
        "requested": 3,
        "accepted": 1,
        "placed": 1,
        "held": 1,
    }
    # m2 was placed but a side said it did not take place.
    assert rows["Business2Cluster"]["placed"] == 1 and rows["Business2Cluster"]["held"] == 0
    assert rows["Business2Business"]["requested"] == 0
    assert flow["total"] == {"requested": 5, "accepted": 3, "placed": 2, "held": 1}


def test_the_agenda_grid_has_every_slot_and_table_with_online_meetings_beside() -> None:
    grid = build()["agenda"]
    assert grid["tables"] == [1, 2, 3]
    assert [d["date"] for d in grid["days"]] == ["2015-04-13", "2015-04-14"]
    first = grid["days"][0]["slots"]
    assert [(s["start"], s["end"]) for s in first] == [
        ("09:30", "10:00"),
        ("10:00", "10:30"),
        ("10:30", "11:00"),
    ]
    cell = first[0]["tables"]["2"]
    assert cell["organisations"] == ["Org c1", "Org c2"] and cell["held"]
    assert first[1]["tables"] == {}
    assert [m["meeting_id"] for m in first[1]["online"]] == ["m2"]
    assert not first[1]["online"][0]["held"]
    assert first[2]["tables"] == {}  # the cancelled meeting's placement is not shown
    assert (grid["placed"], grid["at_tables"], grid["online"], grid["unplaced"]) == (2, 1, 1, 1)


def test_an_event_without_a_known_grid_shows_the_slots_and_tables_in_use() -> None:
    event = {**EVENT, "sessions": None, "slot_minutes": None, "tables": None}
    grid = dashboard.agenda(event, REGS, MEETINGS, [placed("m1", 9, 30, 7)], {"m1"})
    assert grid["tables"] == [7]
    assert [(d["date"], [s["start"] for s in d["slots"]]) for d in grid["days"]] == [
        ("2015-04-13", ["09:30"])
    ]


def test_notifications_dead_letters_feedback_and_outcomes() -> None:
    data = build()
    sent = data["notifications"]
    assert (sent["sent"], sent["failed"]) == (9, 1)
    assert sent["by_kind"][0] == {"key": "meeting.placed", "sent": 6, "failed": 1}
    assert sent["by_channel"] == [
        {"key": "email", "sent": 5, "failed": 1},
        {"key": "webhook", "sent": 4, "failed": 0},
    ]
    assert data["dead_letters"]["event"] == {
        "count": 1,
        "latest": [
            {
                "topic": "matching.events.dlq",
                "original_topic": "matching.events",
                "consumer": "scheduling",
                "error_type": "ValueError",
                "event_type": "eu.matchmaking.matching.MeetingAccepted.v1",
                "at": AT.isoformat(),
            }
        ],
    }
    assert data["dead_letters"]["platform"] == {"count": 0, "latest": []}
    fb = data["feedback"]
    assert fb["responses"] == 3 and fb["by_rating"]["cooperation_possible"] == 1
    stacked = {r["meeting_type"]: r for r in fb["by_meeting_type"]}
    assert stacked["Cluster2Cluster"]["no_interest"] == 1
    assert stacked["Business2Cluster"]["did_not_take_place"] == 1
    assert data["outcomes"]["agreements_by_kind"]["joint_event"] == 1
    assert data["totals"] == {
        "applied": 5,
        "approved": 3,
        "meetings_requested": 5,
        "meetings_accepted": 3,
        "meetings_placed": 2,
        "meetings_held": 1,
        "notifications_sent": 9,
        "notifications_failed": 1,
        "dead_letters": 1,
    }
    json.dumps(data)  # the stream sends it as it is


def test_the_page_embeds_the_figures_safely() -> None:
    html = page(build())
    assert "Cluster matchmaking &lt;2015&gt;" in html
    embedded = html.split('id="dashboard-data">')[1].split("</script>")[0]
    assert "<" not in embedded
    assert json.loads(embedded)["event"]["name"] == "Cluster matchmaking <2015>"
    assert 'data-stream="/api/events/e1/dashboard/stream"' in html


def record(
    key: bytes | None, value: bytes | None, headers: Any, timestamp: Any = 1_700_000_000_000
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="scheduling.events.dlq",
        partition=0,
        offset=42,
        timestamp=timestamp,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=headers,
    )


def test_a_dead_letter_is_read_from_its_headers() -> None:
    letter = deadletters.read(
        record(
            b"e1",
            b"{}",
            [
                ("ce_type", b"eu.matchmaking.scheduling.SlotAssigned.v1"),
                ("dlq_error", b"KeyError: 'x'"),
                ("dlq_error_type", b"KeyError"),
                ("dlq_consumer", b"reporting"),
                ("dlq_original_topic", b"scheduling.events"),
            ],
        )
    )
    assert letter.record_key == "e1" and letter.consumer == "reporting"
    assert letter.error_type == "KeyError" and letter.original_topic == "scheduling.events"
    assert letter.event_type == "eu.matchmaking.scheduling.SlotAssigned.v1"
    assert letter.dead_lettered_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert (letter.topic, letter.partition, letter.offset) == ("scheduling.events.dlq", 0, 42)


def test_a_malformed_dead_letter_is_read_as_well_as_it_can_be() -> None:
    for bad in [
        record(None, None, []),
        record(b"\xff\x00bad", b"\x00", [("dlq_consumer", b"\xfe\x00")], timestamp=-1),
        record(b"", b"", None, timestamp=None),
        record(b"k", b"v", [("dlq_error_type", None), ("odd",)], timestamp=10**20),
    ]:
        letter = deadletters.read(bad)
        assert letter.offset == 42
        assert letter.record_key is None or "\x00" not in letter.record_key
        assert letter.consumer is None or "\x00" not in letter.consumer
        assert letter.dead_lettered_at.tzinfo is not None


def test_notify_payloads() -> None:
    assert live.payload_for("e1") == "e1"
    assert live.payload_for(None) == live.EVERY_EVENT
    assert live.payload_for("x" * 600) == live.EVERY_EVENT


async def test_the_hub_wakes_the_streams_of_the_event_that_changed() -> None:
    hub = live.DashboardHub()
    first, other = hub.watch("e1"), hub.watch("e2")
    hub.publish("e1")
    assert first.changed.is_set() and not other.changed.is_set()
    first.changed.clear()
    hub.publish(live.EVERY_EVENT)
    assert first.changed.is_set() and other.changed.is_set()
    hub.unwatch(first)
    assert hub.watchers == 1
    other.changed.clear()
    hub.close()
    assert other.changed.is_set() and hub.closed.is_set()
    await asyncio.sleep(0)
