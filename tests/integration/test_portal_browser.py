"""The web portal in a real browser (Debian's Chromium driven by Playwright) over a
platform of the five services run as subprocesses on fresh databases and the real broker,
with the portal as one more process. A participant registers in the browser, the
organiser approves it in the browser, the participant requests a meeting with a
recommended partner, the partner accepts in its own browser context, the meeting appears
on the agenda once scheduling places it and is rated; a co-organiser sees only its
office's participants. axe-core (npm, installed under var/axe by `make axe`) checks the
main pages: no serious or critical violation. The organiser imports participants from an
XLSX file (one row refused, reported with its line) and downloads an export, which opens
with openpyxl. Screenshots in var/artefacts/portal-*.png.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import Workbook, load_workbook

from tests.integration.browser_support import (
    AXE,
    CHROMIUM,
    CHROMIUM_ARGS,
    axe,
    running_portal,
    shot,
)
from tests.integration.notification_support import SmtpSink
from tests.integration.support import Infra, service_platform, wait_until

pytestmark = pytest.mark.integration

ADMIN_KEY = "portal-browser-admin-key"
PORTS = {
    "registration": 19321,
    "matching": 19322,
    "scheduling": 19323,
    "notification": 19324,
    "reporting": 19320,
}
PORTAL_PORT = 19325
WAIT_MS = 45_000
OFFICES = [
    {"office_id": "DE-NDS", "name": "EEN Lower Saxony", "countries": ["DE"]},
    {"office_id": "FR-IT", "name": "EEN France and Italy", "countries": ["FR", "IT"]},
]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: `make browser` installs it", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    """The SMTP server notification sends to: the sign-in link is read from it."""
    async with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def urls(
    infra: Infra, tmp_path: Path, scheduler_lock: None, smtp: SmtpSink
) -> AsyncIterator[dict[str, str]]:
    async with service_platform(
        infra,
        PORTS,
        tmp_path,
        label="e2e-portal",
        admin_key=ADMIN_KEY,
        env={
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "PORTAL_PUBLIC_URL": f"http://127.0.0.1:{PORTAL_PORT}",
            "DELIVERY_POLL_SECONDS": "0.2",
        },
    ) as platform:
        async with running_portal(platform.urls, PORTAL_PORT, tmp_path) as portal:
            yield {**platform.urls, "portal": portal}


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()


async def _set_up(http: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, Any]:
    """An organiser, its event with two support offices, a co-organiser, two approved
    participants (one the partner to be recommended)."""
    reg = urls["registration"]
    organiser = _ok(
        await http.post(
            f"{reg}/api/organisers",
            headers={"X-API-Key": ADMIN_KEY},
            json={"name": "Portal test organiser"},
        )
    )
    key = organiser["api_key"]
    first = date.today() + timedelta(days=30)
    event = _ok(
        await http.post(
            f"{reg}/api/events",
            headers={"X-API-Key": key},
            json={
                "name": "Photonics matchmaking (portal test)",
                "venue": "Messe, Hall 2",
                "time_zone": "Europe/Berlin",
                "days": [first.isoformat()],
                "sessions": [{"start": "09:00", "end": "11:00"}],
                "slot_minutes": 30,
                "tables": 3,
                "meeting_types": ["Cluster2Cluster", "Business2Cluster", "Business2Business"],
                "registration_deadline": (datetime.now(UTC) + timedelta(days=20)).isoformat(),
                "support_offices": OFFICES,
            },
        )
    )
    eid = event["event_id"]
    co = _ok(
        await http.post(
            f"{reg}/api/events/{eid}/co-organisers",
            headers={"X-API-Key": key},
            json={"office_id": "DE-NDS", "name": "EEN Lower Saxony"},
        )
    )
    partners = {}
    for name, country, offers, requests in [
        ("Rhône Optics Cluster", "FR", ["laser optics testing"], ["photonics start-ups"]),
        ("Calenberg Lasers GmbH", "DE", ["industrial lasers"], ["distributors in France"]),
    ]:
        made = _ok(
            await http.post(
                f"{reg}/api/events/{eid}/registrations",
                json={
                    "organisation_type": "cluster" if "Cluster" in name else "business",
                    "name": name,
                    "country": country,
                    "sectors": ["photonics"],
                    "technologies": ["lasers"],
                    "offers": offers,
                    "requests": requests,
                    "representatives": [{"name": f"Contact of {name}", "email": "c@x.example"}],
                },
            )
        )
        partners[name] = made
        _ok(
            await http.post(
                f"{reg}/api/registrations/{made['registration_id']}/approve",
                headers={"X-API-Key": key},
            )
        )
    return {"key": key, "event_id": eid, "co_key": co["api_key"], "partners": partners}


def _clients_book() -> bytes:
    """A support office's clients: line 2 fine, line 3 with a country that is none."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Organisation type", "Name", "Country", "Representative name", "E-mail"])
    sheet.append(["business", "Hildesheim Optics GmbH", "DE", "Ida Hildesheim", "ida@h.example"])
    sheet.append(["business", "Nowhere Lasers Ltd", "XX", "Nora Nowhere", "nora@n.example"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cells(path: Path) -> set[Any]:
    """Every value in an XLSX file (Playwright keeps a download under a name without
    its extension, which openpyxl refuses: so it reads the bytes)."""
    book = load_workbook(io.BytesIO(path.read_bytes()), read_only=True)
    return {
        c for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for c in row
    }


async def _import_and_export(page: Any, portal: str, eid: str, found: dict[str, list[str]]) -> None:
    """The organiser imports an XLSX file from its event's page (the valid rows only: one
    is refused, with its line) and downloads the participants as XLSX."""
    expect = playwright_api.expect
    await page.goto(f"{portal}/events/{eid}")
    await page.get_by_role("link", name="Import participants").click()
    await page.get_by_label("Import the valid rows only").check()
    await page.get_by_label("CSV or XLSX file").set_input_files(
        {
            "name": "clients.xlsx",
            "mimeType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "buffer": _clients_book(),
        }
    )
    await page.get_by_role("button", name="Import", exact=True).click()
    await expect(page.get_by_test_id("import-result")).to_contain_text(
        "2 row(s) read: 1 created, 0 unchanged, 1 refused."
    )
    refused = page.get_by_test_id("refused-line-3")
    await expect(refused).to_contain_text("country")
    await expect(page.get_by_test_id("key-line-2")).not_to_be_empty()
    await axe(page, "import", found)
    await shot(page, "import")

    await page.get_by_role("link", name="Exports").first.click()
    await expect(page.get_by_test_id("exports")).to_be_visible()
    await axe(page, "exports", found)
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="XLSX · Participants").click()
    download = await waiting.value
    assert download.suggested_filename == "participants.xlsx"
    cells = await asyncio.to_thread(_cells, await download.path())
    assert {"Hildesheim Optics GmbH", "Harz Photonics Hub"} <= cells
    assert "Nowhere Lasers Ltd" not in cells


async def _edit_event(page: Any, portal: str, eid: str, found: dict[str, list[str]]) -> None:
    """The organiser edits its event: a refused change shows its error beside the field at
    fault (and changes nothing), a sound one is saved and shown on the event's page."""
    expect = playwright_api.expect
    await page.goto(f"{portal}/events/{eid}")
    await page.get_by_role("link", name="Edit the event").click()
    await expect(page.locator("#venue")).to_have_value("Messe, Hall 2")  # prefilled
    await expect(page.locator("#slot_minutes")).to_have_value("30")
    await page.fill("#slot_minutes", "45")  # the 09:00-11:00 session is no whole number of them
    await page.get_by_role("button", name="Save the changes").click()
    error = page.get_by_test_id("error-sessions")
    await expect(error).to_contain_text("45-minute slots")
    await expect(page.locator("#sessions")).to_have_attribute("aria-invalid", "true")
    await axe(page, "edit-event-error", found)
    await shot(page, "edit-event-error")
    await page.fill("#slot_minutes", "30")
    await page.fill("#venue", "Messe, Hall 4")
    await page.fill("#tables", "4")
    await axe(page, "edit-event", found)
    await page.get_by_role("button", name="Save the changes").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("settings are changed")
    await expect(page.get_by_text("Messe, Hall 4")).to_be_visible()
    await expect(page.get_by_text("30 minutes, 4 tables")).to_be_visible()
    await shot(page, "edited-event")


async def _sign_in_by_email(
    page: Any, portal: str, eid: str, smtp: SmtpSink, found: dict[str, list[str]]
) -> None:
    """The participant signs out, asks for a link at its representative's address, opens
    the e-mail's link (notification sent it through the SMTP server) and is signed in."""
    expect = playwright_api.expect
    await page.goto(f"{portal}/events/{eid}/me")
    await page.get_by_role("button", name="Sign out").click()
    await page.goto(f"{portal}/signin")
    await page.fill("#email", "Hanna@Harz.example")
    await axe(page, "signin", found)
    await shot(page, "signin")
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await expect(page.get_by_test_id("link-sent")).to_be_visible()
    await shot(page, "signin-sent")

    def link_mail() -> list[Any]:
        return [m for m in smtp.to("hanna@harz.example") if m.kind == "sign_in.link"]

    await wait_until(lambda: bool(link_mail()), limit=60, interval=0.2, what="the sign-in mail")
    text = link_mail()[0].part("text/plain") or ""
    link = next(word for word in text.split() if "/signin/link?token=" in word)
    await page.goto(link)
    await axe(page, "signin-link", found)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("status")).to_have_text("approved")
    await shot(page, "signed-in-by-email")
    await page.goto(link)  # once only
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("link-error")).to_contain_text("used already")


async def test_participants_and_organisers_do_their_job_in_the_browser(
    urls: dict[str, str], smtp: SmtpSink
) -> None:
    expect = playwright_api.expect
    portal = urls["portal"]
    violations: dict[str, list[str]] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        setup = await _set_up(http, urls)
    eid = setup["event_id"]
    rhone = setup["partners"]["Rhône Optics Cluster"]
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            contexts = [
                await browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
                for _ in range(4)
            ]
            me, organiser, partner, office = [await c.new_page() for c in contexts]
            errors: list[str] = []
            for page in (me, organiser, partner, office):
                page.on("pageerror", lambda exc: errors.append(str(exc)))
            page_ = me

            # Home -> event -> register with the full profile.
            await page_.goto(portal)
            await page_.get_by_role("link", name="Photonics matchmaking (portal test)").click()
            await axe(page_, "event", violations)
            await page_.get_by_role("link", name="Register your organisation").click()
            await page_.fill("#name", "Harz Photonics Hub")
            await page_.select_option("#organisation_type", "cluster")
            await page_.fill("#country", "DE")
            await page_.select_option("#support_office", "DE-NDS")
            await page_.fill("#sectors", "photonics, ICT")
            await page_.fill("#technologies", "lasers, sensors")
            await page_.fill("#offers", "photonics start-ups\nlaser sensor prototypes")
            await page_.fill("#requests", "laser optics testing")
            await page_.fill("#availability", f"{(date.today() + timedelta(days=30))} 09:00-11:00")
            await page_.fill("#rep_name_1", "Hanna Harz")
            await page_.fill("#rep_email_1", "hanna@harz.example")
            await axe(page_, "register", violations)
            await shot(page_, "register")
            await page_.get_by_role("button", name="Register", exact=True).click()
            await expect(page_.get_by_test_id("api-key")).to_be_visible()
            await shot(page_, "registered")
            await page_.get_by_role("link", name="See your status").click()
            await expect(page_.get_by_test_id("status")).to_have_text("pending")

            # The organiser approves it in its browser.
            await organiser.goto(f"{portal}/signin")
            await organiser.fill("#key", setup["key"])
            await organiser.get_by_role("button", name="Sign in").click()
            await organiser.goto(f"{portal}/events/{eid}/applications?status=pending")
            rows = organiser.get_by_test_id("applications")
            await expect(rows).to_contain_text("Harz Photonics Hub")
            await expect(organiser.get_by_label("Choose all shown")).to_be_visible()  # portal.js
            await axe(organiser, "applications", violations)
            await organiser.get_by_label("Choose Harz Photonics Hub").check()
            await organiser.get_by_role("button", name="Approve").click()
            await expect(organiser.get_by_test_id("notice")).to_be_visible()
            await organiser.goto(f"{portal}/events/{eid}/applications")
            await expect(rows).to_contain_text("approved")
            await shot(organiser, "applications")

            # The participant finds the recommended partner and asks for a meeting.
            recommended = me.get_by_test_id(f"recommended-{rhone['registration_id']}")

            async def recommended_shown() -> bool:
                await me.goto(f"{portal}/events/{eid}/recommendations")
                return bool(await recommended.count() == 1)

            await wait_until(recommended_shown, limit=60, interval=1, what="the recommendation")
            await expect(recommended.locator(".reasons li").first).to_be_visible()
            await axe(me, "recommendations", violations)
            await shot(me, "recommendations")
            await recommended.get_by_role("button", name="Request a meeting").click()
            await expect(me.get_by_test_id("notice")).to_be_visible()
            await expect(me.get_by_test_id("outgoing")).to_contain_text("Rhône Optics Cluster")
            await axe(me, "me", violations)

            # The partner accepts in its own browser context.
            await partner.goto(f"{portal}/signin")
            await partner.fill("#key", rhone["api_key"])
            await partner.get_by_role("button", name="Sign in").click()
            incoming = partner.get_by_test_id("incoming")
            await expect(incoming).to_contain_text("Harz Photonics Hub")
            await incoming.get_by_role("button", name="Accept").click()
            await expect(partner.get_by_test_id("notice")).to_be_visible()
            await shot(partner, "accepted")

            # Scheduling places it: on the participant's agenda; rated from there.
            agenda = me.get_by_test_id("my-agenda")

            async def placed() -> bool:
                await me.goto(f"{portal}/events/{eid}/agenda?tz=America/New_York")
                return bool(await agenda.count() == 1)

            await wait_until(placed, limit=60, interval=1, what="the meeting on the agenda")
            await expect(agenda).to_contain_text("Rhône Optics Cluster")
            await expect(me.get_by_test_id("calendar-feed")).to_be_visible()
            await axe(me, "agenda", violations)
            await shot(me, "agenda")
            await agenda.get_by_label("Rating").select_option("cooperation_possible")
            await agenda.get_by_role("button", name="Rate").click()
            await expect(me.get_by_test_id("notice")).to_contain_text("rating was recorded")
            await agenda.get_by_label("Outcome").select_option("agreement_reached")
            await agenda.get_by_label("Kind of agreement").select_option("joint_event")
            await agenda.get_by_role("button", name="Report").click()
            await expect(me.get_by_test_id("notice")).to_contain_text("outcome was recorded")
            await me.get_by_role("link", name="Notification preferences").click()
            await me.fill("#time_zone", "America/New_York")
            await me.get_by_label("One e-mail a day").check()
            await me.get_by_role("button", name="Save").click()
            await expect(me.get_by_test_id("notice")).to_be_visible()
            await expect(me.locator("#digest")).to_be_checked()
            await axe(me, "preferences", violations)

            # The organiser's grid shows it, with lock and re-optimise.
            await organiser.goto(f"{portal}/events/{eid}/grid")
            await expect(organiser.get_by_test_id("grid")).to_contain_text("Harz Photonics Hub")
            await organiser.get_by_role("button", name="Lock").first.click()
            await expect(organiser.get_by_test_id("grid")).to_contain_text("locked")
            await axe(organiser, "grid", violations)
            await shot(organiser, "grid")
            organiser.once("dialog", lambda dialog: dialog.accept())  # portal.js asks first
            await organiser.get_by_role("button", name="Publish the agenda").click()
            await expect(organiser.get_by_test_id("published")).to_be_visible()

            # Spreadsheets: an import with one refused row, and an export downloaded.
            started = time.monotonic()
            await _import_and_export(organiser, portal, eid, violations)
            print(f"import and export in the browser: {time.monotonic() - started:.1f}s")

            # The organiser changes its event's settings.
            await _edit_event(organiser, portal, eid, violations)

            # The participant signs in again by e-mail.
            await _sign_in_by_email(me, portal, eid, smtp, violations)

            # The organiser creates its next event in a form.
            await organiser.goto(f"{portal}/")
            await organiser.get_by_role("link", name="Create an event").click()
            await organiser.fill("#name", "Photonics matchmaking, second edition")
            await organiser.fill("#venue", "Messe, Hall 3")
            await organiser.fill("#days", (date.today() + timedelta(days=90)).isoformat())
            deadline = (date.today() + timedelta(days=80)).isoformat()
            await organiser.fill("#registration_deadline", f"{deadline}T18:00")
            await organiser.fill("#support_offices", "DE-NDS; EEN Lower Saxony; DE")
            await axe(organiser, "new-event", violations)
            await organiser.get_by_role("button", name="Create the event").click()
            await expect(organiser.get_by_role("heading", level=1)).to_have_text(
                "Photonics matchmaking, second edition"
            )
            await expect(organiser.get_by_text("EEN Lower Saxony (DE)")).to_be_visible()

            # A co-organiser sees its office's participants only.
            await office.goto(f"{portal}/signin")
            await office.fill("#key", setup["co_key"])
            await office.get_by_role("button", name="Sign in").click()
            listed = office.get_by_test_id("applications")
            await expect(listed).to_contain_text("Harz Photonics Hub")
            await expect(listed).to_contain_text("Calenberg Lasers GmbH")
            await expect(listed).not_to_contain_text("Rhône Optics Cluster")
            await shot(office, "co-organiser")
            # Its agenda grid: its participant's meeting, read only (no re-optimise).
            await office.get_by_role("link", name="Agenda grid").first.click()
            await expect(office.get_by_test_id("grid")).to_contain_text("Harz Photonics Hub")
            await expect(office.get_by_role("button", name="Re-optimise")).to_have_count(0)
            await shot(office, "co-organiser-grid")

            # German, by the language switch.
            await page_.goto(f"{portal}/?lang=de")
            await expect(page_.get_by_role("heading", level=1)).to_have_text(
                "Matchmaking-Veranstaltungen"
            )
            await axe(page_, "home", violations)
            await shot(page_, "home-de")
            assert errors == []
        finally:
            await browser.close()
    print(json.dumps(violations, indent=1))
    if AXE.exists():
        assert all(not found for found in violations.values()), violations
