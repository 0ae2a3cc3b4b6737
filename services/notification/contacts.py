"""Contact details, fetched from registration's API at send time and never stored here.

Registration seals representatives' details with a key per registration and
destroys the key on erasure; it is the only service that can read them. After
erasure it answers with no representatives, and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from shared import telemetry


class ContactsUnavailable(Exception):
    """Registration could not be asked (down, slow, 5xx): try again later."""


@dataclass(frozen=True)
class Contacts:
    emails: tuple[str, ...]
    why_none: str = ""  # when there are no emails: why


def _contacts(representatives: list[dict[str, str]] | None) -> Contacts:
    """The addresses registration gave (None: the personal data was erased)."""
    if representatives is None:
        return Contacts((), "personal data erased: no contact details")
    emails = tuple(dict.fromkeys(r["email"] for r in representatives if r.get("email")))
    return Contacts(emails, "" if emails else "no representative has an email address")


class RegistrationContacts:
    def __init__(self, http: httpx.AsyncClient, base_url: str, admin_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._key = admin_key

    async def of_many(self, registration_ids: Sequence[str]) -> dict[str, Contacts]:
        """Many registrations' contacts in one request (`GET /api/contacts`), for a
        sender's batch; `ContactsUnavailable` if registration cannot answer it (then
        ask `of` for each: a registration from before the route answers 404)."""
        if not registration_ids:
            return {}
        ids = list(dict.fromkeys(registration_ids))
        try:
            headers = {"X-API-Key": self._key, **telemetry.current_context()}
            response = await self._http.get(
                f"{self._base}/api/contacts",
                params=[("registration_id", rid) for rid in ids],
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise ContactsUnavailable(f"registration unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise ContactsUnavailable(f"registration answered {response.status_code}")
        answer = response.json()
        found = {c["registration_id"]: _contacts(c["representatives"]) for c in answer["contacts"]}
        unknown = Contacts((), "registration unknown to the registration service")
        return {rid: found.get(rid, unknown) for rid in ids}

    async def of(self, registration_id: str) -> Contacts:
        url = f"{self._base}/api/registrations/{registration_id}/contacts"
        try:
            # With the trace context, registration's side of the call joins the send's trace.
            headers = {"X-API-Key": self._key, **telemetry.current_context()}
            response = await self._http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ContactsUnavailable(f"registration unreachable: {exc!r}") from exc
        if response.status_code == 404:
            return Contacts((), "registration unknown to the registration service")
        if response.status_code != 200:
            raise ContactsUnavailable(f"registration answered {response.status_code}")
        return _contacts(response.json().get("representatives"))

    async def sign_in_message(self, link_id: str) -> dict[str, str] | None:
        """A sign-in link's address and token, or None once it no longer works (used,
        expired, erased: nothing to send)."""
        url = f"{self._base}/api/sign-in-links/{link_id}/message"
        try:
            headers = {"X-API-Key": self._key, **telemetry.current_context()}
            response = await self._http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ContactsUnavailable(f"registration unreachable: {exc!r}") from exc
        if response.status_code in (404, 409):
            return None
        if response.status_code != 200:
            raise ContactsUnavailable(f"registration answered {response.status_code}")
        message: dict[str, str] = response.json()
        return message
