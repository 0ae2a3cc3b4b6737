"""Two brokerage events on a live platform of the five services, for the access tests.

Event A (one lead organiser, support offices "north" and "south", a co-organiser for
"north", an approved participant in each office, a pending meeting request between
them, a side-programme item, a webhook) and event B (another organiser, one approved
participant). Everything is made through the public HTTP APIs; `build_world` returns
once every service has learnt the keys and registrations from `registration.events`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.integration.notification_support import free_port
from tests.integration.support import Infra, RunningPlatform, service_platform, wait_until

SERVICES = ("registration", "matching", "scheduling", "notification", "reporting")
# Operations every service has that are no API of the platform.
PLUMBING = frozenset({"/health", "/ready", "/metrics"})


@asynccontextmanager
async def five_services(
    infra: Infra, log_dir: Path, *, label: str, admin_key: str
) -> AsyncIterator[RunningPlatform]:
    """The five services on free ports and fresh databases while the block runs."""
    ports = {svc: free_port() for svc in SERVICES}
    async with service_platform(infra, ports, log_dir, label=label, admin_key=admin_key) as p:
        yield p


def ok(response: httpx.Response) -> Any:
    assert response.is_success, (
        f"{response.request.method} {response.request.url}: "
        f"{response.status_code} {response.text[:500]}"
    )
    return response.json()


def key(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key}


@dataclass(frozen=True)
class Participant:
    registration_id: str
    api_key: str


@dataclass(frozen=True)
class World:
    admin_key: str
    event_a: str
    event_b: str
    lead_a: str  # the organiser key of A
    organiser_b: str  # the organiser key of B
    co_organiser_north: str  # A's co-organiser key for office "north"
    co_organiser_north_id: str
    north: Participant  # A's approved participant of office "north"
    south: Participant  # A's approved participant of office "south"
    participant_b: Participant  # B's approved participant
    request_id: str  # a pending meeting request of A, north -> south
    item_id: str  # a side-programme item of A
    endpoint_id: str  # a webhook of A
    dashboard_token_b: str  # the token of B's signed dashboard link


def _event_body(name: str, offices: list[dict[str, Any]]) -> dict[str, Any]:
    first = date.today() + timedelta(days=40)
    return {
        "name": name,
        "venue": "Messe, Hall 2",
        "time_zone": "Europe/Berlin",
        "days": [first.isoformat()],
        "sessions": [{"start": "09:00", "end": "12:00"}],
        "slot_minutes": 30,
        "tables": 4,
        "meeting_types": ["Cluster2Cluster", "Business2Cluster", "Business2Business"],
        "registration_deadline": (datetime.now(UTC) + timedelta(days=20)).isoformat(),
        "support_offices": offices,
    }


def registration_body(name: str, country: str, office: str | None) -> dict[str, Any]:
    return {
        "organisation_type": "business",
        "name": name,
        "country": country,
        "sectors": ["photonics"],
        "technologies": ["lasers"],
        "offers": ["laser optics for machine builders"],
        "requests": ["partners for joint projects"],
        "markets": ["EU"],
        "attendance": "on_site",
        "representatives": [{"name": f"Contact of {name}", "email": "contact@example.com"}],
        "support_office": office,
    }


async def build_world(http: httpx.AsyncClient, urls: Mapping[str, str], admin_key: str) -> World:
    reg = urls["registration"]
    lead_a = ok(
        await http.post(f"{reg}/api/organisers", headers=key(admin_key), json={"name": "Org A"})
    )["api_key"]
    organiser_b = ok(
        await http.post(f"{reg}/api/organisers", headers=key(admin_key), json={"name": "Org B"})
    )["api_key"]
    offices = [
        {"office_id": "north", "name": "North office", "countries": ["DK"]},
        {"office_id": "south", "name": "South office", "countries": ["IT"]},
    ]
    event_a = ok(
        await http.post(
            f"{reg}/api/events", headers=key(lead_a), json=_event_body("Event A", offices)
        )
    )["event_id"]
    event_b = ok(
        await http.post(f"{reg}/api/events", headers=key(organiser_b), json=_event_body("B", []))
    )["event_id"]
    co = ok(
        await http.post(
            f"{reg}/api/events/{event_a}/co-organisers",
            headers=key(lead_a),
            json={"office_id": "north", "name": "North office desk"},
        )
    )

    async def participant(event_id: str, organiser: str, name: str, office: str | None) -> Any:
        country = {"north": "DK", "south": "IT"}.get(office or "", "FR")
        made = ok(
            await http.post(
                f"{reg}/api/events/{event_id}/registrations",
                json=registration_body(name, country, office),
            )
        )
        rid = made["registration_id"]
        ok(await http.post(f"{reg}/api/registrations/{rid}/approve", headers=key(organiser)))
        return Participant(rid, made["api_key"])

    north = await participant(event_a, lead_a, "Nordic Lasers", "north")
    south = await participant(event_a, lead_a, "Sud Ottica", "south")
    participant_b = await participant(event_b, organiser_b, "Lumière SA", None)
    start = datetime.combine(date.today() + timedelta(days=40), datetime.min.time(), UTC)
    item_id = ok(
        await http.post(
            f"{reg}/api/events/{event_a}/side-programme",
            headers=key(lead_a),
            json={
                "title": "Guided tour",
                "start": (start + timedelta(hours=13)).isoformat(),
                "end": (start + timedelta(hours=14)).isoformat(),
            },
        )
    )["item_id"]
    endpoint_id = ok(
        await http.post(
            f"{urls['notification']}/api/events/{event_a}/webhooks",
            headers=key(lead_a),
            json={
                "url": "https://hooks.example.invalid/a",
                "event_types": ["application.approved"],
            },
        )
    )["id"]
    link = ok(
        await http.get(
            f"{urls['reporting']}/api/events/{event_b}/dashboard-link", headers=key(organiser_b)
        )
    )
    dashboard_token_b = parse_qs(urlsplit(link["json"]).query)["token"][0]
    world_without_request = World(
        admin_key,
        event_a,
        event_b,
        lead_a,
        organiser_b,
        co["api_key"],
        co["co_organiser_id"],
        north,
        south,
        participant_b,
        request_id="",
        item_id=item_id,
        endpoint_id=endpoint_id,
        dashboard_token_b=dashboard_token_b,
    )
    await wait_for_projections(http, urls, world_without_request)
    request_id = ok(
        await http.post(
            f"{urls['matching']}/api/events/{event_a}/meeting-requests",
            headers=key(north.api_key),
            json={"recipient_id": south.registration_id, "message": "Shall we meet?"},
        )
    )["request_id"]
    return World(**{**world_without_request.__dict__, "request_id": request_id})


# A route of each service that every party of an event may call (VIEW_ACTIVITY: the
# lead organiser and co-organisers on the event, approved participants on themselves).
ACTIVITY = {
    "registration": "/api/events/{event_id}/registrations",
    "matching": "/api/events/{event_id}/meeting-requests",
    "scheduling": "/api/events/{event_id}/attendees",
    "notification": "/api/events/{event_id}/recipients",
    "reporting": "/api/events/{event_id}/meetings",
}


async def wait_for_projections(
    http: httpx.AsyncClient, urls: Mapping[str, str], world: World, *, limit: float = 90
) -> None:
    """Poll until each service knows every key and approval of the world."""
    callers = [
        (world.lead_a, world.event_a),
        (world.co_organiser_north, world.event_a),
        (world.north.api_key, world.event_a),
        (world.south.api_key, world.event_a),
        (world.organiser_b, world.event_b),
        (world.participant_b.api_key, world.event_b),
    ]

    async def knows_all(service: str) -> bool:
        for api_key, event_id in callers:
            path = ACTIVITY[service].format(event_id=event_id)
            got = await http.get(f"{urls[service]}{path}", headers=key(api_key))
            if got.status_code != 200:
                return False
        return True

    for service in SERVICES:
        await wait_until(
            lambda s=service: knows_all(s),  # type: ignore[misc]
            limit=limit,
            interval=0.3,
            what=f"{service} to learn the keys and approvals of both events",
        )
