"""The services' public HTTP APIs, as the portal calls them (httpx, the user's key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import httpx

from shared.settings import PortalSettings

Service = Literal["registration", "matching", "scheduling", "notification", "reporting"]


class ApiError(Exception):
    """A service refused a call: its status and the problem's title and detail."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail


@dataclass
class Api:
    """One shared httpx client; each call names its service and, if any, the key."""

    settings: PortalSettings
    http: httpx.AsyncClient

    def base(self, service: Service) -> str:
        url: str = getattr(self.settings, f"{service}_url")
        return url.rstrip("/")

    def public_reporting(self) -> str:
        return (self.settings.reporting_public_url or self.settings.reporting_url).rstrip("/")

    async def call(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        key: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        headers = {"X-API-Key": key} if key else {}
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self.http.request(
                method,
                f"{self.base(service)}{path}",
                headers=headers,
                params=clean,
                json=json,
            )
        except httpx.TransportError as exc:
            raise ApiError(503, "Service unavailable", f"{service}: {exc}") from exc
        if response.is_success:
            return response.json() if response.content else None
        raise _problem(response)

    async def get(self, service: Service, path: str, **kw: Any) -> Any:
        return await self.call(service, "GET", path, **kw)

    async def post(self, service: Service, path: str, **kw: Any) -> Any:
        return await self.call(service, "POST", path, **kw)


def _problem(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    title = str(body.get("title", response.reason_phrase))
    return ApiError(response.status_code, title, str(body.get("detail", "")))
