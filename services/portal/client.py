"""The services' public HTTP APIs, as the portal calls them (httpx, the user's key)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import IO, Any, ClassVar, Literal

import httpx

from shared.settings import PortalSettings

Service = Literal["registration", "matching", "scheduling", "notification", "reporting"]


class ApiError(Exception):
    """A service refused a call: its status, the problem's title and detail, and its
    `errors` (each a field and reason, and for a spreadsheet's rows their line) if any."""

    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []


@dataclass
class Api:
    """One shared httpx client; each call names its service and, if any, the key."""

    settings: PortalSettings
    http: httpx.AsyncClient

    # A key registration issues at sign-in (a sign-in link's) reaches the other services
    # through its events: for a moment after, they do not know it yet. A 401 from one of
    # them is asked again for up to this long before the page says "sign in again"
    # (registration itself knows its keys at once: its 401 is final).
    KEY_PROPAGATION_SECONDS: ClassVar[float] = 5.0
    KEY_RETRY_INTERVAL: ClassVar[float] = 0.1

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
        deadline = time.monotonic() + self.KEY_PROPAGATION_SECONDS
        while True:
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
            unknown_yet = response.status_code == 401 and bool(key) and service != "registration"
            if not unknown_yet or time.monotonic() >= deadline:
                raise _problem(response)
            await asyncio.sleep(self.KEY_RETRY_INTERVAL)

    async def upload(
        self,
        service: Service,
        path: str,
        file: tuple[str, IO[bytes], str],
        *,
        key: str,
        params: dict[str, str] | None = None,
    ) -> Any:
        """POST one file as `multipart/form-data` (field `file`), read from the file object
        in chunks as it is sent (the upload is not held in memory)."""
        try:
            response = await self.http.post(
                f"{self.base(service)}{path}",
                headers={"X-API-Key": key},
                params=params or {},
                files={"file": file},
            )
        except httpx.TransportError as exc:
            raise ApiError(503, "Service unavailable", f"{service}: {exc}") from exc
        if response.is_success:
            return response.json()
        raise _problem(response)

    async def download(self, service: Service, path: str, *, key: str) -> httpx.Response:
        """GET a file, its body not read yet: the caller streams it on and closes it."""
        request = self.http.build_request(
            "GET", f"{self.base(service)}{path}", headers={"X-API-Key": key}
        )
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise ApiError(503, "Service unavailable", f"{service}: {exc}") from exc
        if response.is_success:
            return response
        try:
            await response.aread()
        finally:
            await response.aclose()
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
    errors = body.get("errors")
    listed = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    return ApiError(response.status_code, title, str(body.get("detail", "")), listed)
