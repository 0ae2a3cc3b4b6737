"""Event editing end to end: the organiser changes an event's settings over registration's
API (PATCH /api/events/{id}); the change reaches every service that keeps a copy of them
(matching's caps and meeting types, scheduling's grid, reporting's and notification's
event), and scheduling moves a placed meeting whose slot no longer names the same time.
Refused changes answer RFC 9457 problems naming the field, and change nothing.

Five services as subprocesses on fresh databases, over the real broker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.scheduling.domain import still_fits
from services.scheduling.grid import EventGrid
from tests.integration.support import Infra, RunningPlatform, service_platform, wait_until

pytestmark = pytest.mark.integration

ADMIN_KEY = "event-settings-admin-key"
PORTS = {
    "registration": 19341,
    "matching": 19342,
    "scheduling": 19343,
    "notification": 19344,
    "reporting": 19345,
}


@pytest.fixture
async def platform(
    infra: Infra, tmp_path: Path, scheduler_lock: None
) -> AsyncIterator[RunningPlatform]:
    async with service_platform(
        infra, PORTS, tmp_path, label="e2e-settings", admin_key=ADMIN_KEY
    ) as running:
        yield running


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()


async def _row(dsn: str, query: str, *args: Any) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(query, *args)
        return row
    finally:
        await conn.close()


async def test_a_settings_change_reaches_every_service_and_moves_a_misplaced_meeting(
    platform: RunningPlatform,
) -> None:
    reg, dsns = platform.urls["registration"], platform.dsns
    first = date.today() + timedelta(days=40)
    async with httpx.AsyncClient(timeout=30) as http:

        async def organiser() -> dict[str, str]:
            made = _ok(
                await http.post(
                    f"{reg}/api/organisers",
                    headers={"X-API-Key": ADMIN_KEY},
                    json={"name": "Settings organiser"},
                )
            )
            return {"X-API-Key": made["api_key"]}

        lead, stranger = await organiser(), await organiser()
        event = _ok(
            await http.post(
                f"{reg}/api/events",
                headers=lead,
                json={
                    "name": "Settings test",
                    "venue": "Hall 1",
                    "time_zone": "Europe/Berlin",
                    "days": [first.isoformat(), (first + timedelta(days=1)).isoformat()],
                    "sessions": [{"start": "10:00", "end": "12:00"}],
                    "slot_minutes": 30,
                    "tables": 5,
                    "meeting_types": ["Cluster2Cluster", "Business2Cluster"],
                    "registration_deadline": (datetime.now(UTC) + timedelta(days=20)).isoformat(),
                },
            )
        )
        eid = event["event_id"]
        ids = []
        for name in ("Alpha Cluster", "Beta Cluster"):
            made = _ok(
                await http.post(
                    f"{reg}/api/events/{eid}/registrations",
                    json={
                        "organisation_type": "cluster",
                        "name": name,
                        "country": "DE",
                        "sectors": ["photonics"],
                        "representatives": [{"name": "R", "email": "r@x.example"}],
                    },
                )
            )
            _ok(
                await http.post(
                    f"{reg}/api/registrations/{made['registration_id']}/approve", headers=lead
                )
            )
            ids.append(made["registration_id"])

        # An organiser-arranged meeting, once matching knows both participants.
        async def arranged() -> bool:
            r = await http.post(
                f"{platform.urls['matching']}/api/events/{eid}/meetings",
                headers=lead,
                json={"participants": ids},
            )
            return r.status_code == 201

        await wait_until(arranged, limit=60, interval=0.5, what="matching to arrange the meeting")
        placed_sql = "SELECT * FROM meetings WHERE event_id = $1 AND status = 'placed'"

        async def placed() -> bool:
            return await _row(dsns["scheduling"], placed_sql, eid) is not None

        await wait_until(placed, limit=60, interval=0.5, what="scheduling to place the meeting")
        before = await _row(dsns["scheduling"], placed_sql, eid)
        assert before is not None and before["slot_id"].startswith("d1-")

        # Refusals: each names its field, and nothing changes.
        url = f"{reg}/api/events/{eid}"
        refusals = [
            (lead, {"slot_minutes": 45}, 422, "sessions[0]"),
            (
                lead,
                {"registration_deadline": f"{first + timedelta(days=5)}T12:00:00+00:00"},
                422,
                "registration_deadline",
            ),
            (lead, {"time_zone": "UTC"}, 422, "time_zone"),
            (lead, {"tables": None}, 422, "tables"),
            (lead, {"tables": 5}, 409, "settings"),
        ]
        for key, body, status, field in refusals:
            r = await http.patch(url, headers=key, json=body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
        assert (await http.patch(url, headers=stranger, json={"tables": 2})).status_code == 403
        assert (await http.patch(url, json={"tables": 2})).status_code == 401
        assert _ok(await http.get(url))["tables"] == 5

        # A day before the others: every slot id names another time now.
        earlier = first - timedelta(days=1)
        days = [earlier, first, first + timedelta(days=1)]
        changed = _ok(
            await http.patch(
                url,
                headers=lead,
                json={
                    "name": "Settings test, renamed",
                    "venue": "Hall 4",
                    "days": [d.isoformat() for d in days],
                    "tables": 2,
                    "max_meetings_per_participant": 3,
                    "meeting_types": ["Cluster2Cluster"],
                    "request_expiry_hours": 24,
                },
            )
        )
        assert changed["changed"] == [
            "name",
            "venue",
            "days",
            "tables",
            "meeting_types",
            "max_meetings_per_participant",
            "request_expiry_hours",
        ]
        shown = _ok(await http.get(url))
        assert (shown["venue"], shown["tables"], len(shown["slots"])) == ("Hall 4", 2, 12)
        assert [e["name"] for e in _ok(await http.get(f"{reg}/api/events"))] == [
            "Settings test, renamed"
        ]

    async def copies_changed() -> bool:
        matching = await _row(
            dsns["matching"],
            "SELECT name, meeting_types, max_meetings_per_participant, request_expiry_hours"
            " FROM brokerage_events WHERE event_id = $1",
            eid,
        )
        grid = await _row(
            dsns["scheduling"],
            "SELECT days, tables, max_meetings FROM event_grids WHERE event_id = $1",
            eid,
        )
        reporting = await _row(
            dsns["reporting"],
            "SELECT name, venue, days, tables FROM brokerage_events WHERE event_id = $1",
            eid,
        )
        notification = await _row(
            dsns["notification"],
            "SELECT name, venue FROM brokerage_events WHERE event_id = $1",
            eid,
        )
        return (
            matching is not None
            and tuple(matching) == ("Settings test, renamed", ["Cluster2Cluster"], 3, 24)
            and grid is not None
            and (len(json.loads(grid["days"])), grid["tables"], grid["max_meetings"]) == (3, 2, 3)
            and reporting is not None
            and (reporting["venue"], len(json.loads(reporting["days"])), reporting["tables"])
            == ("Hall 4", 3, 2)
            and notification is not None
            and tuple(notification) == ("Settings test, renamed", "Hall 4")
        )

    await wait_until(copies_changed, limit=60, interval=0.5, what="every service's copy")

    # Scheduling moved the meeting to a slot that names its time in the new grid.
    new_grid = EventGrid(eid, None, "Europe/Berlin", tuple(days), ((time(10), time(12)),), 30, 2)

    async def moved() -> bool:
        row = await _row(dsns["scheduling"], placed_sql, eid)
        return row is not None and still_fits(
            new_grid, row["slot_id"], row["slot_start"], row["table_no"]
        )

    await wait_until(moved, limit=60, interval=0.5, what="scheduling to move the meeting")
    after = await _row(dsns["scheduling"], placed_sql, eid)
    assert after is not None and after["table_no"] <= 2
