"""The organiser dashboard in a real browser: headless Chromium (Debian's package, driven
by Playwright) on a platform of registration, matching, scheduling and reporting run as
subprocesses on fresh databases and the real broker. Everything is done through the
public HTTP APIs; the page must show the figures, then follow further changes live,
without a reload. A screenshot is kept in var/artefacts/dashboard.png. A co-organiser's
link (EEN support offices) opens its office's participants only, also followed live
(var/artefacts/dashboard-office.png).

`make test` installs Chromium (`deploy/local/browser.sh`); where it cannot (not root, no
sudo) the test skips, giving the reason browser.sh left in var/browser-unavailable.txt.
"""

from __future__ import annotations

import ctypes.util
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.notification_support import SmtpSink, free_port
from tests.integration.support import (
    REPO_ROOT,
    Infra,
    service_platform,
    wait_until,
)

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = REPO_ROOT / "var" / "artefacts" / "dashboard.png"
OFFICE_SCREENSHOT = REPO_ROOT / "var" / "artefacts" / "dashboard-office.png"
OFFICES = [
    {"office_id": "DE-NDS", "name": "EEN Lower Saxony", "countries": ["DE"]},
    {"office_id": "FR-IT", "name": "EEN France and Italy", "countries": ["FR", "IT"]},
]
ADMIN_KEY = "dashboard-browser-admin-key"
# Each on a free port, chosen when the platform starts.
SERVICES = ("registration", "matching", "scheduling", "notification", "reporting")
WAIT_MS = 45_000

# Why deploy/local/browser.sh did not install chromium or libatomic (which Playwright's
# node driver links to), when it could not (not root, no sudo).
BROWSER_UNAVAILABLE = REPO_ROOT / "var" / "browser-unavailable.txt"


def _missing_browser() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    missing = [
        name
        for name, there in [
            (str(CHROMIUM), CHROMIUM.exists()),
            ("libatomic", ctypes.util.find_library("atomic") is not None),
        ]
        if not there
    ]
    if not missing:
        return None
    if BROWSER_UNAVAILABLE.exists():
        return BROWSER_UNAVAILABLE.read_text().strip()
    return (
        f"{' and '.join(missing)} missing: `make browser` (deploy/local/browser.sh) installs"
        " Debian's chromium and libatomic1, which this test needs"
    )


if (_reason := _missing_browser()) is not None:
    pytest.skip(_reason, allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture
async def urls(infra: Infra, tmp_path: Path, scheduler_lock: None) -> AsyncIterator[dict[str, str]]:
    # notification's mail goes to `smtp`: the dashboard counts what it sent
    async with (
        SmtpSink() as smtp,
        service_platform(
            infra,
            {svc: free_port() for svc in SERVICES},
            tmp_path,
            label="e2e-dashboard",
            admin_key=ADMIN_KEY,
            env={
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp.port),
                "DELIVERY_POLL_SECONDS": "0.2",
            },
        ) as platform,
    ):
        yield platform.urls


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()


@dataclass
class Organiser:
    """Drives the platform through its public APIs, as an organiser and its participants."""

    http: httpx.AsyncClient
    urls: dict[str, str]
    key: str = ""
    event_id: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # registration id -> its API key

    def _as(self, key: str) -> dict[str, str]:
        return {"X-API-Key": key}

    async def create_event(self, support_offices: list[dict[str, Any]] | None = None) -> None:
        made = _ok(
            await self.http.post(
                f"{self.urls['registration']}/api/organisers",
                headers=self._as(ADMIN_KEY),
                json={"name": "Dashboard test organiser"},
            )
        )
        self.key = made["api_key"]
        first = date.today() + timedelta(days=40)
        event = _ok(
            await self.http.post(
                f"{self.urls['registration']}/api/events",
                headers=self._as(self.key),
                json={
                    "name": "Photonics & ICT matchmaking (dashboard test)",
                    "venue": "Messe, Hall 2",
                    "time_zone": "Europe/Berlin",
                    "days": [first.isoformat()],
                    "sessions": [{"start": "09:00", "end": "11:00"}],
                    "slot_minutes": 30,
                    "tables": 3,
                    "meeting_types": ["Cluster2Cluster", "Business2Cluster", "Business2Business"],
                    "registration_deadline": (datetime.now(UTC) + timedelta(days=20)).isoformat(),
                    "support_offices": support_offices or [],
                },
            )
        )
        self.event_id = event["event_id"]

    async def register(
        self, kind: str, name: str, country: str, sectors: list[str], *, remote: bool = False
    ) -> str:
        made = _ok(
            await self.http.post(
                f"{self.urls['registration']}/api/events/{self.event_id}/registrations",
                json={
                    "organisation_type": kind,
                    "name": name,
                    "country": country,
                    "sectors": sectors,
                    "technologies": sectors,
                    "offers": [f"cooperation in {', '.join(sectors)}"],
                    "requests": ["partners for joint projects"],
                    "markets": ["EU"],
                    "attendance": "remote" if remote else "on_site",
                    "representatives": [{"name": f"Contact of {name}", "email": "c@x.example"}],
                },
            )
        )
        rid: str = made["registration_id"]
        self.keys[rid] = made["api_key"]
        return rid

    async def approve(self, rid: str) -> None:
        _ok(
            await self.http.post(
                f"{self.urls['registration']}/api/registrations/{rid}/approve",
                headers=self._as(self.key),
            )
        )

    async def meet(self, requester: str, recipient: str) -> str:
        """Matching must know both as approved first (see `matching_knows`)."""
        asked = _ok(
            await self.http.post(
                f"{self.urls['matching']}/api/events/{self.event_id}/meeting-requests",
                headers=self._as(self.keys[requester]),
                json={"recipient_id": recipient, "message": "Shall we meet?"},
            )
        )
        _ok(
            await self.http.post(
                f"{self.urls['matching']}/api/meeting-requests/{asked['request_id']}/accept",
                headers=self._as(self.keys[recipient]),
            )
        )
        meeting_id: str = asked["request_id"]
        return meeting_id

    async def matching_knows(self, approved: int) -> bool:
        rows = _ok(
            await self.http.get(
                f"{self.urls['matching']}/api/events/{self.event_id}/participants",
                headers=self._as(self.key),
                params={"status": "approved"},
            )
        )
        return len(rows) == approved

    async def add_co_organiser(self, office_id: str, name: str) -> dict[str, Any]:
        """A support office's co-organiser for the event: its id and its key."""
        added: dict[str, Any] = _ok(
            await self.http.post(
                f"{self.urls['registration']}/api/events/{self.event_id}/co-organisers",
                headers=self._as(self.key),
                json={"office_id": office_id, "name": name},
            )
        )
        return added

    async def dashboard(self) -> dict[str, Any]:
        """The lead's dashboard; empty while reporting has not learnt the event or the key
        from Kafka yet (404 or 401), so polls go on."""
        answer = await self.http.get(
            f"{self.urls['reporting']}/api/events/{self.event_id}/dashboard",
            headers=self._as(self.key),
        )
        if answer.status_code in (401, 404):
            return {}
        got: dict[str, Any] = _ok(answer)
        return got


async def _poll(what: str, check: Any, limit: float = 45.0) -> None:
    await wait_until(check, limit=limit, interval=0.2, what=what)


async def test_the_dashboard_shows_the_figures_and_follows_changes_live(
    urls: dict[str, str],
) -> None:
    expect = playwright_api.expect
    async with httpx.AsyncClient(timeout=30) as http:
        org = Organiser(http, urls)
        await org.create_event()
        c1 = await org.register("cluster", "Harz Photonics Hub", "DE", ["photonics", "ICT"])
        c2 = await org.register("cluster", "Rhône Optics Cluster", "FR", ["photonics"])
        b1 = await org.register("business", "Calenberg Lasers GmbH", "DE", ["photonics"])
        await org.register("research", "Etna Research Institute", "IT", ["ICT"])
        for rid in (c1, c2, b1):
            await org.approve(rid)

        async def reporting_has_them() -> bool:
            answer = await http.get(
                f"{urls['reporting']}/api/events/{org.event_id}/dashboard",
                headers=org._as(org.key),
            )
            if answer.status_code != 200:
                return False  # reporting has not learnt the organiser's key or event yet
            totals = answer.json()["totals"]
            return bool(totals["applied"] == 4 and totals["approved"] == 3)

        await _poll("reporting to learn the registrations", reporting_has_them)

        # Only the organiser (or the admin, or a signed link's holder) sees the dashboard.
        base = f"{urls['reporting']}/api/events"
        link = _ok(
            await http.get(f"{base}/{org.event_id}/dashboard-link", headers=org._as(org.key))
        )
        token = link["url"].split("?token=", 1)[1]
        refused = {
            "no key": await http.get(f"{base}/{org.event_id}/dashboard"),
            "a participant's key": await http.get(
                f"{base}/{org.event_id}/dashboard", headers=org._as(org.keys[c1])
            ),
            "a forged token": await http.get(
                f"{base}/{org.event_id}/dashboard", params={"token": token[:-4] + "AAAA"}
            ),
            "another event's path": await http.get(
                f"{base}/other-event/dashboard", params={"token": token}
            ),
            "a participant asking for the link": await http.get(
                f"{base}/{org.event_id}/dashboard-link", headers=org._as(org.keys[c1])
            ),
            "no key on the page": await http.get(
                f"{urls['reporting']}/events/{org.event_id}/dashboard"
            ),
        }
        codes = {why: r.status_code for why, r in refused.items()}
        assert codes == {
            "no key": 401,
            "a participant's key": 403,
            "a forged token": 403,
            "another event's path": 403,
            "a participant asking for the link": 403,
            "no key on the page": 401,
        }
        assert all(
            r.headers["content-type"].startswith("application/problem+json")
            for r in refused.values()
        )
        # The JSON, the stream's first message, the links, a 404 for an unknown event.
        missing = await http.get(f"{base}/nope/dashboard", headers=org._as(ADMIN_KEY))
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        by_link = _ok(await http.get(f"{urls['reporting']}{link['json']}"))
        assert by_link["totals"]["applied"] == 4
        listed = _ok(await http.get(f"{urls['reporting']}/api/events"))
        mine = next(e for e in listed if e["event_id"] == org.event_id)
        assert mine["dashboard"] == f"/events/{org.event_id}/dashboard"
        assert mine["dashboard_link"] == f"/api/events/{org.event_id}/dashboard-link"
        report_page = await http.get(f"{urls['reporting']}/events/{org.event_id}/report")
        assert f"/events/{org.event_id}/dashboard" in report_page.text
        stream_url = f"{urls['reporting']}{link['stream']}"
        async with http.stream("GET", stream_url) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    assert '"applied":4' in line
                    break

        page_url = f"{urls['reporting']}{link['url']}"  # as the organiser opens it
        async with playwright_api.async_playwright() as pw:
            profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(page_url)
                tid = page.get_by_test_id
                await expect(tid("live-status")).to_have_text("live", timeout=WAIT_MS)
                await expect(tid("value-applied")).to_have_text("4")
                await expect(tid("value-approved")).to_have_text("3")
                germany = tid("country-de")
                assert await germany.get_attribute("data-total") == "2"
                assert await germany.get_attribute("data-part") == "2"
                assert await tid("type-research").get_attribute("data-part") == "0"
                assert await tid("sector-photonics").get_attribute("data-total") == "3"
                await expect(tid("funnel-all-requested")).to_have_attribute("data-value", "0")
                # A marker the page keeps unless it is reloaded.
                await page.evaluate("window.__notReloaded = true")

                # A late registration, approved: the figures move without a reload.
                b2 = await org.register(
                    "business", "Loire Photonics SAS", "FR", ["photonics"], remote=True
                )
                await expect(tid("value-applied")).to_have_text("5", timeout=WAIT_MS)
                await org.approve(b2)
                await expect(tid("value-approved")).to_have_text("4", timeout=WAIT_MS)
                await expect(tid("country-fr")).to_have_attribute("data-part", "2", timeout=WAIT_MS)

                # A meeting requested, accepted and placed by scheduling: funnel and agenda.
                await _poll("matching to learn the approvals", lambda: org.matching_knows(4))
                meeting = await org.meet(c1, c2)
                await expect(tid("funnel-all-placed")).to_have_attribute(
                    "data-value", "1", timeout=WAIT_MS
                )
                await expect(tid("agenda-placed")).to_have_text("1", timeout=WAIT_MS)
                grid = tid(f"agenda-{(date.today() + timedelta(days=40)).isoformat()}")
                await expect(grid).to_contain_text("Harz Photonics Hub", timeout=WAIT_MS)
                await expect(grid).to_contain_text("Rhône Optics Cluster")
                await expect(tid("funnel-cluster2cluster-accepted")).to_have_attribute(
                    "data-value", "1"
                )

                # Feedback from one side: the ratings chart follows.
                _ok(
                    await http.post(
                        f"{urls['reporting']}/api/events/{org.event_id}/meetings/"
                        f"{meeting}/feedback",
                        headers={"X-API-Key": org.keys[c1]},
                        json={"rating": "cooperation_possible"},
                    )
                )
                await expect(tid("feedback-responses")).to_have_text("1", timeout=WAIT_MS)
                await expect(tid("feedback-cluster2cluster")).to_have_attribute("data-total", "1")
                await expect(tid("funnel-all-held")).to_have_attribute("data-value", "1")
                _ok(
                    await http.post(
                        f"{urls['reporting']}/api/events/{org.event_id}/meetings/{meeting}/outcome",
                        headers={"X-API-Key": org.keys[c2]},
                        json={"outcome": "agreement_reached", "kind": "joint_event"},
                    )
                )
                await expect(tid("outcomes-agreements")).to_have_text("1", timeout=WAIT_MS)
                await expect(tid("agreement-joint-event")).to_have_attribute("data-total", "1")

                # A meeting with a remote participant: online, beside the grid.
                await org.meet(b2, c1)
                await expect(tid("agenda-online")).to_have_text("1", timeout=WAIT_MS)
                await expect(grid).to_contain_text("Loire Photonics SAS")
                await expect(tid("funnel-business2cluster-placed")).to_have_attribute(
                    "data-value", "1"
                )

                # Notification's messages (applications approved, meetings placed) are counted.
                await expect(tid("notifications-sent")).not_to_have_text("0", timeout=WAIT_MS)
                await expect(tid("notifications-kind")).to_contain_text("sent")

                assert await page.evaluate("window.__notReloaded === true")
                assert int(await page.evaluate("document.body.dataset.renders")) > 1
                assert errors == []
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SCREENSHOT), full_page=True)
                print(f"dashboard screenshot: {SCREENSHOT}")
            finally:
                await context.close()
                shutil.rmtree(profile, ignore_errors=True)

        # Revoking the event's dashboard links: the old one stops working, a fresh one works.
        revoke = f"{base}/{org.event_id}/dashboard-link/revoke"
        assert (await http.post(revoke, headers=org._as(org.keys[c1]))).status_code == 403
        fresh = _ok(await http.post(revoke, headers=org._as(org.key)))
        for old in (link["json"], link["url"], link["stream"]):
            gone = await http.get(f"{urls['reporting']}{old}")
            assert gone.status_code == 403, old
            assert gone.headers["content-type"].startswith("application/problem+json")
            assert "revoked" in gone.json()["detail"]
        assert fresh["json"] != link["json"]
        assert _ok(await http.get(f"{urls['reporting']}{fresh['json']}"))["totals"]["applied"] == 5
        page_again = await http.get(f"{urls['reporting']}{fresh['url']}")
        assert page_again.status_code == 200
        newer = _ok(
            await http.get(f"{base}/{org.event_id}/dashboard-link", headers=org._as(org.key))
        )
        assert (await http.get(f"{urls['reporting']}{newer['json']}")).status_code == 200


async def test_a_co_organisers_link_shows_its_support_offices_participants_only(
    urls: dict[str, str],
) -> None:
    expect = playwright_api.expect
    reporting = urls["reporting"]
    base = f"{reporting}/api/events"
    async with httpx.AsyncClient(timeout=30) as http:
        org = Organiser(http, urls)
        await org.create_event(OFFICES)
        lower_saxony = await org.add_co_organiser("DE-NDS", "EEN Lower Saxony")
        south_west = await org.add_co_organiser("FR-IT", "EEN France and Italy")
        # By the country rule: two participants of DE-NDS, two of FR-IT.
        c1 = await org.register("cluster", "Harz Photonics Hub", "DE", ["photonics", "ICT"])
        c2 = await org.register("cluster", "Rhône Optics Cluster", "FR", ["photonics"])
        b1 = await org.register("business", "Calenberg Lasers GmbH", "DE", ["photonics"])
        await org.register("research", "Etna Research Institute", "IT", ["ICT"])
        for rid in (c1, c2, b1):
            await org.approve(rid)

        async def offices_known() -> bool:
            lines = (await org.dashboard()).get("by_office") or []
            return [(o["office_id"], o["registrations"], o["approved"]) for o in lines] == [
                ("DE-NDS", 2, 2),
                ("FR-IT", 2, 1),
            ]

        await _poll("reporting to learn the registrations and offices", offices_known)

        def as_office(co: dict[str, Any]) -> dict[str, str]:
            return org._as(co["api_key"])

        link = _ok(
            await http.get(f"{base}/{org.event_id}/dashboard-link", headers=as_office(lower_saxony))
        )
        by_key = _ok(
            await http.get(f"{base}/{org.event_id}/dashboard", headers=as_office(lower_saxony))
        )
        by_link = _ok(await http.get(f"{reporting}{link['json']}"))
        for seen in (by_key, by_link):
            assert seen["office"] == {"office_id": "DE-NDS", "name": "EEN Lower Saxony"}
            assert (seen["totals"]["applied"], seen["totals"]["approved"]) == (2, 2)
            assert [c["key"] for c in seen["applications"]["by_country"]] == ["DE"]
            assert "by_office" not in seen and seen["notifications"]["sent"] == 0
        lead_link = _ok(
            await http.get(f"{base}/{org.event_id}/dashboard-link", headers=org._as(org.key))
        )
        assert lead_link["json"] != link["json"]
        assert _ok(await http.get(f"{reporting}{lead_link['json']}"))["totals"]["applied"] == 4
        # A co-organiser's report is its office's too; the public one has no office figures.
        theirs = _ok(await http.get(f"{base}/{org.event_id}/report", headers=as_office(south_west)))
        assert theirs["applied"]["organisations"] == 2 and theirs["office"]["office_id"] == "FR-IT"
        assert "by_office" not in _ok(await http.get(f"{base}/{org.event_id}/report"))

        async with playwright_api.async_playwright() as pw:
            profile = tempfile.mkdtemp(prefix="dashboard-office-chromium-")
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{reporting}{link['url']}")
                tid = page.get_by_test_id
                await expect(tid("live-status")).to_have_text("live", timeout=WAIT_MS)
                await expect(tid("office")).to_contain_text("EEN Lower Saxony")
                await expect(tid("value-applied")).to_have_text("2")
                await expect(tid("value-approved")).to_have_text("2")
                assert await tid("country-de").get_attribute("data-total") == "2"
                await expect(tid("country-fr")).to_have_count(0)
                await expect(tid("by-office")).to_have_count(0)
                await page.evaluate("window.__notReloaded = true")

                # A new participant of the office: its figures move live; another
                # office's newcomer changes nothing here.
                await org.register("business", "Hildesheim Optics GmbH", "DE", ["photonics"])
                await expect(tid("value-applied")).to_have_text("3", timeout=WAIT_MS)
                await org.register("business", "Torino Optics S.r.l.", "IT", ["photonics"])
                await _poll(
                    "the lead's dashboard to count 6 applications",
                    lambda: _applied(org, 6),
                )
                await expect(tid("value-applied")).to_have_text("3")

                # A meeting of its participant with another office's: on its agenda, with
                # the other side's name.
                await _poll("matching to learn the approvals", lambda: org.matching_knows(3))
                await org.meet(c1, c2)
                await expect(tid("funnel-all-placed")).to_have_attribute(
                    "data-value", "1", timeout=WAIT_MS
                )
                grid = tid(f"agenda-{(date.today() + timedelta(days=40)).isoformat()}")
                await expect(grid).to_contain_text("Rhône Optics Cluster", timeout=WAIT_MS)
                assert await page.evaluate("window.__notReloaded === true")
                assert errors == []
                OFFICE_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(OFFICE_SCREENSHOT), full_page=True)

                # The lead's page shows the figures by support office.
                await page.goto(f"{reporting}{lead_link['url']}")
                await expect(tid("value-applied")).to_have_text("6", timeout=WAIT_MS)
                await expect(tid("office-de-nds-registrations")).to_have_text("3")
                await expect(tid("office-fr-it-registrations")).to_have_text("3")
                await expect(tid("office-de-nds-meetings_requested")).to_have_text("1")
                await expect(tid("office-fr-it-meetings_requested")).to_have_text("1")
                assert errors == []
            finally:
                await context.close()
                shutil.rmtree(profile, ignore_errors=True)

        # Removing the co-organiser revokes its link.
        _ok(
            await http.delete(
                f"{urls['registration']}/api/events/{org.event_id}/co-organisers/"
                f"{lower_saxony['co_organiser_id']}",
                headers=org._as(org.key),
            )
        )

        async def link_revoked() -> bool:
            return (await http.get(f"{reporting}{link['json']}")).status_code == 403

        await _poll("reporting to revoke the removed co-organiser's link", link_revoked)


async def _applied(org: Organiser, count: int) -> bool:
    return bool((await org.dashboard()).get("totals", {}).get("applied") == count)
