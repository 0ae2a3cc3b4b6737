"""A requester's time preference, from matching's API to scheduling's agenda.

Registration, matching and scheduling run as real subprocesses on fresh databases and
the real broker. A meeting requested for the morning is placed in the morning, one for
the afternoon in the afternoon; a malformed preference is refused with a problem
naming the field, storing nothing; and a morning preference against the organiser's
afternoon-only rule for the meeting type leaves the meeting unscheduled, saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.integration.notification_support import free_port
from tests.integration.support import Infra, service_platform, wait_until
from tests.integration.support import RunningPlatform as Platform
from tests.integration.test_matching_e2e import ADMIN_KEY, World, assert_problem, world

pytestmark = pytest.mark.integration

SERVICES = ("registration", "matching", "scheduling")
SESSIONS = [{"start": "09:00", "end": "11:00"}, {"start": "14:00", "end": "16:00"}]


@pytest.fixture(scope="module")
async def platform(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, scheduler_lock: None
) -> AsyncIterator[Platform]:
    async with service_platform(
        infra,
        {svc: free_port() for svc in SERVICES},
        tmp_path_factory.mktemp("time-preference"),
        label="e2e-time-preference",
        admin_key=ADMIN_KEY,
    ) as running:
        yield running


async def _request(w: World, a: int, b: int, preference: Any) -> Any:
    body = {"recipient_id": w.orgs[b].registration_id, "time_preference": preference}
    return await w.post(f"/events/{w.event_id}/meeting-requests", w.orgs[a].key, body)


async def _agreed(w: World, a: int, b: int, preference: Any) -> str:
    r = await _request(w, a, b, preference)
    assert r.status_code == 201, r.text
    request = r.json()
    assert request["time_preference"] == preference
    accepted = await w.post(f"/meeting-requests/{request['request_id']}/accept", w.orgs[b].key)
    assert accepted.status_code == 200, accepted.text
    return str(request["request_id"])


async def test_a_morning_preference_is_placed_in_the_morning(platform: Platform) -> None:
    scheduling = f"{platform.urls['scheduling']}/api"
    async with httpx.AsyncClient(timeout=30) as http:
        w = await world(
            http,
            platform,
            ["business"] * 4,
            sessions=SESSIONS,
            meeting_types=["Business2Business"],
        )
        eid = w.event_id

        # Refused, naming the field, storing nothing.
        before = (await w.get(f"/events/{eid}/meeting-requests", w.organiser)).json()
        for bad, field in [
            ({}, "time_preference"),
            ({"part_of_day": "evening"}, "time_preference.part_of_day"),
            ({"day": 0}, "time_preference.day"),
            ({"slots": ["nowhere"]}, "time_preference.slots[0]"),
            ({"part_of_day": "morning", "colour": "red"}, "time_preference.colour"),
        ]:
            assert_problem(await _request(w, 0, 1, bad), 422, field)
        after = (await w.get(f"/events/{eid}/meeting-requests", w.organiser)).json()
        assert after == before

        async def scheduling_knows_everyone() -> bool:
            r = await http.get(f"{scheduling}/events/{eid}/attendees", headers=w.organiser)
            return r.status_code == 200 and len(r.json()) == len(w.orgs)

        await wait_until(scheduling_knows_everyone, limit=60, what="scheduling to catch up")

        # The afternoon one first: without its preference the morning one would then go
        # next to it (least idle time for the first organisation), into the afternoon.
        afternoon = await _agreed(w, 0, 2, {"part_of_day": "afternoon", "day": 1})
        morning = await _agreed(w, 0, 1, {"part_of_day": "morning"})

        async def starts() -> dict[str, datetime]:
            r = await http.get(f"{scheduling}/events/{eid}/agenda", headers=w.organiser)
            if r.status_code != 200:
                return {}
            out = {}
            for slot in r.json()["slots"]:
                for cell in slot["tables"]:
                    if cell["meeting"]:
                        out[cell["meeting"]["meeting_id"]] = datetime.fromisoformat(slot["start"])
            return out

        async def both_placed() -> bool:
            return {morning, afternoon} <= (await starts()).keys()

        await wait_until(both_placed, limit=60, interval=0.2, what="both meetings placed")
        placed = await starts()
        # slot starts are in the event's zone (Europe/Berlin): morning is before noon there
        assert placed[morning].hour < 12, placed
        assert placed[afternoon].hour >= 14, placed

        # The organiser allows Business2Business meetings in the afternoon only: a
        # morning preference then leaves no slot, and the meeting says why.
        r = await http.get(f"{scheduling}/events/{eid}/agenda", headers=w.organiser)
        pm = [
            s["slot_id"] for s in r.json()["slots"] if datetime.fromisoformat(s["start"]).hour >= 12
        ]
        rule = f"{scheduling}/events/{eid}/slot-rules/Business2Business"
        r = await http.put(rule, headers=w.organiser, json={"allowed_slots": pm})
        assert r.status_code == 200, r.text
        stuck = await _agreed(w, 1, 3, {"part_of_day": "morning"})

        async def reason() -> str | None:
            r = await http.get(f"{scheduling}/events/{eid}/unscheduled", headers=w.organiser)
            found = [u["reason"] for u in r.json() if u["meeting_id"] == stuck]
            return found[0] if found and found[0] else None

        async def explained() -> bool:
            return (await reason() or "").startswith("the requester's time preference")

        await wait_until(
            explained, limit=60, interval=0.2, what="the meeting reported unschedulable"
        )
        assert "organiser's rule for Business2Business" in (await reason() or "")
