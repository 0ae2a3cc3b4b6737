"""The HANNOVER MESSE 2015 replay end to end: registration, matching, scheduling and
reporting as subprocesses on fresh databases and the real broker, driven only through
their HTTP APIs by `scripts/replay_hannover.py`; the report must give the seed's figures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from scripts.replay_hannover import SEED, TOURS, Urls, clashes, replay, seed_figures
from tests.integration.notification_support import free_port
from tests.integration.support import Infra, service_platform

pytestmark = pytest.mark.integration

ADMIN_KEY = "e2e-hannover-admin-key"
# Each on a free port, chosen when the platform starts.
SERVICES = ("registration", "matching", "scheduling", "reporting")


@pytest.fixture
async def platform(infra: Infra, tmp_path: Path, scheduler_lock: None) -> AsyncIterator[Urls]:
    async with service_platform(
        infra,
        {svc: free_port() for svc in SERVICES},
        tmp_path,
        label="e2e-hannover",
        admin_key=ADMIN_KEY,
    ) as running:
        urls = running.urls
        yield Urls(urls["registration"], urls["matching"], urls["scheduling"], urls["reporting"])


async def test_the_replay_reports_the_seeds_figures(platform: Urls) -> None:
    done = await replay(platform, ADMIN_KEY, log=lambda _: None)
    report = done.report

    assert seed_figures(report) == SEED
    assert report["participation_basis"] == "attendance recorded by the organiser"
    assert report["applied"]["organisations"] == 31  # 25 clusters + 6 businesses
    assert report["participated"]["organisations"] == 25
    assert "RO" in report["applied"]["by_country"]
    assert "RO" not in report["participated"]["by_country"]
    assert report["meetings"]["by_type"]["business2business"] == 0
    assert report["meetings"]["not_held"] == 2
    assert report["meetings"]["funnel"]["placed"] == {
        "cluster2cluster": 45,
        "business2cluster": 18,
        "business2business": 0,
    }
    assert set(report["participated"]["sectors"]) >= {
        "ICT",
        "automotive",
        "aerospace",
        "nanotechnology",
        "photonics",
        "furniture and habitat",
        "environment",
        "new materials",
        "mechanical engineering",
    }
    assert report["feedback"]["responses"] == 2 * 61 + 1
    assert sorted(item["participants"] for item in report["side_programme"]) == [6, 8]
    assert report["outcomes"]["agreements_by_kind"]["joint_funding_proposal"] > 0

    async with httpx.AsyncClient(base_url=platform.reporting) as http:
        listed = (await http.get("/api/events")).json()
        assert {"event_id": done.event_id, "name": report["event"]["name"]}.items() <= next(
            e for e in listed if e["event_id"] == done.event_id
        ).items()
        page = await http.get(f"/events/{done.event_id}/report")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "HANNOVER MESSE" in page.text
        markdown = (await http.get(f"/api/events/{done.event_id}/report.md")).text
        assert "| Clusters applied | 25 |" in markdown
        assert "| Meetings held | 61 |" in markdown
        # The organiser's dashboard, opened through its signed link, tells the same story.
        link = (
            await http.get(
                f"/api/events/{done.event_id}/dashboard-link",
                headers={"X-API-Key": done.organiser_key},
            )
        ).json()
        totals = (await http.get(link["json"])).json()["totals"]
        assert totals["applied"] == report["applied"]["organisations"]
        assert (totals["meetings_placed"], totals["meetings_held"]) == (63, 61)
        # No meeting of a tour's participant during the tour (the second tour was joined
        # after the meetings were placed: scheduling moved the clashing ones).
        busy = {
            rid: (TOURS[t]["start"], TOURS[t]["end"])
            for t, members in enumerate(done.tours.values())
            for rid in members
        }
        placed = (await http.get(f"/api/events/{done.event_id}/meetings")).json()
        assert len(placed) == 63 and all(m["placed"] for m in placed)
        assert clashes(placed, busy) == []
        # Feedback only from a meeting's participants; attendance only by the organiser.
        meeting_id, first, _ = done.meetings[0]
        stranger = done.keys[done.remote[0]]
        refused = await http.post(
            f"/api/events/{done.event_id}/meetings/{meeting_id}/feedback",
            headers={"X-API-Key": stranger},
            json={"rating": "no_interest"},
        )
        assert refused.status_code == 403
        refused = await http.post(
            f"/api/events/{done.event_id}/attendance",
            headers={"X-API-Key": done.keys[first]},
            json={"registration_id": first},
        )
        assert refused.status_code == 403
        unkind = await http.post(
            f"/api/events/{done.event_id}/meetings/{meeting_id}/outcome",
            headers={"X-API-Key": done.keys[first]},
            json={"outcome": "agreement_reached"},
        )
        assert unkind.status_code == 422

    # Registration after the deadline: refused to anyone but the event's organiser.
    async with httpx.AsyncClient(base_url=platform.registration) as http:
        late = await http.post(
            f"/api/events/{done.event_id}/registrations",
            json={
                "organisation_type": "cluster",
                "name": "Late Cluster",
                "country": "DE",
                "representatives": [{"name": "Late", "email": "late@example.org"}],
            },
        )
        assert late.status_code == 409
