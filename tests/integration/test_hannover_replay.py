"""The HANNOVER MESSE 2015 replay end to end: registration, matching, scheduling and
reporting as subprocesses on fresh databases and the real broker, driven only through
their HTTP APIs by `scripts/replay_hannover.py`; the report must give the seed's figures.
The replayed event is then browsed on the web portal in Debian's Chromium (one replay for
both tests: the module's platform).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from scripts.replay_hannover import (
    BUSINESSES,
    C2C_HELD,
    ON_SITE_CLUSTERS,
    REMOTE_CLUSTERS,
    SEED,
    TOURS,
    Replay,
    Urls,
    clashes,
    office_lines,
    replay,
    seed_figures,
)
from services.matching import rebuild as matching_rebuild
from services.registration import rebuild as registration_rebuild
from services.reporting import rebuild as reporting_rebuild
from services.scheduling import rebuild as scheduling_rebuild
from shared.contracts import registry
from shared.rebuild import rebuild
from shared.rebuild_schema import compare
from tests.integration.browser_support import CHROMIUM, CHROMIUM_ARGS, axe, running_portal, shot
from tests.integration.hannover_sheets import check_exports, check_import
from tests.integration.matching_lists import lists_caught_up
from tests.integration.notification_support import free_port
from tests.integration.support import (
    TEST_TOPIC_PREFIX,
    Infra,
    RunningPlatform,
    service_platform,
    wait_until,
)

pytestmark = pytest.mark.integration

ADMIN_KEY = "e2e-hannover-admin-key"
# Each on a free port, chosen when the platform starts.
SERVICES = ("registration", "matching", "scheduling", "reporting")


@pytest.fixture(scope="module")
async def running(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, scheduler_lock: None
) -> AsyncIterator[RunningPlatform]:
    async with service_platform(
        infra,
        {svc: free_port() for svc in SERVICES},
        tmp_path_factory.mktemp("hannover"),
        label="e2e-hannover",
        admin_key=ADMIN_KEY,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def platform(running: RunningPlatform) -> Urls:
    urls = running.urls
    return Urls(urls["registration"], urls["matching"], urls["scheduling"], urls["reporting"])


@pytest.fixture(scope="module")
async def replayed(platform: Urls) -> Replay:
    return await replay(platform, ADMIN_KEY, log=lambda _: None)


async def test_the_replay_reports_the_seeds_figures(
    platform: Urls, running: RunningPlatform, replayed: Replay
) -> None:
    done = replayed
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
        placed = (
            await http.get(
                f"/api/events/{done.event_id}/meetings",
                headers={"X-API-Key": done.organiser_key},
            )
        ).json()
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

    await _check_support_offices(platform, done)

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

    # Spreadsheets: every export read back and checked; then a 200-row import.
    await check_exports(platform, done)
    await check_import(platform, done, running.dsns["registration"])
    # Event sourcing: every projection rebuilt from the events equals the live one.
    await _check_rebuilds(running, done)


async def _check_support_offices(platform: Urls, done: Replay) -> None:
    """Two support offices by the country rule: DE-NDS the German participants, EEN-EU
    the others. The lead sees figures by office; each co-organiser's report and
    dashboard link count its own participants only."""
    cast = [
        *zip(done.clusters, ON_SITE_CLUSTERS, strict=True),
        *zip(done.remote, REMOTE_CLUSTERS, strict=True),
        *zip(done.businesses, BUSINESSES, strict=True),
    ]
    office = {rid: "DE-NDS" if seed[1] == "DE" else "EEN-EU" for rid, seed in cast}
    skipped = {done.meetings[C2C_HELD][0], done.meetings[-1][0]}
    held = [m for m in done.meetings if m[0] not in skipped]

    def expected(office_id: str) -> dict[str, int]:
        members = {rid for rid, o in office.items() if o == office_id}
        return {
            "registrations": len(members),
            "approved": len(members),
            "meetings_requested": sum(bool({a, b} & members) for _, a, b in done.meetings),
            "meetings_held": sum(bool({a, b} & members) for _, a, b in held),
        }

    lines = {line["office_id"]: line for line in done.report["by_office"]}
    assert set(lines) == {"DE-NDS", "EEN-EU"}  # everyone has an office
    for office_id, line in lines.items():
        assert {k: line[k] for k in expected(office_id)} == expected(office_id)
    assert lines["DE-NDS"]["registrations"] == 7
    assert sum(line["registrations"] for line in lines.values()) == 31
    assert len(office_lines(done.report)) == 2

    async with httpx.AsyncClient(base_url=platform.reporting) as http:
        public = (await http.get(f"/api/events/{done.event_id}/report")).json()
        assert "by_office" not in public and "names" not in public["remote"]
        lead_md = await http.get(
            f"/api/events/{done.event_id}/report.md", headers={"X-API-Key": done.organiser_key}
        )
        assert "## By support office" in lead_md.text and "EEN Lower Saxony" in lead_md.text
        for office_id, key in done.co_organisers.items():
            mine = (
                await http.get(f"/api/events/{done.event_id}/report", headers={"X-API-Key": key})
            ).json()
            assert mine["office"]["office_id"] == office_id and "by_office" not in mine
            assert mine["applied"]["organisations"] == lines[office_id]["registrations"]
            assert mine["meetings"]["held"] == lines[office_id]["meetings_held"]
            link = (
                await http.get(
                    f"/api/events/{done.event_id}/dashboard-link", headers={"X-API-Key": key}
                )
            ).json()
            board = (await http.get(link["json"])).json()
            assert board["office"]["office_id"] == office_id and "by_office" not in board
            assert board["totals"]["applied"] == lines[office_id]["registrations"]
            assert board["totals"]["meetings_held"] == lines[office_id]["meetings_held"]
            assert board["feedback"]["responses"] == lines[office_id]["feedback_responses"]
            assert board["outcomes"]["agreements"] == lines[office_id]["agreements"]

        await _check_history(http, done)


async def _check_history(http: httpx.AsyncClient, done: Replay) -> None:
    """The event's history reads back the replay: who did what, oldest first, paged; a
    participant's own history; the agenda as it stood before any meeting was placed."""
    lead = {"X-API-Key": done.organiser_key}
    url = f"/api/events/{done.event_id}/history"
    entries: list[dict[str, Any]] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = await http.get(url, params={"after": cursor, "limit": 500}, headers=lead)
        assert page.status_code == 200, page.text
        entries += page.json()["entries"]
        cursor = page.json()["next_cursor"]
    kinds = Counter(e["type"].split(".")[-2] for e in entries)
    assert kinds["RegistrationApproved"] >= 25 and kinds["MeetingAccepted"] >= 63
    approvals = [e for e in entries if e["type"].endswith(".RegistrationApproved.v1")]
    assert all(e["actor"] and e["actor"].startswith("organiser:") for e in approvals)
    assert all(e["correlation_id"] for e in approvals)
    # A placement is caused by the acceptance: it carries the accepting participant.
    placed = [e for e in entries if e["type"].endswith(".SlotAssigned.v1")]
    assert placed and all(e["actor"] for e in placed)
    # The other history: one participant's, through its own key; nobody else's.
    rid = done.clusters[0]
    own = await http.get(f"/api/registrations/{rid}/history", headers={"X-API-Key": done.keys[rid]})
    assert own.status_code == 200
    assert own.json()["entries"] and all(rid in e["registrations"] for e in own.json()["entries"])
    other = done.clusters[1]
    refused = await http.get(
        f"/api/registrations/{other}/history", headers={"X-API-Key": done.keys[rid]}
    )
    assert refused.status_code == 403
    assert (await http.get(url)).status_code == 401
    # The agenda now, and before the first placement: from the events alone.
    first = min(datetime.fromisoformat(e["occurred_at"]) for e in placed)
    now = await http.get(
        f"/api/events/{done.event_id}/agenda-at",
        params={"at": datetime.now(UTC).isoformat()},
        headers=lead,
    )
    assert len(now.json()["meetings"]) == 63
    before = await http.get(
        f"/api/events/{done.event_id}/agenda-at",
        params={"at": (first - timedelta(microseconds=1)).isoformat()},
        headers=lead,
    )
    assert before.json()["meetings"] == []


async def _check_rebuilds(running: RunningPlatform, done: Replay) -> None:
    """Every projection rebuilt from the events equals the live one, row by row; then
    registration's rebuilt tables are switched in while it runs, and it goes on working."""
    plans = (
        registration_rebuild.PLAN,
        matching_rebuild.PLAN,
        reporting_rebuild.PLAN,
        scheduling_rebuild.PLAN,
    )
    # Matching's live lists catch up with requests and vectors a moment after the tables.
    await wait_until(
        lambda: lists_caught_up(running), limit=180, interval=0.5, what="matching's lists"
    )
    for plan in plans:
        report = await rebuild(
            plan,
            running.dsns[plan.service],
            running.bootstrap_servers,
            registry(),
            topic_prefix=TEST_TOPIC_PREFIX,
            group_suffix=running.group_suffix,
        )
        print(*report.lines(), sep="\n")  # the figures, with -s
        assert report.own_events + report.consumed_events > 0, report.lines()
        assert report.equal, "\n".join(report.lines())
    # The comparison sees a difference: one request fewer in matching's rebuild.
    conn = await asyncpg.connect(running.dsns["matching"])
    try:
        # The recommendation lists compared above were computed, not two empty tables.
        assert await conn.fetchval("SELECT count(*) FROM rebuild.recommendation_lists") > 0
        await conn.execute(
            "DELETE FROM rebuild.meeting_requests WHERE request_id ="
            " (SELECT min(request_id) FROM rebuild.meeting_requests)"
        )
        found = await compare(conn, matching_rebuild.PLAN, "public", "rebuild")
    finally:
        await conn.close()
    # (Only this one of ours: the live consumers go on applying other runs' events from
    # the shared test topics meanwhile, e.g. their brokerage events.)
    assert ("meeting_requests", 1, 0) in [(d.table, d.only_live, d.only_rebuilt) for d in found]
    switched = await rebuild(
        registration_rebuild.PLAN,
        running.dsns["registration"],
        running.bootstrap_servers,
        registry(),
        topic_prefix=TEST_TOPIC_PREFIX,
        group_suffix=running.group_suffix,
        switch=True,
    )
    assert switched.switched_to and switched.equal, "\n".join(switched.lines())
    async with httpx.AsyncClient(base_url=running.urls["registration"]) as http:
        listed = await http.get("/api/events")
        assert listed.status_code == 200 and any(
            "HANNOVER MESSE" in e["name"] for e in listed.json()
        )
        # The service writes to the switched-in tables as it did to the old ones.
        lead = {"X-API-Key": done.organiser_key}

        async def names() -> list[str]:
            listed = await http.get(
                f"/api/events/{done.event_id}/registrations",
                headers=lead,
                params={"limit": 1000},
            )
            return [r["name"] for r in listed.json()]

        before = await names()
        late = await http.post(
            f"/api/events/{done.event_id}/registrations",
            headers=lead,
            json={
                "organisation_type": "business",
                "name": "Switched Tables GmbH",
                "country": "DE",
                "representatives": [{"name": "Sam", "email": "sam@example.org"}],
            },
        )
        assert late.status_code == 201, late.text
        after = await names()
        assert sorted(after) == sorted([*before, "Switched Tables GmbH"])


async def test_the_replayed_event_is_browsed_on_the_portal(
    running: RunningPlatform, replayed: Replay, tmp_path: Path
) -> None:
    """Home -> the past HANNOVER event -> the organiser signs in with its key -> the
    applications, the agenda grid with the placed meetings; axe-core finds no serious
    violation there. Screenshots in var/artefacts/portal-hannover-*.png."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make browser` installs it")
    playwright_api = pytest.importorskip("playwright.async_api")
    expect = playwright_api.expect
    found: dict[str, list[str]] = {}
    name = replayed.report["event"]["name"]
    _, first, _ = replayed.meetings[0]
    async with httpx.AsyncClient(base_url=running.urls["registration"]) as http:
        first_name = (
            await http.get(
                f"/api/registrations/{first}", headers={"X-API-Key": replayed.organiser_key}
            )
        ).json()["name"]
    async with (
        running_portal(running.urls, free_port(), tmp_path) as portal,
        playwright_api.async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            # CSP bypassed for axe-core's script only (the portal's own policy stays on).
            context = await browser.new_context(
                bypass_csp=True, viewport={"width": 1280, "height": 900}
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(portal)
            await page.get_by_role("link", name=name).click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(name)
            await expect(page.get_by_text("2015-04-13, 2015-04-14")).to_be_visible()
            await axe(page, "hannover-event", found)
            await shot(page, "hannover-event")

            await page.get_by_role("link", name="Sign in").first.click()
            await page.fill("#key", replayed.organiser_key)
            await page.get_by_role("button", name="Sign in").click()
            await page.goto(f"{portal}/events/{replayed.event_id}/applications")
            rows = page.get_by_test_id("applications")
            await expect(rows).to_contain_text("approved")
            await shot(page, "hannover-applications")

            await page.get_by_role("link", name="Agenda grid").first.click()
            grid = page.get_by_test_id("grid")
            await expect(grid).to_contain_text(first_name)
            await axe(page, "hannover-grid", found)
            await shot(page, "hannover-grid")
            assert errors == []
        finally:
            await browser.close()
    assert all(not v for v in found.values()), found
