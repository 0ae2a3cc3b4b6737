"""The organisers' pages: applications (filters, bulk decisions), the agenda grid (lock,
unlock, re-optimise, publish), the dashboard and the report. A co-organiser sees its
support office's participants only: the services filter what its key may read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.portal.client import ApiError
from services.portal.forms import (
    FormErrors,
    event_body,
    field_of,
    settings_body,
    settings_form,
)
from services.portal.session import Session
from services.portal.web import back_to, portal_of, render, signed_in

router = APIRouter()
ORGANISERS = ("organiser", "co_organiser", "admin")
FILTERS = ("status", "organisation_type", "country", "sector", "attendance", "support_office")
DECISIONS = {"approve", "reject", "waitlist"}


def as_organiser(request: Request, event_id: str) -> Session:
    session = signed_in(request, *ORGANISERS)
    if session.role == "co_organiser" and session.event_id != event_id:
        raise ApiError(403, "Forbidden", "this key belongs to another event")
    return session


async def _registrations(request: Request, session: Session, event_id: str) -> list[Any]:
    rows: list[Any] = await portal_of(request).api.get(
        "registration",
        f"/api/events/{event_id}/registrations",
        key=session.key,
        params={f: request.query_params.get(f, "") for f in FILTERS} | {"limit": 1000},
    )
    return rows


@router.get("/events/{event_id}/applications", response_class=HTMLResponse)
async def applications(request: Request, event_id: str) -> HTMLResponse:
    session = as_organiser(request, event_id)
    event = await portal_of(request).api.get("registration", f"/api/events/{event_id}")
    rows = await _registrations(request, session, event_id)
    chosen = {f: request.query_params.get(f, "") for f in FILTERS}
    return render(request, "applications.html", event=event, rows=rows, chosen=chosen)


@router.post("/events/{event_id}/applications")
async def decide(request: Request, event_id: str) -> RedirectResponse:
    session = as_organiser(request, event_id)
    form = await request.form()
    decision = str(form.get("decision", ""))
    ids = [str(v) for v in form.getlist("registration_id")]
    if decision not in DECISIONS:
        raise ApiError(422, "Invalid request", f"decision: {decision!r}")
    if not ids:
        return back_to(f"/events/{event_id}/applications", notice="nothing-chosen")
    reason = str(form.get("reason", "")).strip()
    failed: list[str] = []
    for rid in ids:  # one refusal (e.g. already decided) does not stop the others
        try:
            await portal_of(request).api.post(
                "registration",
                f"/api/registrations/{rid}/{decision}",
                key=session.key,
                json={"reason": reason} if reason else None,
            )
        except ApiError as exc:
            failed.append(f"{rid}: {exc.detail}")
    if failed:
        raise ApiError(409, "Some decisions were refused", "; ".join(failed))
    return back_to(f"/events/{event_id}/applications", notice="decided")


@router.get("/events/{event_id}/grid", response_class=HTMLResponse)
async def grid(request: Request, event_id: str) -> HTMLResponse:
    session = as_organiser(request, event_id)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    agenda = await api.get("scheduling", f"/api/events/{event_id}/agenda", key=session.key)
    unplaced = await api.get("scheduling", f"/api/events/{event_id}/unscheduled", key=session.key)
    names = {
        r["registration_id"]: r["name"]
        for r in await api.get(
            "registration",
            f"/api/events/{event_id}/registrations",
            key=session.key,
            params={"limit": 1000},
        )
    }
    return render(
        request,
        "grid.html",
        event=event,
        agenda=agenda,
        unplaced=unplaced,
        names=names,
        lead=session.role != "co_organiser",
    )


@router.post("/events/{event_id}/grid/{verb}")
async def manage(request: Request, event_id: str, verb: str) -> RedirectResponse:
    session = as_organiser(request, event_id)
    api = portal_of(request).api
    if verb in ("reoptimise", "publish"):
        await api.post("scheduling", f"/api/events/{event_id}/{verb}", key=session.key)
        notice = {"reoptimise": "reoptimised", "publish": "published"}[verb]
        return back_to(f"/events/{event_id}/grid", notice=notice)
    if verb in ("lock", "unlock"):
        meeting = str((await request.form()).get("meeting_id", ""))
        await api.post(
            "scheduling", f"/api/events/{event_id}/meetings/{meeting}/{verb}", key=session.key
        )
        return back_to(f"/events/{event_id}/grid", notice=f"{verb}ed")
    raise ApiError(404, "Not found", verb)


@router.get("/events/{event_id}/dashboard")
async def dashboard(request: Request, event_id: str) -> RedirectResponse:
    """To reporting's live dashboard, by the signed link it gives this key."""
    session = as_organiser(request, event_id)
    api = portal_of(request).api
    link = await api.get("reporting", f"/api/events/{event_id}/dashboard-link", key=session.key)
    return RedirectResponse(f"{api.public_reporting()}{link['url']}", status_code=303)


@router.get("/events/{event_id}/report")
async def report(request: Request, event_id: str) -> RedirectResponse:
    api = portal_of(request).api
    return RedirectResponse(f"{api.public_reporting()}/events/{event_id}/report", status_code=303)


MEETING_TYPES = ["Cluster2Cluster", "Business2Cluster", "Business2Business"]


def as_lead(request: Request) -> Session:
    """An organiser (or the admin); registration checks that the event is theirs."""
    return signed_in(request, "organiser", "admin")


@router.get("/events/{event_id}/edit", response_class=HTMLResponse)
async def edit_event_form(request: Request, event_id: str) -> HTMLResponse:
    as_lead(request)
    event = await portal_of(request).api.get("registration", f"/api/events/{event_id}")
    return render(
        request,
        "edit_event.html",
        event=event,
        form=settings_form(event),
        types=MEETING_TYPES,
        chosen=event["meeting_types"],
        errors={},
        error=None,
    )


@router.post("/events/{event_id}/edit", response_model=None)
async def edit_event(request: Request, event_id: str) -> HTMLResponse | RedirectResponse:
    """Save the settings; a refusal shows the form again, each error beside its field."""
    session = as_lead(request)
    api = portal_of(request).api
    event = await api.get("registration", f"/api/events/{event_id}")
    data = await request.form()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    chosen = [str(t) for t in data.getlist("meeting_types") if t in MEETING_TYPES]
    errors: dict[str, str] = {}
    error: str | None = None
    try:
        body = settings_body(form, chosen, event["time_zone"])
        if form.get("registration_deadline") == settings_form(event)["registration_deadline"]:
            # Unchanged on the form (which shows minutes): keep the seconds it had.
            body["registration_deadline"] = event["registration_deadline"]
        await api.call(
            "registration", "PATCH", f"/api/events/{event_id}", key=session.key, json=body
        )
    except FormErrors as exc:
        errors = exc.errors
    except ApiError as exc:
        if exc.status in (401, 403, 404):
            raise
        for problem in exc.errors:
            name = field_of(str(problem.get("field", "")))
            if name:
                errors.setdefault(name, str(problem.get("reason", "")))
        if not errors:
            error = exc.detail
    else:
        return back_to(f"/events/{event_id}", notice="event-changed")
    return render(
        request,
        "edit_event.html",
        422,
        event=event,
        form=form,
        types=MEETING_TYPES,
        chosen=chosen,
        errors=errors,
        error=error,
    )


@router.get("/organise/new-event", response_class=HTMLResponse)
async def new_event_form(request: Request) -> HTMLResponse:
    signed_in(request, "organiser")
    return render(
        request, "new_event.html", form={}, types=MEETING_TYPES, chosen=MEETING_TYPES, error=None
    )


@router.post("/organise/new-event", response_model=None)
async def new_event(request: Request) -> HTMLResponse | RedirectResponse:
    session = signed_in(request, "organiser")
    data = await request.form()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    chosen = [str(t) for t in data.getlist("meeting_types") if t in MEETING_TYPES]
    try:
        made = await portal_of(request).api.post(
            "registration", "/api/events", key=session.key, json=event_body(form, chosen)
        )
    except (ApiError, ValueError) as exc:
        error = exc.detail if isinstance(exc, ApiError) else str(exc)
        return render(
            request,
            "new_event.html",
            422,
            form=form,
            types=MEETING_TYPES,
            chosen=chosen,
            error=error,
        )
    return back_to(f"/events/{made['event_id']}", notice="event-created")
