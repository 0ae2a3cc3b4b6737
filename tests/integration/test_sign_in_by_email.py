"""Signing in by e-mail end to end: registration and notification as subprocesses on fresh
databases over the real broker, with a real SMTP server catching the mail.

A participant asks for a link at one of its representatives' addresses: the answer is the
same as for an address nobody registered; the e-mail goes to that address only, through
notification, with a link to the portal. The link's token is stored nowhere (not in the
event store, not in notification's deliveries). It opens once: a key for the organisation
that expires with the portal's session; a second use, a forged token are refused with
problem details naming the token. More than three requests for one address in the window
are refused, registered or not.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from services.registration import addresses
from services.registration import rebuild as registration_rebuild
from shared.auth import digest
from shared.contracts import registry
from shared.rebuild import rebuild
from tests.integration.notification_support import Mail, SmtpSink
from tests.integration.support import (
    TEST_TOPIC_PREFIX,
    Infra,
    RunningPlatform,
    service_platform,
    wait_until,
)

pytestmark = pytest.mark.integration

ADMIN_KEY = "sign-in-admin-key"
PORTS = {"registration": 19351, "notification": 19352}
PORTAL = "http://portal.test:8005"
HANNA = "hanna@harz.example"
COLLEAGUE = "otto@harz.example"
LINK = re.compile(r"(http://portal\.test:8005/signin/link\?\S+)")


@pytest.fixture
async def platform(infra: Infra, tmp_path: Path) -> AsyncIterator[tuple[RunningPlatform, SmtpSink]]:
    async with (
        SmtpSink() as smtp,
        service_platform(
            infra,
            PORTS,
            tmp_path,
            label="e2e-sign-in",
            admin_key=ADMIN_KEY,
            env={
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp.port),
                "PORTAL_PUBLIC_URL": PORTAL,
                "DELIVERY_POLL_SECONDS": "0.2",
            },
        ) as running,
    ):
        yield running, smtp


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()


async def _fetchval(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def test_a_link_by_e_mail_signs_in_once(
    platform: tuple[RunningPlatform, SmtpSink],
) -> None:
    running, smtp = platform
    reg = running.urls["registration"]
    first = date.today() + timedelta(days=30)
    async with httpx.AsyncClient(timeout=30) as http:
        organiser = _ok(
            await http.post(
                f"{reg}/api/organisers", headers={"X-API-Key": ADMIN_KEY}, json={"name": "O"}
            )
        )
        event = _ok(
            await http.post(
                f"{reg}/api/events",
                headers={"X-API-Key": organiser["api_key"]},
                json={
                    "name": "Sign-in test",
                    "venue": "Hall 1",
                    "time_zone": "Europe/Berlin",
                    "days": [first.isoformat()],
                    "sessions": [{"start": "10:00", "end": "12:00"}],
                    "slot_minutes": 30,
                    "tables": 5,
                    "meeting_types": ["Cluster2Cluster"],
                    "registration_deadline": (datetime.now(UTC) + timedelta(days=20)).isoformat(),
                },
            )
        )
        made = _ok(
            await http.post(
                f"{reg}/api/events/{event['event_id']}/registrations",
                json={
                    "organisation_type": "cluster",
                    "name": "Harz Photonics Hub",
                    "country": "DE",
                    "representatives": [
                        {"name": "Hanna Harz", "email": HANNA},
                        {"name": "Otto Harz", "email": COLLEAGUE},
                    ],
                },
            )
        )
        rid = made["registration_id"]

        # The same answer for a registered address (any case) and for one nobody has.
        asked = await http.post(f"{reg}/api/sign-in-links", json={"email": "Hanna@Harz.Example"})
        unknown = await http.post(f"{reg}/api/sign-in-links", json={"email": "nobody@x.example"})
        assert (asked.status_code, unknown.status_code) == (202, 202)
        assert asked.json() == unknown.json()
        bad = await http.post(f"{reg}/api/sign-in-links", json={"email": "not an address"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "email"

        def links_to(address: str) -> list[Mail]:
            return [m for m in smtp.to(address) if m.kind == "sign_in.link"]

        await wait_until(lambda: bool(links_to(HANNA)), limit=60, interval=0.2, what="the mail")
        mail = links_to(HANNA)[0]
        assert mail.rcpt_tos == (HANNA,)  # the address that asked, not the colleague's
        assert "Sign in to Sign-in test" in str(mail.message["Subject"])
        text = mail.part("text/plain") or ""
        url = LINK.search(text)
        assert url is not None, text
        token = parse_qs(urlsplit(url.group(1)).query)["token"][0]
        assert links_to(COLLEAGUE) == [] and smtp.to("nobody@x.example") == []

        # The token is in no event and no delivery; the address is sealed in the event.
        for dsn, table in (
            (running.dsns["registration"], "events"),
            (running.dsns["notification"], "deliveries"),
        ):
            stored = await _fetchval(
                dsn,
                f"SELECT count(*) FROM {table} t WHERE t::text LIKE $1",
                f"%{token.split('.')[1]}%",
            )
            assert stored == 0, table
        assert (
            await _fetchval(
                running.dsns["registration"],
                "SELECT count(*) FROM events WHERE data::text ILIKE '%hanna@harz%'",
            )
            == 0
        )

        # Used once: a key of the organisation's, expiring with the portal's session.
        signed_in = _ok(await http.post(f"{reg}/api/sign-in-links/redeem", json={"token": token}))
        assert (signed_in["registration_id"], signed_in["event_id"]) == (rid, event["event_id"])
        me = _ok(await http.get(f"{reg}/api/me", headers={"X-API-Key": signed_in["api_key"]}))
        assert (me["role"], me["id"]) == ("organisation", rid)
        expires = await _fetchval(
            running.dsns["registration"],
            "SELECT expires_at FROM api_keys WHERE key_digest = $1",
            digest(signed_in["api_key"]),
        )
        assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)
        again = await http.post(f"{reg}/api/sign-in-links/redeem", json={"token": token})
        assert again.status_code == 409 and again.json()["errors"][0]["field"] == "token"
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        refused = await http.post(f"{reg}/api/sign-in-links/redeem", json={"token": forged})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "token"

        # Notification learnt the key too (the access projection), with its expiry.
        async def notification_knows() -> bool:
            found = await _fetchval(
                running.dsns["notification"],
                "SELECT expires_at FROM api_keys WHERE key_digest = $1",
                digest(signed_in["api_key"]),
            )
            return bool(found == expires)

        await wait_until(notification_knows, limit=30, interval=0.2, what="notification's key")

        # Rate limit: three per address in the window, registered or not.
        for address in (HANNA, "nobody@x.example"):
            answers = [
                (await http.post(f"{reg}/api/sign-in-links", json={"email": address})).status_code
                for _ in range(3)
            ]
            assert answers == [202, 202, 429], address
        limited = await http.post(f"{reg}/api/sign-in-links", json={"email": HANNA})
        assert limited.json()["errors"][0]["field"] == "email"

        # The lookup's index: an HMAC per representative's address, no address; rebuilt
        # from the events equal to the live one; erasure deletes the registration's rows.
        dsn = running.dsns["registration"]
        indexed = await _fetchval(
            dsn,
            "SELECT array_agg(address_digest ORDER BY address_digest)"
            " FROM registration_addresses WHERE registration_id = $1",
            rid,
        )
        assert indexed == sorted([addresses.digest(HANNA), addresses.digest(COLLEAGUE)])
        # A registration from before the index gets its rows at start-up (the same ones).
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("DELETE FROM registration_addresses WHERE registration_id = $1", rid)
            assert await addresses.index_missing(conn) == 1
            assert await addresses.index_missing(conn) == 0
        finally:
            await conn.close()
        report = await rebuild(
            registration_rebuild.PLAN,
            dsn,
            running.bootstrap_servers,
            registry(),
            topic_prefix=TEST_TOPIC_PREFIX,
            group_suffix=running.group_suffix,
        )
        assert report.equal, "\n".join(report.lines())
        rebuilt = await _fetchval(dsn, "SELECT count(*) FROM rebuild.registration_addresses")
        assert rebuilt == 2
        _ok(
            await http.delete(
                f"{reg}/api/registrations/{rid}/personal-data", headers={"X-API-Key": ADMIN_KEY}
            )
        )
        left = "SELECT count(*) FROM registration_addresses WHERE registration_id = $1"
        assert await _fetchval(dsn, left, rid) == 0
        requested = "SELECT count(*) FROM events WHERE event_type LIKE '%SignInLinkRequested%'"
        before = await _fetchval(dsn, requested)
        asked = await http.post(f"{reg}/api/sign-in-links", json={"email": COLLEAGUE})
        assert asked.status_code == 202 and await _fetchval(dsn, requested) == before
