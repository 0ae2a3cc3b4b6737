"""Rebuilt projections equal the live ones after a randomised workload (hypothesis).

Registration, matching and reporting run on fresh databases; each example drives a
new event through a random sequence of commands over the public HTTP APIs
(registrations, decisions, profile updates, office reassignments, co-organisers,
meeting requests and replies; refusals included, they change nothing), then every
service's projections are rebuilt from its events beside the live ones and compared
row by row. The rebuild replays exactly what each consumer applied, so a consumer
that is behind does not make a difference.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.matching import rebuild as matching_rebuild
from services.registration import rebuild as registration_rebuild
from services.reporting import rebuild as reporting_rebuild
from shared.contracts import registry
from shared.rebuild import rebuild
from tests.integration.access_world import _event_body, key, ok, registration_body
from tests.integration.matching_lists import lists_caught_up
from tests.integration.notification_support import free_port
from tests.integration.support import (
    TEST_TOPIC_PREFIX,
    Infra,
    RunningPlatform,
    service_platform,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ADMIN_KEY = "rebuild-workload-admin-key"
SERVICES = ("registration", "matching", "reporting")
OFFICES = [
    {"office_id": "north", "name": "North office", "countries": ["DE", "DK"]},
    {"office_id": "south", "name": "South office", "countries": ["IT", "ES"]},
]
COUNTRIES = ["DE", "DK", "IT", "ES", "FR"]
DECISIONS = ["approve", "reject", "waitlist", "withdraw"]
NAMES = itertools.count()


@pytest.fixture(scope="module")
async def running(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, scheduler_lock: None
) -> AsyncIterator[RunningPlatform]:
    # No scheduling service here, but matching's accepted meetings go to the shared test
    # topics, so the scheduler lock keeps other runs' scheduling services from placing them.
    async with service_platform(
        infra,
        {svc: free_port() for svc in SERVICES},
        tmp_path_factory.mktemp("rebuild-workload"),
        label="rebuild-workload",
        admin_key=ADMIN_KEY,
    ) as platform:
        yield platform


@dataclass
class Event:
    http: httpx.AsyncClient
    urls: dict[str, str]
    lead: dict[str, str]
    event_id: str
    keys: dict[str, str] = field(default_factory=dict)  # registration id -> its key
    requests: list[str] = field(default_factory=list)
    co_organisers: list[str] = field(default_factory=list)

    async def post(self, service: str, path: str, who: dict[str, str], body: Any = None) -> None:
        answer = await self.http.post(f"{self.urls[service]}{path}", headers=who, json=body)
        assert answer.status_code < 500, answer.text  # a refusal is fine, a crash is not


# One command: (kind, two numbers that pick the participants or the variant).
Command = tuple[str, int, int]
COMMANDS = st.lists(
    st.tuples(
        st.sampled_from(
            ["register", "register", "decide", "update", "office", "co", "request", "reply"]
        ),
        st.integers(0, 30),
        st.integers(0, 30),
    ),
    min_size=4,
    max_size=18,
)


async def run(event: Event, command: Command) -> None:
    kind, a, b = command
    ids = list(event.keys)
    pick = ids[a % len(ids)] if ids else None
    other = ids[b % len(ids)] if ids else None
    if kind == "register" or pick is None or other is None:
        body = registration_body(f"Org {next(NAMES)}", COUNTRIES[a % len(COUNTRIES)], None)
        if b % 3 == 0:
            body["support_office"] = OFFICES[b % 2]["office_id"]
        answer = await event.http.post(
            f"{event.urls['registration']}/api/events/{event.event_id}/registrations", json=body
        )
        made = ok(answer)
        event.keys[made["registration_id"]] = made["api_key"]
    elif kind == "decide":
        decision = DECISIONS[b % len(DECISIONS)]
        await event.post("registration", f"/api/registrations/{pick}/{decision}", event.lead)
    elif kind == "update":
        body = registration_body(f"Org {next(NAMES)}", COUNTRIES[b % len(COUNTRIES)], None)
        body.pop("support_office")
        answer = await event.http.patch(
            f"{event.urls['registration']}/api/registrations/{pick}",
            headers=key(event.keys[pick]),
            json=body,
        )
        assert answer.status_code < 500, answer.text
    elif kind == "office":
        office = OFFICES[b % 2]["office_id"]
        await event.post(
            "registration",
            f"/api/registrations/{pick}/support-office",
            event.lead,
            {"office_id": office},
        )
    elif kind == "co":
        await _co_organiser(event, a, b)
    elif kind == "request":
        answer = await event.http.post(
            f"{event.urls['matching']}/api/events/{event.event_id}/meeting-requests",
            headers=key(event.keys[pick]),
            json={"recipient_id": other, "message": "Let us meet", "language": "de"},
        )
        assert answer.status_code < 500, answer.text
        if answer.status_code == 201:
            event.requests.append(answer.json()["request_id"])
    elif event.requests:  # reply to a request: accept, decline or cancel, as either side
        request_id = event.requests[a % len(event.requests)]
        verb = ("accept", "decline", "cancel")[b % 3]
        for registration_id in (pick, other):
            await event.post(
                "matching",
                f"/api/meeting-requests/{request_id}/{verb}",
                key(event.keys[registration_id]),
            )


async def _co_organiser(event: Event, a: int, b: int) -> None:
    if event.co_organisers and a % 2:
        gone = event.co_organisers.pop()
        answer = await event.http.delete(
            f"{event.urls['registration']}/api/events/{event.event_id}/co-organisers/{gone}",
            headers=event.lead,
        )
        assert answer.status_code < 500, answer.text
        return
    made = ok(
        await event.http.post(
            f"{event.urls['registration']}/api/events/{event.event_id}/co-organisers",
            headers=event.lead,
            json={"office_id": OFFICES[b % 2]["office_id"], "name": f"Office {b}"},
        )
    )
    event.co_organisers.append(made["co_organiser_id"])


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(commands=COMMANDS)
async def test_rebuilt_projections_equal_the_live_ones(
    running: RunningPlatform, commands: list[Command]
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        organiser = ok(
            await http.post(
                f"{running.urls['registration']}/api/organisers",
                headers=key(ADMIN_KEY),
                json={"name": "Workload organiser"},
            )
        )
        lead = key(organiser["api_key"])
        created = ok(
            await http.post(
                f"{running.urls['registration']}/api/events",
                headers=lead,
                json=_event_body("Randomised workload", OFFICES),
            )
        )
        event = Event(http, running.urls, lead, created["event_id"])
        for command in commands:
            await run(event, command)
    # Matching's lists are recomputed from scratch by the rebuild; the live ones catch up
    # with requests (the pair subscription on matching.events) and landed vectors (the
    # embedding worker) a moment after the commands: compared once they have.
    await wait_until(
        lambda: lists_caught_up(running), limit=120, interval=0.3, what="matching's lists"
    )
    for plan in (registration_rebuild.PLAN, matching_rebuild.PLAN, reporting_rebuild.PLAN):
        report = await rebuild(
            plan,
            running.dsns[plan.service],
            running.bootstrap_servers,
            registry(),
            topic_prefix=TEST_TOPIC_PREFIX,
            group_suffix=running.group_suffix,
        )
        assert report.equal, "\n".join(report.lines())
