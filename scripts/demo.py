"""`make demo`: register a few organisations through the HTTP API and show what happened.

Runs against the local platform started by `make up`. Every step goes through
the public API; the last step reads what the matching, scheduling and
notification services learnt from registration's events over Kafka.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

REGISTRATION = os.environ.get("REGISTRATION_URL", "http://127.0.0.1:8001")
MATCHING = os.environ.get("MATCHING_URL", "http://127.0.0.1:8002")
SCHEDULING = os.environ.get("SCHEDULING_URL", "http://127.0.0.1:8003")
NOTIFICATION = os.environ.get("NOTIFICATION_URL", "http://127.0.0.1:8004")
ADMIN_KEY = os.environ.get("PLATFORM_ADMIN_KEY", "local-admin-key")

# Fictional organisations in the spirit of the HANNOVER MESSE 2015 cluster event.
ORGANISATIONS: list[dict[str, Any]] = [
    {
        "organisation_type": "cluster",
        "name": "Danube Photonics Cluster",
        "country": "AT",
        "sectors": ["photonics"],
        "offers": ["laser micro-machining for automotive parts"],
        "requests": ["partners for Horizon 2020 proposals on smart lighting"],
    },
    {
        "organisation_type": "cluster",
        "name": "Baltic ICT Alliance",
        "country": "LT",
        "sectors": ["ICT"],
        "offers": ["industrial IoT software developers"],
        "requests": ["manufacturing SMEs wanting to digitise production"],
    },
    {
        "organisation_type": "cluster",
        "name": "Loire Aero Materials",
        "country": "FR",
        "sectors": ["aerospace", "new materials"],
        "offers": ["composite testing facilities"],
        "requests": ["nanocoating suppliers"],
        "attendance": "remote",
    },
    {
        "organisation_type": "business",
        "name": "Weserland Robotics GmbH",
        "country": "DE",
        "sectors": ["mechanical engineering"],
        "offers": ["robot cells for small batches"],
        "requests": ["cluster access to Eastern European suppliers"],
    },
]


def show(title: str, value: Any) -> None:
    print(f"\n== {title}")
    if isinstance(value, list):
        for item in value:
            print("  ", item)
    else:
        print("  ", value)


def check(response: httpx.Response) -> Any:
    if response.is_error:
        sys.exit(
            f"{response.request.method} {response.request.url}: {response.status_code} "
            f"{response.text}"
        )
    return response.json()


def main() -> None:
    with httpx.Client(timeout=10) as http:
        organiser = check(
            http.post(
                f"{REGISTRATION}/api/organisers",
                headers={"X-API-Key": ADMIN_KEY},
                json={"name": "Enterprise Europe Network, Lower Saxony"},
            )
        )
        show("Organiser registered (its API key is shown once)", organiser)
        as_organiser = {"X-API-Key": organiser["api_key"]}
        first_day = date.today() + timedelta(days=60)
        event = check(
            http.post(
                f"{REGISTRATION}/api/events",
                headers=as_organiser,
                json={
                    "name": "European Cluster Matchmaking Event (demo)",
                    "venue": "Hannover, exhibition grounds",
                    "time_zone": "Europe/Berlin",
                    "days": [first_day.isoformat(), (first_day + timedelta(days=1)).isoformat()],
                    "sessions": [
                        {"start": "10:00", "end": "12:30"},
                        {"start": "14:00", "end": "17:00"},
                    ],
                    "slot_minutes": 30,
                    "tables": 20,
                    "meeting_types": ["Cluster2Cluster", "Business2Cluster"],
                    "registration_deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                },
            )
        )
        event_id = event["event_id"]
        show("Brokerage event created", f"{event['name']} ({event_id})")
        registered = []
        for index, organisation in enumerate(ORGANISATIONS):
            body = {
                **organisation,
                "representatives": [
                    {"name": f"Representative {index + 1}", "email": f"rep{index + 1}@example.org"}
                ],
            }
            registration = check(
                http.post(
                    f"{REGISTRATION}/api/events/{event_id}/registrations",
                    json=body,
                    headers={"Idempotency-Key": f"demo-{event_id}-{index}"},
                )
            )
            registered.append(registration)
        show(
            "Organisations registered",
            [
                f"{o['name']}: {r['registration_id']}"
                for o, r in zip(ORGANISATIONS, registered, strict=True)
            ],
        )
        for registration in registered[:3]:
            check(
                http.post(
                    f"{REGISTRATION}/api/registrations/{registration['registration_id']}/approve",
                    headers=as_organiser,
                )
            )
        check(
            http.post(
                f"{REGISTRATION}/api/registrations/{registered[3]['registration_id']}/waitlist",
                headers=as_organiser,
                json={"reason": "B2C slots full"},
            )
        )
        listed = check(
            http.get(f"{REGISTRATION}/api/events/{event_id}/registrations", headers=as_organiser)
        )
        show(
            "Registration's own view",
            [f"{r['name']} ({r['country']}): {r['status']}" for r in listed],
        )
        deadline = time.monotonic() + 15
        while True:  # the other services learn it from Kafka, a moment later
            known = check(http.get(f"{MATCHING}/api/events/{event_id}/participants"))
            if sum(p["status"] != "pending" for p in known) == len(ORGANISATIONS):
                break
            if time.monotonic() > deadline:
                sys.exit("matching did not catch up within 15 s")
            time.sleep(0.2)
        show(
            "Matching's projection (from registration.events)",
            [f"{p['name']}: {p['status']}" for p in known],
        )
        show(
            "Scheduling's projection",
            check(http.get(f"{SCHEDULING}/api/events/{event_id}/attendees")),
        )
        show(
            "Notification's projection",
            check(
                http.get(
                    f"{NOTIFICATION}/api/events/{event_id}/recipients", headers=as_organiser
                )
            ),
        )
        print(
            "\nThe platform keeps running: APIs on ports 8001-8004 (/docs for each);"
            " `make down` stops it."
        )


if __name__ == "__main__":
    main()
