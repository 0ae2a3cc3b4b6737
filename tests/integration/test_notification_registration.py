"""Notification with the real registration service: contact details fetched at send time.

Registration and notification run as subprocesses on fresh databases. An
organisation registers through registration's API and is approved: its
representative gets both emails, at the address only registration can read.
After its personal data is erased, the next decision sends nothing, and the
delivery log says why. A support office's co-organisers hear, once each, of every
participant of their office who registers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.integration.notification_support import (
    ADMIN_KEY,
    ServiceProcess,
    SmtpSink,
    create_database,
    drop_database,
    service_env,
)
from tests.integration.support import Infra, wait_until

pytestmark = pytest.mark.integration
ADMIN = {"X-API-Key": ADMIN_KEY}


async def test_emails_reach_the_address_only_registration_can_read_until_erasure(
    infra: Infra, tmp_path: Path
) -> None:
    smtp = SmtpSink()
    await smtp.start()
    made = [await create_database(infra.admin_dsn) for _ in range(2)]
    (_, registration_dsn), (_, notification_dsn) = made
    suffix = f"-ntest-{uuid.uuid4().hex[:10]}"
    registration = ServiceProcess(
        {
            "REGISTRATION_DATABASE_URL": registration_dsn,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "CONSUMER_GROUP_SUFFIX": suffix,
        },
        tmp_path / "registration.log",
        service="registration",
    )
    notification = ServiceProcess(
        {
            **service_env(
                dsn=notification_dsn,
                bootstrap=infra.bootstrap_servers,
                smtp_port=smtp.port,
                registration_url=registration.url,
            ),
            "CONSUMER_GROUP_SUFFIX": suffix,
        },
        tmp_path / "notification.log",
    )
    address = f"rep-{uuid.uuid4().hex[:8]}@example.org"
    try:
        await registration.start()
        await notification.start()
        async with httpx.AsyncClient(base_url=registration.url, timeout=10) as http:
            r = await http.post("/api/organisers", json={"name": "EEN"}, headers=ADMIN)
            organiser = {"X-API-Key": r.json()["api_key"]}
            day = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
            r = await http.post(
                "/api/events",
                headers=organiser,
                json={
                    "name": "Photonics Matchmaking",
                    "venue": "Hannover",
                    "time_zone": "Europe/Berlin",
                    "days": [day],
                    "sessions": [{"start": "10:00", "end": "12:00"}],
                    "slot_minutes": 30,
                    "tables": 5,
                    "meeting_types": ["Cluster2Cluster"],
                    "registration_deadline": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
                },
            )
            assert r.status_code == 201, r.text
            event_id = r.json()["event_id"]
            r = await http.post(
                f"/api/events/{event_id}/registrations",
                json={
                    "organisation_type": "cluster",
                    "name": f"Optics Valley {uuid.uuid4().hex[:6]}",
                    "country": "DE",
                    "representatives": [{"name": "Ann Example", "email": address}],
                },
            )
            assert r.status_code == 201, r.text
            registration_id, own_key = r.json()["registration_id"], r.json()["api_key"]
            base = f"/api/registrations/{registration_id}"
            assert (await http.post(f"{base}/approve", headers=organiser)).status_code == 200

            await wait_until(lambda: len(smtp.to(address)) == 2, limit=60, what="two emails")
            kinds = sorted(m.kind for m in smtp.to(address))
            assert kinds == ["application.approved", "application.received"]
            assert "Photonics Matchmaking" in str(smtp.to(address)[0].message["Subject"])

            erased = await http.delete(f"{base}/personal-data", headers={"X-API-Key": own_key})
            assert erased.status_code == 200, erased.text
            assert (await http.post(f"{base}/reject", headers=organiser)).status_code == 200

        async with httpx.AsyncClient(base_url=notification.url, timeout=10) as http:

            async def rejection_logged() -> bool:
                log = (
                    await http.get(
                        f"/api/registrations/{registration_id}/notifications", headers=ADMIN
                    )
                ).json()
                return any(
                    d["kind"] == "application.rejected" and d["status"] != "pending" for d in log
                )

            await wait_until(rejection_logged, limit=60, what="the rejection's delivery settled")
            log = (
                await http.get(f"/api/registrations/{registration_id}/notifications", headers=ADMIN)
            ).json()
        (rejection,) = [d for d in log if d["kind"] == "application.rejected"]
        assert rejection["status"] == "skipped" and "erased" in rejection["last_error"]
        assert len(smtp.to(address)) == 2
    finally:
        await notification.stop()
        await registration.stop()
        await smtp.stop()
        for name, _ in made:
            await drop_database(infra.admin_dsn, name)


async def _event(http: httpx.AsyncClient, organiser: dict[str, str], **extra: object) -> str:
    day = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    r = await http.post(
        "/api/events",
        headers=organiser,
        json={
            "name": "Photonics Matchmaking",
            "venue": "Hannover",
            "time_zone": "Europe/Berlin",
            "days": [day],
            "sessions": [{"start": "10:00", "end": "12:00"}],
            "slot_minutes": 30,
            "tables": 5,
            "meeting_types": ["Cluster2Cluster"],
            "registration_deadline": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    event_id: str = r.json()["event_id"]
    return event_id


async def test_an_office_co_organisers_hear_once_of_each_participant_of_theirs(
    infra: Infra, tmp_path: Path
) -> None:
    smtp = SmtpSink()
    await smtp.start()
    made = [await create_database(infra.admin_dsn) for _ in range(2)]
    (_, registration_dsn), (_, notification_dsn) = made
    suffix = f"-ntest-{uuid.uuid4().hex[:10]}"
    registration = ServiceProcess(
        {
            "REGISTRATION_DATABASE_URL": registration_dsn,
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "CONSUMER_GROUP_SUFFIX": suffix,
        },
        tmp_path / "registration.log",
        service="registration",
    )
    notification = ServiceProcess(
        {
            **service_env(
                dsn=notification_dsn,
                bootstrap=infra.bootstrap_servers,
                smtp_port=smtp.port,
                registration_url=registration.url,
            ),
            "CONSUMER_GROUP_SUFFIX": suffix,
        },
        tmp_path / "notification.log",
    )
    tag = uuid.uuid4().hex[:8]
    saxony, removed, paris = (f"{who}-{tag}@example.org" for who in ("ns", "gone", "idf"))
    try:
        await registration.start()
        await notification.start()
        async with httpx.AsyncClient(base_url=registration.url, timeout=10) as http:
            r = await http.post("/api/organisers", json={"name": "EEN"}, headers=ADMIN)
            organiser = {"X-API-Key": r.json()["api_key"]}
            offices = [
                {"office_id": "de-ns", "name": "EEN Lower Saxony", "countries": ["DE"]},
                {"office_id": "fr-idf", "name": "EEN Paris Region", "countries": ["FR"]},
            ]
            event_id = await _event(http, organiser, support_offices=offices)
            co = f"/api/events/{event_id}/co-organisers"
            added = {}
            for name, office, address in (
                ("Saxony", "de-ns", saxony),
                ("Gone", "de-ns", removed),
                ("Paris", "fr-idf", paris),
                ("Silent", "de-ns", None),
            ):
                body = {"office_id": office, "name": name, "email": address}
                r = await http.post(co, json=body, headers=organiser)
                assert r.status_code == 201, r.text
                added[name] = r.json()["co_organiser_id"]
            r = await http.delete(f"{co}/{added['Gone']}", headers=organiser)
            assert r.status_code == 200, r.text

            async def register(name: str, country: str, office: str | None = None) -> str:
                r = await http.post(
                    f"/api/events/{event_id}/registrations",
                    json={
                        "organisation_type": "cluster",
                        "name": name,
                        "country": country,
                        "representatives": [{"name": "Ann Example", "email": f"a-{tag}@x.org"}],
                        "support_office": office,
                    },
                )
                assert r.status_code == 201, r.text
                registration_id: str = r.json()["registration_id"]
                return registration_id

            by_rule = await register(f"Optics Valley {tag}", "DE")  # the country rule
            await wait_until(lambda: len(smtp.to(saxony)) == 1, limit=60, what="a notice")
            await register(f"Lumière {tag}", "FR", "de-ns")  # its own choice
            await wait_until(lambda: len(smtp.to(saxony)) == 2, limit=60, what="two notices")
            r = await http.post(
                f"/api/registrations/{by_rule}/support-office",
                json={"office_id": "fr-idf"},
                headers=organiser,
            )
            assert r.status_code == 200, r.text
            # Paris's own participant, after the reassignment: the last message there.
            await register(f"Seine Photonics {tag}", "FR")
            await wait_until(lambda: len(smtp.to(paris)) == 1, limit=60, what="Paris's notice")

        # Time for a duplicate to show: every application's own receipt is in.
        await wait_until(lambda: len(smtp.to(f"a-{tag}@x.org")) >= 3, limit=60, what="receipts")
        first, second = smtp.to(saxony)
        assert {first.kind, second.kind} == {"office.participant_registered"}
        assert str(first.message["Subject"]) == (
            f"Optics Valley {tag} registered for Photonics Matchmaking"
        )
        text = first.part("text/plain") or ""
        assert "Dear Saxony," in text
        assert f"Optics Valley {tag} registered for Photonics Matchmaking and belongs to" in text
        assert "rule for its country" in text
        assert "chose your office" in (second.part("text/plain") or "")
        assert first.message["List-Unsubscribe"] is None
        assert f"Seine Photonics {tag}" in str(smtp.to(paris)[0].message["Subject"])
        assert smtp.to(removed) == []
        assert len(smtp.to(saxony)) == 2 and len(smtp.to(paris)) == 1
    finally:
        await notification.stop()
        await registration.stop()
        await smtp.stop()
        for name, _ in made:
            await drop_database(infra.admin_dsn, name)
