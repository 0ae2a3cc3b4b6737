"""Pages anyone may see: the events, one event, registering, signing in and out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.portal.client import ApiError
from services.portal.forms import profile_body
from services.portal.session import Session
from services.portal.web import back_to, portal_of, render, session_of, translator_of
from shared.contracts.registration import DirectoryField

router = APIRouter()


def _open(event: dict[str, Any]) -> bool:
    deadline = event.get("registration_deadline") or ""
    try:
        return datetime.fromisoformat(deadline) > datetime.now().astimezone()
    except ValueError:
        return False


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    events = await portal_of(request).api.get("registration", "/api/events")
    for event in events:
        event["open"] = _open(event)
    upcoming = [e for e in events if e["open"]]
    past = [e for e in events if not e["open"]]
    session = session_of(request)
    organised: list[dict[str, Any]] = []
    if session and session.role in ("organiser", "admin"):
        me = await portal_of(request).api.get("registration", "/api/me", key=session.key)
        leads = set(me.get("events", []))
        organised = [e for e in events if session.role == "admin" or e["event_id"] in leads]
    return render(request, "home.html", upcoming=upcoming, past=past, organised=organised)


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def event_page(request: Request, event_id: str) -> HTMLResponse:
    event = await portal_of(request).api.get("registration", f"/api/events/{event_id}")
    event["open"] = _open(event)
    return render(request, "event.html", event=event)


@router.get("/events/{event_id}/register", response_class=HTMLResponse)
async def register_form(request: Request, event_id: str) -> HTMLResponse:
    event = await portal_of(request).api.get("registration", f"/api/events/{event_id}")
    everything = [str(f) for f in DirectoryField]
    return render(request, "register.html", event=event, form={}, published=everything, error=None)


@router.post("/events/{event_id}/register", response_class=HTMLResponse)
async def register(request: Request, event_id: str) -> Response:
    portal = portal_of(request)
    event = await portal.api.get("registration", f"/api/events/{event_id}")
    data = await request.form()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    published = [str(v) for v in data.getlist("published")]
    session = session_of(request)
    try:
        body = profile_body(form, event, published)
        made = await portal.api.post(
            "registration",
            f"/api/events/{event_id}/registrations",
            json=body,
            key=session.key if session and not session.is_participant else None,
        )
    except (ApiError, ValueError) as exc:
        error = exc.detail if isinstance(exc, ApiError) else str(exc)
        return render(
            request, "register.html", 422, event=event, form=form, published=published, error=error
        )
    if session and not session.is_participant:  # an organiser registering someone
        return render(request, "registered.html", event=event, made=made)
    response = render(request, "registered.html", event=event, made=made)
    portal.sessions.keep(
        response,
        Session(
            key=made["api_key"],
            role="organisation",
            id=made["registration_id"],
            name=str(form.get("name", "")),
            event_id=event_id,
        ),
    )
    return response


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, back: str = "") -> HTMLResponse:
    return render(request, "signin.html", back=back, error=None, email_error=None)


@router.post("/signin/email", response_class=HTMLResponse)
async def ask_for_link(request: Request, email: Annotated[str, Form()] = "") -> HTMLResponse:
    """Registration sends the link if the address is registered; the page says the same
    either way (so it tells nobody which addresses are)."""
    try:
        await portal_of(request).api.post(
            "registration", "/api/sign-in-links", json={"email": email.strip()}
        )
    except ApiError as exc:
        _ = translator_of(request)
        if exc.status == 429:
            reason = _("Too many links were asked for this address lately. Try again later.")
        elif exc.status == 422:
            reason = _("This is not an e-mail address.")
        else:
            raise
        return render(request, "signin.html", exc.status, back="", error=None, email_error=reason)
    return render(request, "signin_sent.html", 202)


@router.get("/signin/link", response_class=HTMLResponse)
async def link_form(request: Request, token: str = "") -> HTMLResponse:
    return render(request, "signin_link.html", token=token, error=None)


@router.post("/signin/link", response_class=HTMLResponse)
async def use_link(request: Request, token: Annotated[str, Form()] = "") -> Response:
    portal = portal_of(request)
    try:
        made = await portal.api.post(
            "registration", "/api/sign-in-links/redeem", json={"token": token}
        )
    except ApiError as exc:
        if exc.status >= 500:
            raise
        reason = exc.errors[0]["reason"] if exc.errors else exc.detail
        return render(request, "signin_link.html", 400, token="", error=reason)
    session = Session(
        key=made["api_key"],
        role="organisation",
        id=made["registration_id"],
        name=made.get("name") or "",
        event_id=made["event_id"],
    )
    response = back_to(f"/events/{session.event_id}/me", notice="signed-in")
    portal.sessions.keep(response, session)
    return response


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request, key: Annotated[str, Form()], back: Annotated[str, Form()] = ""
) -> Response:
    portal = portal_of(request)
    try:
        me = await portal.api.get("registration", "/api/me", key=key.strip())
    except ApiError:
        return render(request, "signin.html", 401, back=back, error="unknown-key", email_error=None)
    session = Session(
        key=key.strip(),
        role=me["role"],
        id=me["id"],
        name=me.get("name") or "",
        event_id=me.get("event_id") or "",
        office_id=me.get("office_id") or "",
    )
    if back.startswith("/") and not back.startswith(("//", "/\\")):
        target = back
    elif session.role == "organisation":
        target = f"/events/{session.event_id}/me"
    elif session.role == "co_organiser":
        target = f"/events/{session.event_id}/applications"
    else:
        target = "/"
    response = back_to(target, notice="signed-in")
    portal.sessions.keep(response, session)
    return response


@router.post("/signout")
async def signout(request: Request) -> RedirectResponse:
    response = back_to("/", notice="signed-out")
    portal_of(request).sessions.drop(response)
    return response
