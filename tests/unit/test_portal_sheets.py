"""The portal's spreadsheet pages without the services: the import page streams the file
to registration's import route and shows its answer (created, unchanged, refused rows,
the keys once); the exports page lists every export and each download is passed through
with the user's key, its content type and its file name. An httpx mock answers in the
services' place and records what the portal sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.portal.bootstrap import build_app
from services.portal.pages_sheets import EXPORTS
from shared.settings import PortalSettings

EVENT = {
    "event_id": "ev1",
    "name": "Photonics Days",
    "venue": "Hall 2",
    "time_zone": "Europe/Berlin",
    "days": ["2031-04-13"],
    "slot_minutes": 30,
    "tables": 2,
    "meeting_types": ["Business2Business"],
    "registration_deadline": "2031-04-01T00:00:00+00:00",
    "support_offices": [],
}
WHO = {
    "organiser": {"role": "organiser", "id": "o1", "name": "Lead", "events": ["ev1"]},
    "forbidden": {"role": "organiser", "id": "o2", "name": "Another lead", "events": []},
    "office": {
        "role": "co_organiser",
        "id": "c1",
        "name": "EEN Lower Saxony",
        "event_id": "ev1",
        "office_id": "DE-NDS",
    },
    "elsewhere": {"role": "co_organiser", "id": "c2", "name": "Other", "event_id": "ev2"},
    "participant": {"role": "organisation", "id": "r1", "name": "Harz Hub", "event_id": "ev1"},
}
HOSTS = {
    "registration": "registration.test",
    "matching": "matching.test",
    "scheduling": "scheduling.test",
    "notification": "notification.test",
    "reporting": "reporting.test",
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TYPES = {"csv": "text/csv; charset=utf-8", "xlsx": XLSX, "pdf": "application/pdf"}
CREATED = {
    "event_id": "ev1",
    "mode": "valid-only",
    "correlation_id": "c-1",
    "rows": 4,
    "created": [
        {
            "line": 2,
            "name": "Calenberg Lasers",
            "country": "DE",
            "registration_id": "r9",
            "support_office": "DE-NDS",
            "status": "pending",
            "api_key": "key-of-calenberg",
        }
    ],
    "unchanged": [{"line": 3, "name": "Harz Hub", "country": "DE", "registration_id": "r1"}],
    "refused": [{"line": 4, "field": "country", "reason": "'XX' is not a country code"}],
    "ignored_columns": ["notes"],
    "api_keys_note": "each created registration's API key is shown here once",
}


class Services:
    """The services' answers; every request the portal made, kept."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.import_answer: httpx.Response = httpx.Response(200, json=CREATED)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.seen.append(request)
        host, path = request.url.host, request.url.path
        key = request.headers.get("x-api-key", "")
        if path == "/api/me":
            return httpx.Response(200, json=WHO[key]) if key in WHO else _problem(401)
        if path == "/api/events/ev1":
            return httpx.Response(200, json=EVENT)
        if path == "/api/events/ev1/registrations/import" and request.method == "POST":
            return self.import_answer
        if path.startswith("/api/events/ev1/") and "." in path.rsplit("/", 1)[1]:
            if key == "forbidden":
                return _problem(403)
            fmt = path.rsplit(".", 1)[1]
            name = path.rsplit("/", 1)[1].rsplit(".", 1)[0]
            return httpx.Response(
                200,
                content=f"{host} {path}".encode(),
                headers={
                    "content-type": TYPES[fmt],
                    "content-disposition": f'attachment; filename="{name}.{fmt}"',
                },
            )
        return _problem(404)

    def last(self, path: str) -> httpx.Request:
        return [r for r in self.seen if r.url.path == path][-1]


def _problem(status: int, **extra: Any) -> httpx.Response:
    body = {"title": "Refused", "detail": f"refused with {status}", "status": status, **extra}
    return httpx.Response(status, content=json.dumps(body))


@pytest.fixture
def services() -> Services:
    return Services()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    urls = {f"{svc}_url": f"http://{host}" for svc, host in HOSTS.items()}
    app = build_app(PortalSettings.model_validate({"portal_session_secret": "unit-test", **urls}))
    with TestClient(app) as c:
        app.state.portal.api.http = httpx.AsyncClient(transport=httpx.MockTransport(services))
        yield c


def _sign_in(client: TestClient, key: str) -> None:
    assert client.post("/signin", data={"key": key}, follow_redirects=False).status_code == 303


def _upload(client: TestClient, mode: str, body: bytes = b"name,country\nA,DE\n") -> Any:
    return client.post(
        "/events/ev1/import",
        data={"mode": mode},
        files={"file": ("clients.csv", body, "text/csv")},
    )


def _parts(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """The multipart body the portal sent: field name -> (file name, content)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    parts = {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts[str(part.get_param("name", header="content-disposition"))] = (
            part.get_filename(),
            payload,
        )
    return parts


def test_the_organisers_pages_link_to_import_and_exports(client: TestClient) -> None:
    _sign_in(client, "organiser")
    for page in ("/events/ev1", "/events/ev1/import", "/events/ev1/exports"):
        text = client.get(page).text
        assert 'href="/events/ev1/import"' in text and 'href="/events/ev1/exports"' in text, page
    page = client.get("/events/ev1/import")
    assert 'enctype="multipart/form-data"' in page.text
    assert 'value="all-or-nothing" checked' in page.text
    assert 'href="/events/ev1/import-template.xlsx"' in page.text
    german = client.get("/events/ev1/import?lang=de").text
    assert "Teilnehmende importieren" in german and "Nur die gültigen Zeilen importieren" in german


def test_the_co_organiser_has_them_in_its_navigation(client: TestClient) -> None:
    _sign_in(client, "office")
    exports = client.get("/events/ev1/exports")
    assert exports.status_code == 200 and "your support office" in exports.text
    main_nav = exports.text.split('aria-label="Main"')[1].split("</nav>")[0]
    assert 'href="/events/ev1/import"' in main_nav and 'href="/events/ev1/exports"' in main_nav
    assert 'data-testid="office"' in client.get("/events/ev1/import").text


def test_only_the_events_organisers_see_them(client: TestClient) -> None:
    first = client.get("/events/ev1/import", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/signin?back=/events/ev1/import"
    _sign_in(client, "participant")
    assert client.get("/events/ev1/exports").status_code == 403
    assert client.get("/events/ev1/exports/participants.csv").status_code == 403
    _sign_in(client, "elsewhere")
    assert client.get("/events/ev1/import").status_code == 403


def test_the_file_goes_to_registration_and_the_answer_is_shown_once(
    client: TestClient, services: Services
) -> None:
    _sign_in(client, "organiser")
    content = b"name,country\nCalenberg Lasers,DE\nHarz Hub,DE\nBad,XX\n"
    page = _upload(client, "valid-only", content)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    sent = services.last("/api/events/ev1/registrations/import")
    assert sent.headers["x-api-key"] == "organiser"
    assert sent.url.params["mode"] == "valid-only"
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert _parts(sent) == {"file": ("clients.csv", content)}
    text = page.text
    assert "4 row(s) read: 1 created, 1 unchanged, 1 refused." in text
    assert 'data-testid="refused-line-4"' in text and "is not a country code" in text
    assert "key-of-calenberg" in text and "shown only this once" in text
    assert "Harz Hub" in text and "Columns ignored: notes" in text
    assert 'value="valid-only" checked' in text  # the form keeps the chosen mode


def test_all_or_nothing_lists_the_refused_rows(client: TestClient, services: Services) -> None:
    _sign_in(client, "organiser")
    refused = [
        {"line": 3, "field": "representative_email", "reason": "not an e-mail address"},
        {"line": 7, "field": "country", "reason": "'XX' is not a country code"},
        {"line": 7, "field": "name", "reason": "empty"},
    ]
    services.import_answer = _problem(422, title="Rows refused: nothing imported", errors=refused)
    page = _upload(client, "all-or-nothing")
    assert page.status_code == 422
    assert services.last("/api/events/ev1/registrations/import").url.params["mode"] == (
        "all-or-nothing"
    )
    assert "Nothing was imported: 2 row(s) refused." in page.text
    for line in (3, 7):
        assert f'data-testid="refused-line-{line}"' in page.text
    assert "not an e-mail address" in page.text and "shown only this once" not in page.text


def test_a_file_refused_as_a_whole_says_why(client: TestClient, services: Services) -> None:
    _sign_in(client, "organiser")
    services.import_answer = _problem(
        422,
        detail="file: missing column(s): country",
        errors=[{"field": "file", "reason": "missing column(s): country"}],
    )
    page = _upload(client, "all-or-nothing")
    assert page.status_code == 422 and "missing column(s): country" in page.text
    assert "The file was not imported." in page.text
    empty = _upload(client, "all-or-nothing", b"")
    assert empty.status_code == 422 and "Choose a CSV or XLSX file first." in empty.text
    services.import_answer = _problem(403)
    assert _upload(client, "all-or-nothing").status_code == 403  # the error page


def test_the_exports_page_lists_every_export_in_each_format(client: TestClient) -> None:
    _sign_in(client, "organiser")
    page = client.get("/events/ev1/exports")
    links = [f"/events/ev1/exports/{x.name}.{f}" for x in EXPORTS for f in x.formats]
    assert len(links) == 14
    assert all(f'href="{link}"' in page.text for link in links)
    for label in ("Participants", "Meeting requests", "Agendas per participant", "Table plan"):
        assert label in page.text
    assert "Unscheduled meetings" in page.text and "Report figures" in page.text


@pytest.mark.parametrize(
    ("name", "fmt", "service", "path"),
    [
        ("participants", "csv", "registration", "/api/events/ev1/registrations/export.csv"),
        ("participants", "xlsx", "registration", "/api/events/ev1/registrations/export.xlsx"),
        ("meeting-requests", "xlsx", "matching", "/api/events/ev1/meeting-requests/export.xlsx"),
        ("agendas", "pdf", "scheduling", "/api/events/ev1/agendas.pdf"),
        ("table-plan", "xlsx", "scheduling", "/api/events/ev1/table-plan.xlsx"),
        ("unscheduled", "csv", "scheduling", "/api/events/ev1/unscheduled.csv"),
        ("report", "xlsx", "reporting", "/api/events/ev1/report.xlsx"),
    ],
)
def test_a_download_is_passed_through_with_the_users_key(
    client: TestClient, services: Services, name: str, fmt: str, service: str, path: str
) -> None:
    _sign_in(client, "office")
    got = client.get(f"/events/ev1/exports/{name}.{fmt}")
    assert got.status_code == 200
    assert got.content == f"{HOSTS[service]} {path}".encode()
    assert got.headers["content-type"] == TYPES[fmt]
    assert got.headers["content-disposition"] == f'attachment; filename="{path.rsplit("/")[-1]}"'
    assert "no-store" in got.headers["cache-control"]
    sent = services.last(path)
    assert sent.url.host == HOSTS[service] and sent.headers["x-api-key"] == "office"


def test_the_template_downloads_and_bad_addresses_are_refused(
    client: TestClient, services: Services
) -> None:
    _sign_in(client, "organiser")
    template = client.get("/events/ev1/import-template.xlsx")
    assert template.headers["content-type"] == XLSX
    assert "import-template.xlsx" in template.headers["content-disposition"]
    assert services.last("/api/events/ev1/registrations/import-template.xlsx").headers[
        "x-api-key"
    ] == ("organiser")
    assert client.get("/events/ev1/import-template.pdf").status_code == 404
    assert client.get("/events/ev1/exports/participants.pdf").status_code == 404
    assert client.get("/events/ev1/exports/secrets.csv").status_code == 404
    _sign_in(client, "forbidden")  # an organiser the service refuses: the error page
    refused = client.get("/events/ev1/exports/report.csv")
    assert refused.status_code == 403 and "refused with 403" in refused.text
