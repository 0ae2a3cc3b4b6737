"""Wires the portal: the page routers, the static files, one httpx client to the
services, and how refusals are shown (a sign-in page for 401, an error page otherwise)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.portal import pages_organiser, pages_participant, pages_public, pages_sheets
from services.portal.client import Api, ApiError
from services.portal.session import Sessions
from services.portal.web import Portal, SignInRequired, environment, render
from shared.settings import PortalSettings

HERE = Path(__file__).parent


def build_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=30) as http:
            app.state.portal = Portal(
                Api(settings, http),
                Sessions(settings.portal_session_secret, secure=settings.portal_secure_cookies),
                environment(),
            )
            yield

    app = FastAPI(title="Portal", docs_url=None, redoc_url=None, lifespan=lifespan)
    for module in (pages_public, pages_participant, pages_organiser, pages_sheets):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/health", include_in_schema=False)
    @app.get("/ready", include_in_schema=False)
    async def ready() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        if exc.reason == "role":
            return render(request, "error.html", 403, code=403, detail="wrong-role")
        return RedirectResponse(f"/signin?back={quote(exc.back)}", status_code=303)

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> HTMLResponse:
        if exc.status == 401:
            return render(request, "signin.html", 401, back=request.url.path, error="expired")
        status = exc.status if 400 <= exc.status < 600 else 502
        return render(request, "error.html", status, code=status, detail=exc.detail)

    @app.middleware("http")
    async def headers(request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
        )
        return response

    return app


def main() -> None:
    settings = PortalSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(build_app(settings), host=settings.service_host, port=settings.portal_port)
