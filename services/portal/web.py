"""What every page needs: the portal's state, rendering with the chosen language, the
signed-in session, redirects after a form (Post/Redirect/Get)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.portal import i18n
from services.portal.client import Api
from services.portal.session import Session, Sessions

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = lambda iso: str(iso)[11:16] if iso else ""
    env.filters["day"] = lambda iso: str(iso)[:10] if iso else ""
    return env


@dataclass
class Portal:
    api: Api
    sessions: Sessions
    env: Environment


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


class SignInRequired(Exception):
    """The page needs a signed-in user (or another kind of key): to the sign-in page."""

    def __init__(self, back: str, reason: str = "") -> None:
        super().__init__(back)
        self.back = back
        self.reason = reason


def session_of(request: Request) -> Session | None:
    return portal_of(request).sessions.of(request)


def signed_in(request: Request, *roles: str) -> Session:
    session = session_of(request)
    if session is None or (roles and session.role not in roles):
        raise SignInRequired(str(request.url.path), "role" if session else "")
    return session


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    language = i18n.language_of(request)
    page = portal_of(request).env.get_template(template)
    html = page.render(
        _=i18n.translator(language),
        lang=language,
        languages=i18n.LANGUAGES,
        session=session_of(request),
        path=request.url.path,
        query=request.url.query,
        notice=NOTICES.get(request.query_params.get("notice", ""), ""),
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, language, max_age=365 * 86400, samesite="lax")
    return response


def translator_of(request: Request) -> i18n.Translate:
    """The page's language's texts, for messages made in code."""
    return i18n.translator(i18n.language_of(request))


def back_to(path: str, **params: str) -> RedirectResponse:
    """After a form: 303 to a page, with a notice (a catalogue message id) to show."""
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


# Notices a redirect may ask a page to show (the query names one; its text is translated).
NOTICES = {
    "registered": "Your registration was received. Keep your key: it is shown only once.",
    "signed-in": "You are signed in.",
    "signed-out": "You are signed out.",
    "requested": "Your meeting request was sent.",
    "accepted": "The meeting was accepted.",
    "declined": "The request was declined.",
    "cancelled": "The request was cancelled.",
    "rated": "Thank you: your rating was recorded.",
    "outcome": "Thank you: the outcome was recorded.",
    "saved": "Your preferences are saved.",
    "decided": "The decisions were recorded.",
    "event-created": "The event is created and open for registration.",
    "event-changed": "The event's settings are changed.",
    "nothing-chosen": "Choose at least one application first.",
    "locked": "The meeting is locked in its place.",
    "unlocked": "The meeting is unlocked.",
    "reoptimised": "The agenda was re-optimised.",
    "published": "The agenda is published.",
}
