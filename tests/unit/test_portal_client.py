"""The portal's API client and a key the other services do not know yet: a sign-in
link's key reaches them through registration's events, so their 401 is asked again for a
moment; registration's 401, and a 401 that lasts, still end the session."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from services.portal.client import Api, ApiError
from shared.settings import PortalSettings

_PROBLEM = {"title": "Unauthorized", "detail": "unknown key", "status": 401}


def _api(known_after: dict[str, int], calls: Counter[str]) -> Api:
    """An `Api` whose services answer 401 to their first `known_after[host]` calls."""

    def answer(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        calls[host] += 1
        if calls[host] <= known_after.get(host, 0):
            return httpx.Response(401, json=_PROBLEM)
        return httpx.Response(200, json={"ok": host})

    settings = PortalSettings(
        registration_url="http://registration",
        matching_url="http://matching",
        scheduling_url="http://scheduling",
        notification_url="http://notification",
        reporting_url="http://reporting",
    )
    api = Api(settings, httpx.AsyncClient(transport=httpx.MockTransport(answer)))
    api.KEY_RETRY_INTERVAL = 0.01  # type: ignore[misc]
    return api


async def test_a_key_another_service_does_not_know_yet_is_asked_again() -> None:
    calls: Counter[str] = Counter()
    api = _api({"matching": 3}, calls)
    got = await api.get("matching", "/api/me/meeting-requests", key="new-key")
    assert got == {"ok": "matching"} and calls["matching"] == 4
    # A POST too: the service refused it before doing anything.
    calls.clear()
    api = _api({"scheduling": 1}, calls)
    assert await api.post("scheduling", "/api/x", key="new-key", json={}) == {"ok": "scheduling"}


async def test_registrations_refusal_and_a_lasting_one_end_the_session() -> None:
    calls: Counter[str] = Counter()
    api = _api({"registration": 1}, calls)
    with pytest.raises(ApiError) as refused:
        await api.get("registration", "/api/me", key="old-key")
    assert refused.value.status == 401 and calls["registration"] == 1
    api = _api({"matching": 10**6}, calls)
    api.KEY_PROPAGATION_SECONDS = 0.05  # type: ignore[misc]
    with pytest.raises(ApiError) as lasting:
        await api.get("matching", "/api/me/meeting-requests", key="old-key")
    assert lasting.value.status == 401 and 1 < calls["matching"] < 100
    # Without a key there is nothing to wait for.
    calls.clear()
    api = _api({"matching": 1}, calls)
    with pytest.raises(ApiError):
        await api.get("matching", "/api/events/e/participants")
    assert calls["matching"] == 1
