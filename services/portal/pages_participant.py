"""A participant's pages: its status and requests, the directory, recommendations,
meeting requests and replies, its agenda with the calendar feed, rating meetings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.portal.client import Api, ApiError
from services.portal.session import Session
from services.portal.web import back_to, portal_of, render, signed_in

router = APIRouter()
RATINGS = [
    "cooperation_possible",
    "informative_no_cooperation",
    "no_interest",
    "did_not_take_place",
]


def _participant(request: Request, event_id: str) -> Session:
    session = signed_in(request, "organisation")
    if session.event_id != event_id:
        raise ApiError(403, "Forbidden", "this key belongs to another event")
    return session


async def _names(api: Api, session: Session) -> dict[str, str]:
    """Registration id -> name, from the directory (approved participants only)."""
    try:
        rows = await api.get(
            "matching", f"/api/events/{session.event_id}/participants", key=session.key
        )
    except ApiError:
        return {}
    return {r["registration_id"]: r["name"] for r in rows}


@router.get("/events/{event_id}/me", response_class=HTMLResponse)
async def status(request: Request, event_id: str) -> HTMLResponse:
    session = _participant(request, event_id)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    mine = await api.get("registration", f"/api/registrations/{session.id}", key=session.key)
    requests: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    if mine["status"] == "approved":
        requests = await api.get("matching", "/api/me/meeting-requests", key=session.key)
        names = await _names(api, session)
    return render(
        request,
        "me.html",
        event=event,
        mine=mine,
        requests=requests,
        names=names,
        me=session.id,
    )


@router.get("/events/{event_id}/directory", response_class=HTMLResponse)
async def directory(
    request: Request, event_id: str, q: str = "", country: str = "", sector: str = ""
) -> HTMLResponse:
    session = signed_in(request)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    rows = await api.get(
        "matching",
        f"/api/events/{event_id}/participants",
        key=session.key,
        params={"q": q, "country": country, "sector": sector},
    )
    return render(
        request,
        "directory.html",
        event=event,
        rows=rows,
        q=q,
        country=country,
        sector=sector,
        me=session.id,
    )


@router.get("/events/{event_id}/recommendations", response_class=HTMLResponse)
async def recommendations(request: Request, event_id: str) -> HTMLResponse:
    session = _participant(request, event_id)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    got = await api.get("matching", "/api/me/recommendations", key=session.key)
    return render(
        request,
        "recommendations.html",
        event=event,
        items=got["recommendations"],
        pending=got.get("pending", False),
    )


@router.post("/events/{event_id}/requests")
async def request_meeting(
    request: Request,
    event_id: str,
    recipient_id: Annotated[str, Form()],
    message: Annotated[str, Form()] = "",
    part_of_day: Annotated[str, Form()] = "",
) -> RedirectResponse:
    session = _participant(request, event_id)
    body: dict[str, object] = {"recipient_id": recipient_id, "message": message.strip() or None}
    if part_of_day:  # matching checks the value (a problem naming the field if wrong)
        body["time_preference"] = {"part_of_day": part_of_day}
    await portal_of(request).api.post(
        "matching", f"/api/events/{event_id}/meeting-requests", key=session.key, json=body
    )
    return back_to(f"/events/{event_id}/me", notice="requested")


@router.post("/events/{event_id}/requests/{request_id}/{verb}")
async def reply(request: Request, event_id: str, request_id: str, verb: str) -> RedirectResponse:
    session = _participant(request, event_id)
    if verb not in ("accept", "decline", "cancel"):
        raise ApiError(404, "Not found", verb)
    await portal_of(request).api.post(
        "matching", f"/api/meeting-requests/{request_id}/{verb}", key=session.key
    )
    notice = {"accept": "accepted", "decline": "declined", "cancel": "cancelled"}[verb]
    return back_to(f"/events/{event_id}/me", notice=notice)


@router.get("/events/{event_id}/agenda", response_class=HTMLResponse)
async def agenda(request: Request, event_id: str, tz: str = "") -> HTMLResponse:
    session = _participant(request, event_id)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    mine = await api.get(
        "scheduling",
        f"/api/events/{event_id}/participants/{session.id}/agenda",
        key=session.key,
        params={"tz": tz},
    )
    try:
        prefs = await api.get(
            "notification", f"/api/registrations/{session.id}/preferences", key=session.key
        )
    except ApiError:
        prefs = {}
    return render(
        request,
        "agenda.html",
        event=event,
        agenda=mine,
        names=await _names(api, session),
        feed=prefs.get("calendar_feed_url", ""),
        tz=tz or prefs.get("time_zone") or "",
        ratings=RATINGS,
    )


@router.get("/events/{event_id}/meetings/{meeting_id}/rate", response_class=HTMLResponse)
async def rate_page(request: Request, event_id: str, meeting_id: str) -> HTMLResponse:
    """Where a feedback invitation links (reporting's PORTAL_PUBLIC_URL): one click rates."""
    session = _participant(request, event_id)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    mine = await api.get(
        "scheduling",
        f"/api/events/{event_id}/participants/{session.id}/agenda",
        key=session.key,
    )
    meeting = next((m for m in mine["meetings"] if m["meeting_id"] == meeting_id), None)
    if meeting is None:
        raise ApiError(404, "Not found", f"meeting {meeting_id} is not on your agenda")
    names = await _names(api, session)
    partner = ", ".join(names.get(p, p) for p in meeting["with"])
    return render(
        request, "rate.html", event=event, meeting=meeting, partner=partner, ratings=RATINGS
    )


@router.post("/events/{event_id}/meetings/{meeting_id}/feedback")
async def rate(
    request: Request,
    event_id: str,
    meeting_id: str,
    rating: Annotated[str, Form()],
    comment: Annotated[str, Form()] = "",
) -> RedirectResponse:
    session = _participant(request, event_id)
    body: dict[str, Any] = {"rating": rating}
    if comment.strip():
        body["comment"] = comment.strip()
    await portal_of(request).api.post(
        "reporting",
        f"/api/events/{event_id}/meetings/{meeting_id}/feedback",
        key=session.key,
        json=body,
    )
    return back_to(f"/events/{event_id}/agenda", notice="rated")


@router.post("/events/{event_id}/meetings/{meeting_id}/outcome")
async def outcome(
    request: Request,
    event_id: str,
    meeting_id: str,
    result: Annotated[str, Form(alias="outcome")],
    kind: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> RedirectResponse:
    session = _participant(request, event_id)
    body: dict[str, Any] = {"outcome": result}
    if result == "agreement_reached" and kind:
        body["kind"] = kind
    if note.strip():
        body["note"] = note.strip()
    await portal_of(request).api.post(
        "reporting",
        f"/api/events/{event_id}/meetings/{meeting_id}/outcome",
        key=session.key,
        json=body,
    )
    return back_to(f"/events/{event_id}/agenda", notice="outcome")


@router.get("/events/{event_id}/preferences", response_class=HTMLResponse)
async def preferences(request: Request, event_id: str) -> HTMLResponse:
    session = _participant(request, event_id)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    prefs = await api.get(
        "notification", f"/api/registrations/{session.id}/preferences", key=session.key
    )
    return render(request, "preferences.html", event=event, prefs=prefs)


@router.post("/events/{event_id}/preferences")
async def set_preferences(
    request: Request,
    event_id: str,
    time_zone: Annotated[str, Form()] = "",
    digest: Annotated[str, Form()] = "",
    unsubscribed: Annotated[str, Form()] = "",
) -> RedirectResponse:
    session = _participant(request, event_id)
    api = portal_of(request).api
    path = f"/api/registrations/{session.id}/preferences"
    now = await api.get("notification", path, key=session.key)
    await api.call(
        "notification",
        "PUT",
        path,
        key=session.key,
        json={
            "muted": now.get("muted", []),
            "digest": bool(digest),
            "time_zone": time_zone.strip() or None,
            "unsubscribed": bool(unsubscribed),
        },
    )
    return back_to(f"/events/{event_id}/preferences", notice="saved")
