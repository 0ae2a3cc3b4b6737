"""The portal without the services: its catalogues are complete, its pages render (from
answers an httpx mock gives in the services' place), its session cookie is sealed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from scripts import portal_messages
from services.portal import i18n
from services.portal.bootstrap import build_app
from services.portal.session import Session, Sessions
from shared.settings import PortalSettings

EVENT = {
    "event_id": "ev1",
    "name": "Photonics Days",
    "venue": "Hall 2",
    "time_zone": "Europe/Berlin",
    "days": ["2031-04-13"],
    "sessions": [{"start": "09:00", "end": "11:00"}],
    "slot_minutes": 30,
    "tables": 2,
    "meeting_types": ["Business2Business"],
    "registration_deadline": "2031-04-01T00:00:00+00:00",
    "support_offices": [{"office_id": "DE-NDS", "name": "EEN Lower Saxony", "countries": ["DE"]}],
}
ME = {"role": "organisation", "id": "r1", "name": "Harz Hub", "event_id": "ev1"}
LEAD = {"role": "organiser", "id": "o1", "name": "Lead", "event_id": None}
APPLICATIONS = [
    {
        "registration_id": rid,
        "name": name,
        "organisation_type": "business",
        "country": "DE",
        "sectors": ["photonics"],
        "support_office": "DE-NDS",
        "status": status,
    }
    for rid, name, status in [("r1", "Harz Hub", "pending"), ("r2", "Loire SAS", "approved")]
]
AGENDA = {
    "time_zone": "Europe/Berlin",
    "tables": 2,
    "published": False,
    "slots": [
        {
            "start": "2031-04-13T09:00:00+02:00",
            "tables": [
                {
                    "table": 1,
                    "meeting": {"meeting_id": "m1", "participants": ["r1", "r2"], "locked": True},
                },
                {"table": 2, "meeting": None},
            ],
            "online": [],
        }
    ],
}
DECIDED: list[str] = []
REQUESTED: list[dict[str, Any]] = []  # the meeting requests' bodies sent to matching
PARTICIPANT = {"registration_id": "r2", "name": "Loire SAS", "organisation_type": "business"}


def test_every_english_message_has_a_german_one() -> None:
    wanted = portal_messages.messages()
    german = i18n.translations("de")
    assert [m for m in wanted if not german.get(m)] == []
    assert portal_messages.main(["--check"]) == 0, "run python -m scripts.portal_messages"


def test_placeholders_survive_translation() -> None:
    german = i18n.translations("de")
    for english, text in german.items():
        assert sorted(_fields(english)) == sorted(_fields(text)), english


def _fields(text: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(text) if f]


def test_the_language_follows_the_browser_then_the_choice() -> None:
    de = i18n.translator("de")
    assert de("Sign in") == "Einloggen"
    assert de("Table {n}", n=3) == "Tisch 3"
    assert i18n.translator("en")("no_interest") == "No interest"


def _services(request: httpx.Request) -> httpx.Response:
    path, key = request.url.path, request.headers.get("x-api-key")
    answers: dict[str, Any] = {
        "/api/events": [EVENT],
        "/api/events/ev1": EVENT,
        "/api/registrations/r1": {
            "registration_id": "r1",
            "name": "Harz Hub",
            "status": "approved",
            "support_office": "DE-NDS",
            "status_reason": None,
        },
        "/api/me/meeting-requests": [
            {
                "request_id": "m1",
                "requester_id": "r2",
                "recipient_id": "r1",
                "status": "pending",
                "message": "Hello",
            }
        ],
        "/api/events/ev1/participants": [PARTICIPANT],
        "/api/me/recommendations": {
            "recommendations": [
                {
                    **PARTICIPANT,
                    "country": "FR",
                    "sectors": ["photonics"],
                    "offers": ["optics"],
                    "requests": [],
                    "meeting_type": "Business2Business",
                    "score": 0.8,
                    "reasons": ["same sector (photonics), different country (France)"],
                }
            ]
        },
        "/api/events/ev1/participants/r1/agenda": {
            "local_time_zone": "Europe/Berlin",
            "published": False,
            "meetings": [
                {
                    "meeting_id": "m1",
                    "with": ["r2"],
                    "table": 1,
                    "start": "2031-04-13T09:00:00+02:00",
                    "end": "2031-04-13T09:30:00+02:00",
                    "local_start": "2031-04-13T09:00:00+02:00",
                    "local_end": "2031-04-13T09:30:00+02:00",
                }
            ],
        },
        "/api/registrations/r1/preferences": {"calendar_feed_url": "http://n/calendar/t.ics"},
    }
    if path == "/api/me":
        if key == "organiser":
            return httpx.Response(200, json={**LEAD, "events": ["ev1"]})
        return httpx.Response(200, json=ME) if key == "good" else _refused(401)
    if path == "/api/events/ev1/registrations" and key == "organiser":
        status = request.url.params.get("status")
        return httpx.Response(200, json=[r for r in APPLICATIONS if status in (None, r["status"])])
    if path == "/api/events/ev1/agenda":
        return httpx.Response(200, json=AGENDA)
    if path == "/api/events/ev1/unscheduled":
        return httpx.Response(200, json=[])
    if request.method == "POST" and path == "/api/events/ev1/meeting-requests":
        REQUESTED.append(json.loads(request.content))
        return httpx.Response(201, json={"request_id": "new"})
    if request.method == "POST" and path.endswith(("/approve", "/reject", "/waitlist")):
        DECIDED.append(path)
        return httpx.Response(200, json={})
    if path in answers:
        return httpx.Response(200, json=answers[path])
    return _refused(404)


def _refused(status: int) -> httpx.Response:
    body = {"title": "Refused", "detail": f"refused with {status}", "status": status}
    return httpx.Response(status, content=json.dumps(body))


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = build_app(PortalSettings(portal_session_secret="unit-test"))
    with TestClient(app) as c:
        mock = httpx.AsyncClient(transport=httpx.MockTransport(_services))
        app.state.portal.api.http = mock
        yield c


def test_public_pages_render(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200 and "Photonics Days" in home.text
    assert 'lang="en"' in home.text
    assert "Veranstaltungen" in client.get("/", headers={"accept-language": "de-DE,de"}).text
    event = client.get("/events/ev1")
    assert "Register your organisation" in event.text
    form = client.get("/events/ev1/register")
    assert 'name="support_office"' in form.text and "EEN Lower Saxony" in form.text
    assert client.get("/events/nope").status_code == 404


def test_participant_pages_need_a_session_and_render(client: TestClient) -> None:
    first = client.get("/events/ev1/me", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/signin")
    bad = client.post("/signin", data={"key": "bad"})
    assert bad.status_code == 401 and "not valid" in bad.text
    signed = client.post("/signin", data={"key": "good"}, follow_redirects=False)
    assert signed.headers["location"].startswith("/events/ev1/me")
    cookie = signed.cookies["portal_session"]
    assert "good" not in cookie and "httponly" in signed.headers["set-cookie"].lower()
    me = client.get("/events/ev1/me")
    assert "Loire SAS" in me.text and "Accept the request of Loire SAS" in me.text
    recs = client.get("/events/ev1/recommendations")
    assert "different country" in recs.text and "Request a meeting with Loire SAS" in recs.text
    agenda = client.get("/events/ev1/agenda")
    assert "09:00" in agenda.text and "http://n/calendar/t.ics" in agenda.text
    assert client.get("/events/ev1/directory?q=optics").status_code == 200
    assert client.get("/events/ev1/applications").status_code == 403  # not an organiser


def test_the_request_form_sends_the_preferred_time(client: TestClient) -> None:
    client.post("/signin", data={"key": "good"})
    recs = client.get("/events/ev1/recommendations")
    assert 'name="part_of_day"' in recs.text and '<option value="morning">' in recs.text
    for when, sent in [("morning", {"part_of_day": "morning"}), ("", None)]:
        r = client.post(
            "/events/ev1/requests",
            data={"recipient_id": "r2", "message": "", "part_of_day": when},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        assert REQUESTED[-1].get("time_preference") == sent
        assert REQUESTED[-1]["recipient_id"] == "r2"


def test_the_session_is_sealed() -> None:
    sessions = Sessions("one secret")
    sealed = sessions.seal(Session(key="k-secret", role="organisation", id="r1"))
    assert "k-secret" not in sealed
    assert sessions.open(sealed) == Session(key="k-secret", role="organisation", id="r1")
    assert Sessions("another secret").open(sealed) is None
    assert sessions.open(sealed[:-3] + "abc") is None


def test_the_event_form_makes_registrations_body() -> None:
    from services.portal.forms import event_body

    body = event_body(
        {
            "name": "Days",
            "venue": "Hall",
            "time_zone": "Europe/Berlin",
            "days": "2031-04-13, 2031-04-14",
            "sessions": "09:00-12:00\n14:00 - 16:00",
            "slot_minutes": "30",
            "tables": "5",
            "registration_deadline": "2031-04-01T18:00",
            "support_offices": "DE-NDS; EEN Lower Saxony; de, at",
            "max_meetings_per_participant": "8",
        },
        ["Business2Business"],
    )
    assert body["days"] == ["2031-04-13", "2031-04-14"]
    assert body["sessions"][1] == {"start": "14:00", "end": "16:00"}
    assert body["registration_deadline"] == "2031-04-01T18:00:00+02:00"
    assert body["support_offices"][0]["countries"] == ["DE", "AT"]
    assert body["max_meetings_per_participant"] == 8
    with pytest.raises(ValueError, match="deadline"):
        event_body({"registration_deadline": "soon"}, [])


def test_organiser_pages_render_and_decide_in_bulk(client: TestClient) -> None:
    client.post("/signin", data={"key": "organiser"})
    home = client.get("/")
    assert 'data-testid="organised-events"' in home.text and "Create an event" in home.text
    pending = client.get("/events/ev1/applications?status=pending")
    assert "Harz Hub" in pending.text and "Loire SAS" not in pending.text
    decided = client.post(
        "/events/ev1/applications",
        data={"registration_id": ["r1", "r2"], "decision": "approve"},
        follow_redirects=False,
    )
    assert decided.status_code == 303 and "notice=decided" in decided.headers["location"]
    assert DECIDED[-2:] == ["/api/registrations/r1/approve", "/api/registrations/r2/approve"]
    grid = client.get("/events/ev1/grid")
    assert "Harz Hub · Loire SAS" in grid.text and ">Unlock<" in grid.text
    assert "Re-optimise" in grid.text
    assert client.get("/events/ev1/me").status_code == 403  # not a participant
    assert client.get("/organise/new-event").status_code == 200


def test_the_rating_page_rates_with_one_click(client: TestClient) -> None:
    client.post("/signin", data={"key": "good"})
    page = client.get("/events/ev1/meetings/m1/rate")
    assert "How did your meeting with Loire SAS go?" in page.text
    assert page.text.count('name="rating"') == 4
    assert client.get("/events/ev1/meetings/nope/rate").status_code == 404
