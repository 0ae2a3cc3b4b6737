"""The scheduling service end to end: a subprocess on a fresh database, over the real broker.

The test plays registration and matching: it produces their events for a fresh brokerage
event onto `registration.events` and `matching.events` (accepts and cancels from several
tasks at once), then checks through scheduling's API that the agenda is valid, that
SlotAssigned events reach `scheduling.events`, and that lock, re-optimisation and
publication work, with a cancellation after publication releasing its slot. The
service runs under the tests' topic prefix, so those are `test.registration.events`
and so on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.scheduling import domain
from services.scheduling.domain import AgendaMeeting, Attendee, MeetingStatus, Place
from services.scheduling.grid import EventGrid
from services.scheduling.solver import Schedule, check
from shared.auth import digest
from shared.contracts.base import EventPayload
from shared.envelope import Envelope
from tests.integration.support import (
    Infra,
    read_topic,
    send_envelope,
    service_platform,
    topic_under_test,
    wait_until,
)
from tests.unit.scheduling_service import factories as f

pytestmark = pytest.mark.integration

PORT = 18033
ADMIN_KEY = "e2e-scheduling-admin-key"
REGISTRATION_EVENTS = topic_under_test("registration.events")
MATCHING_EVENTS = topic_under_test("matching.events")
SCHEDULING_EVENTS = topic_under_test("scheduling.events")
BERLIN = ZoneInfo("Europe/Berlin")
MORNING = (datetime(2031, 6, 2, 9, tzinfo=BERLIN), datetime(2031, 6, 2, 12, tzinfo=BERLIN))


@pytest.fixture
async def service(infra: Infra, tmp_path: Path, scheduler_lock: None) -> AsyncIterator[str]:
    async with service_platform(
        infra, {"scheduling": PORT}, tmp_path, label="e2e-scheduling", admin_key=ADMIN_KEY
    ) as running:
        yield running.urls["scheduling"]


def _valid(agenda: dict[str, Any], grid: EventGrid, attendees: dict[str, Attendee]) -> Schedule:
    """Rebuild instance and schedule from the API's agenda; the checker must find no fault."""
    meetings: list[AgendaMeeting] = []
    for slot in agenda["slots"]:
        cells = [(c["table"], c["meeting"]) for c in slot["tables"] if c["meeting"]]
        cells += [(None, m) for m in slot["online"]]
        for table, m in cells:
            assert m["table"] == table
            place = Place(slot["slot_id"], table)
            meetings.append(
                AgendaMeeting(
                    m["meeting_id"],
                    tuple(m["participants"]),
                    m["mode"],
                    MeetingStatus.PLACED,
                    place,
                )
            )
    instance = domain.build_instance(grid, attendees, meetings)
    schedule = domain.current_schedule(meetings)
    report = check(instance, schedule)
    assert report.valid, report.violations
    for m in meetings:
        remote = any(attendees[p].attendance == "remote" for p in m.participants)
        assert m.mode == ("online" if remote else "onsite")
    return schedule


async def test_agenda_over_the_broker(infra: Infra, service: str) -> None:
    eid = f"ev-e2e-{uuid.uuid4().hex[:12]}"
    org_key, admin = f"org-key-{eid}", {"X-API-Key": ADMIN_KEY}
    organiser = {"X-API-Key": org_key}
    people = [f"{eid}-p{i}" for i in range(8)]
    remote = {people[6], people[7]}
    keys = {p: {"X-API-Key": f"key-{p}"} for p in people}
    registration: list[EventPayload] = [
        f.organiser(f"organiser-{eid}", digest(org_key)),
        f.event(eid, f"organiser-{eid}", tables=2, cap=4),
    ]
    for p in people:
        avail = (MORNING,) if p == people[0] else ()
        registration.append(
            f.registered(
                eid, p, digest(keys[p]["X-API-Key"]), remote=p in remote, availability=avail
            )
        )
        registration.append(f.approved(eid, p))
    grid = EventGrid(
        eid,
        f"organiser-{eid}",
        "Europe/Berlin",
        (f.DAY,),
        tuple((s.start, s.end) for s in f.event(eid, "x").sessions),
        30,
        2,
        4,
    )
    attendees = {
        p: Attendee(p, "remote" if p in remote else "on_site", (MORNING,) if p == people[0] else ())
        for p in people
    }
    pairs = [(a, b) for i, a in enumerate(people) for b in people[i + 1 :]][::2]  # 14 meetings
    cancelled = {f"{eid}-m{k}" for k in (1, 5, 9)}

    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for payload in registration:
            await send_envelope(producer, REGISTRATION_EVENTS, Envelope.wrap(payload, key=eid))

        async def play(task: int) -> None:  # accepts, and some cancels, from four tasks
            for k in range(task, len(pairs), 4):
                a, b = pairs[k]
                mid = f"{eid}-m{k}"
                accept = f.accepted(eid, mid, a, b, remote=(a in remote, b in remote))
                await send_envelope(producer, MATCHING_EVENTS, Envelope.wrap(accept, key=eid))
                if mid in cancelled:
                    cancel = Envelope.wrap(f.cancelled(eid, mid, a, b), key=eid)
                    await send_envelope(producer, MATCHING_EVENTS, cancel)

        await asyncio.gather(*(play(t) for t in range(4)))

        async with httpx.AsyncClient(base_url=f"{service}/api", timeout=30) as http:

            async def agenda() -> dict[str, Any]:
                r = await http.get(f"/events/{eid}/agenda", headers=organiser)
                assert r.status_code in (200, 401, 404), r.text  # 401/404: not caught up
                return r.json() if r.status_code == 200 else {"counts": {}}

            async def settled() -> bool:
                counts: dict[str, int] = (await agenda())["counts"]
                return counts.get("cancelled", 0) == 3 and sum(counts.values()) == len(pairs)

            await wait_until(settled, limit=60, interval=0.2, what="scheduling to catch up")
            first = await agenda()
            schedule = _valid(first, grid, attendees)
            assert len(schedule.assignments) + first["counts"].get("unscheduled", 0) == 11
            placed = {a.meeting for a in schedule.assignments}
            assert not placed & cancelled

            # Reads: the unscheduled list, a participant's agenda in two zones, auth.
            r = await http.get(f"/events/{eid}/unscheduled", headers=organiser)
            assert r.status_code == 200 and all(u["reason"] for u in r.json())
            me = people[1]
            url = f"/events/{eid}/participants/{me}/agenda"
            mine = await http.get(url, headers=keys[me], params={"tz": "America/New_York"})
            assert mine.status_code == 200, mine.text
            for m in mine.json()["meetings"]:
                start = datetime.fromisoformat(m["start"])
                assert start == datetime.fromisoformat(m["local_start"])
                assert m["local_start"].endswith("-04:00") and m["start"].endswith("+02:00")
            assert (await http.get(url, headers=keys[people[2]])).status_code == 403
            # The event's agenda, as a participant sees it: its own meetings only.
            own = await http.get(f"/events/{eid}/agenda", headers=keys[me])
            assert own.status_code == 200
            seen = [
                m
                for slot in own.json()["slots"]
                for m in [t["meeting"] for t in slot["tables"] if t["meeting"]] + slot["online"]
            ]
            assert seen and all(me in m["participants"] for m in seen)
            bad = await http.get(url, headers=keys[me], params={"tz": "Mars/Olympus"})
            assert bad.status_code == 422 and bad.headers["content-type"].startswith(
                "application/problem+json"
            )

            # Lock one meeting, re-optimise: it stays; the agenda stays valid.
            locked = schedule.assignments[0]
            r = await http.post(f"/events/{eid}/meetings/{locked.meeting}/lock", headers=organiser)
            assert r.status_code == 200, r.text
            r = await http.post(
                f"/events/{eid}/reoptimise", headers=organiser, json={"time_limit_seconds": 1}
            )
            assert r.status_code == 200, r.text
            assert r.json()["placed"] >= len(schedule.assignments)
            after = _valid(await agenda(), grid, attendees)
            assert locked in after.assignments

            # A time window for the meetings' type (Business2Business): not the first slot.
            # Re-optimisation keeps every unlocked meeting out of it; the locked one stays.
            first_slot = grid.slots[0].id
            rest = [s.id for s in grid.slots[1:]]
            rules = f"/events/{eid}/slot-rules"
            r = await http.put(
                f"{rules}/Business2Business", headers=organiser, json={"allowed_slots": rest}
            )
            assert r.status_code == 200 and r.json()["allowed_slots"] == rest, r.text
            bad_slot = {"allowed_slots": ["nowhere"]}
            r = await http.put(f"{rules}/Business2Business", headers=organiser, json=bad_slot)
            assert r.status_code == 422, r.text
            r = await http.put(
                f"{rules}/Lunch2Lunch", headers=organiser, json={"allowed_slots": []}
            )
            assert r.status_code == 404, r.text
            r = await http.get(rules, headers=organiser)
            assert r.json()["windows"] == {"Business2Business": rest}, r.text
            r = await http.post(
                f"/events/{eid}/reoptimise",
                headers=organiser,
                json={"time_limit_seconds": 1, "max_idle_spread": 3},
            )
            assert r.status_code == 200, r.text
            assert {"proven_optimal", "bound"} <= r.json().keys()
            windowed = await agenda()
            after = _valid(windowed, grid, attendees)
            assert locked in after.assignments
            assert all(
                a.slot != first_slot for a in after.assignments if a.meeting != locked.meeting
            )
            idle = windowed["idle"]
            assert idle["spread"] <= 3 and sum(idle["distribution"].values()) == len(
                idle["by_participant"]
            )

            # Publish; then re-optimisation is refused and a cancellation releases its slot.
            r = await http.post(f"/events/{eid}/publish", headers=organiser)
            assert r.status_code == 200, r.text
            r = await http.post(f"/events/{eid}/reoptimise", headers=admin)
            assert r.status_code == 409, r.text
            gone = next(a for a in after.assignments if a.meeting != locked.meeting)
            k = int(gone.meeting.rsplit("-m", 1)[1])
            cancel = Envelope.wrap(f.cancelled(eid, gone.meeting, *pairs[k]), key=eid)
            await send_envelope(producer, MATCHING_EVENTS, cancel)

            async def released() -> bool:
                return bool((await agenda())["counts"].get("cancelled", 0) == 4)

            await wait_until(released, limit=30, interval=0.2, what="the release")
            final = _valid(await agenda(), grid, attendees)
            assert {a.meeting for a in final.assignments} == {
                a.meeting for a in after.assignments
            } - {gone.meeting}
    finally:
        await producer.stop()

    # The events on (test.)scheduling.events for this brokerage event.
    async def published() -> list[dict[str, Any]]:
        records = await read_topic(infra.bootstrap_servers, SCHEDULING_EVENTS)
        mine = [r for r in records if r.key == eid.encode()]
        return [{"type": dict(r.headers)["ce_type"].decode(), **json.loads(r.value)} for r in mine]

    async def all_there() -> bool:
        types = [e["type"] for e in await published()]
        return any(t.endswith("AgendaPublished.v1") for t in types) and any(
            t.endswith("SlotReleased.v1") for t in types
        )

    await wait_until(all_there, limit=30, interval=0.5, what=SCHEDULING_EVENTS)
    events = await published()
    assigned = [e for e in events if e["type"].endswith("SlotAssigned.v1")]
    assert {e["meeting_id"] for e in assigned} >= {a.meeting for a in schedule.assignments}
    releases = [e for e in events if e["type"].endswith("SlotReleased.v1")]
    assert {"meeting_id": gone.meeting, "reason": "meeting_cancelled"}.items() <= releases[
        -1
    ].items()
