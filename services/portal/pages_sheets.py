"""The spreadsheet pages of an organiser or co-organiser: importing participants from a
CSV or XLSX file (streamed on to registration's import route with the user's key) and the
exports, each download passed through with the user's key (a browser cannot send the key
header) and the service's content type and file name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from services.portal.client import ApiError, Service
from services.portal.pages_organiser import as_organiser
from services.portal.session import Session
from services.portal.web import portal_of, render

router = APIRouter()


def _(text: str) -> str:
    """Marks a text for the catalogues (scripts.portal_messages); pages translate it."""
    return text


MODES = ("all-or-nothing", "valid-only")
# What a refused upload looks like (the file, not the platform): shown on the page.
REFUSED_UPLOADS = {400, 413, 415, 422}
# The service's headers a download keeps (the body is passed on as it comes).
KEPT_HEADERS = ("content-type", "content-disposition", "content-length")


@dataclass(frozen=True)
class Export:
    name: str  # in the portal's address
    label: str  # a catalogue message id
    about: str  # a catalogue message id
    service: Service
    path: str  # after /api/events/{event_id}
    formats: tuple[str, ...]


EXPORTS = (
    Export(
        "participants",
        _("Participants"),
        _("Profiles, status, support office, representatives and their e-mail addresses."),
        "registration",
        "/registrations/export",
        ("csv", "xlsx"),
    ),
    Export(
        "meeting-requests",
        _("Meeting requests"),
        _("Every request with both organisations, its type, state, reason and times."),
        "matching",
        "/meeting-requests/export",
        ("csv", "xlsx"),
    ),
    Export(
        "agendas",
        _("Agendas per participant"),
        _("Each participant's meetings, one sheet (or PDF page) each."),
        "scheduling",
        "/agendas",
        ("csv", "xlsx", "pdf"),
    ),
    Export(
        "table-plan",
        _("Table plan"),
        _("Who meets at which table when, one sheet (or PDF page) per session."),
        "scheduling",
        "/table-plan",
        ("csv", "xlsx", "pdf"),
    ),
    Export(
        "unscheduled",
        _("Unscheduled meetings"),
        _("Accepted meetings the agenda could not place, with the reasons."),
        "scheduling",
        "/unscheduled",
        ("csv", "xlsx"),
    ),
    Export(
        "report",
        _("Report figures"),
        _("The report's figures, by country, organisation type, sector and support office."),
        "reporting",
        "/report",
        ("csv", "xlsx"),
    ),
)
BY_NAME = {e.name: e for e in EXPORTS}
FORMATS = {"csv": "CSV", "xlsx": "XLSX", "pdf": "PDF"}


async def _event(request: Request, event_id: str) -> Any:
    return await portal_of(request).api.get("registration", f"/api/events/{event_id}")


@router.get("/events/{event_id}/import", response_class=HTMLResponse)
async def import_form(request: Request, event_id: str) -> HTMLResponse:
    as_organiser(request, event_id)
    event = await _event(request, event_id)
    return render(request, "import.html", event=event, mode=MODES[0], result=None, error=None)


@router.post("/events/{event_id}/import", response_class=HTMLResponse)
async def import_file(request: Request, event_id: str) -> HTMLResponse:
    """Streams the chosen file to registration and shows its answer on this response only
    (the new participants' keys are in it: never stored, never shown again)."""
    session = as_organiser(request, event_id)
    event = await _event(request, event_id)
    form = await request.form()
    mode = str(form.get("mode", MODES[0]))
    mode = mode if mode in MODES else MODES[0]
    upload = form.get("file")
    page: dict[str, Any] = {"event": event, "mode": mode, "result": None, "error": None}
    if not isinstance(upload, UploadFile) or not upload.filename or not upload.size:
        page["error"] = {"detail": _("Choose a CSV or XLSX file first."), "errors": []}
        return _no_store(render(request, "import.html", 422, **page))
    await upload.seek(0)
    try:
        page["result"] = await portal_of(request).api.upload(
            "registration",
            f"/api/events/{event_id}/registrations/import",
            (upload.filename, upload.file, upload.content_type or "application/octet-stream"),
            key=session.key,
            params={"mode": mode},
        )
    except ApiError as exc:
        if exc.status not in REFUSED_UPLOADS:
            raise
        lines = sorted({e["line"] for e in exc.errors if isinstance(e.get("line"), int)})
        page["error"] = {
            "status": exc.status,
            "title": exc.title,
            "detail": exc.detail,
            "errors": [e for e in exc.errors if "line" in e],
            "lines": lines,
        }
        return _no_store(render(request, "import.html", exc.status, **page))
    finally:
        await upload.close()
    return _no_store(render(request, "import.html", **page))


def _no_store(response: HTMLResponse) -> HTMLResponse:
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/events/{event_id}/import-template.{fmt}")
async def import_template(request: Request, event_id: str, fmt: str) -> Response:
    session = as_organiser(request, event_id)
    if fmt not in ("csv", "xlsx"):
        raise ApiError(404, "Not found", f"no {fmt!r} template: csv or xlsx")
    path = f"/api/events/{event_id}/registrations/import-template.{fmt}"
    return await _pass_on(request, session, "registration", path)


@router.get("/events/{event_id}/exports", response_class=HTMLResponse)
async def exports(request: Request, event_id: str) -> HTMLResponse:
    as_organiser(request, event_id)
    event = await _event(request, event_id)
    return render(request, "exports.html", event=event, exports=EXPORTS, formats=FORMATS)


@router.get("/events/{event_id}/exports/{name}.{fmt}")
async def export(request: Request, event_id: str, name: str, fmt: str) -> Response:
    session = as_organiser(request, event_id)
    chosen = BY_NAME.get(name)
    if chosen is None or fmt not in chosen.formats:
        raise ApiError(404, "Not found", f"no such export: {name}.{fmt}")
    path = f"/api/events/{event_id}{chosen.path}.{fmt}"
    return await _pass_on(request, session, chosen.service, path)


async def _pass_on(request: Request, session: Session, service: Service, path: str) -> Response:
    """The service's file, streamed through with its type and name; closed when sent."""
    upstream = await portal_of(request).api.download(service, path, key=session.key)
    encoded = "content-encoding" in upstream.headers  # decoded below: its length differs
    headers = {
        h: upstream.headers[h]
        for h in KEPT_HEADERS
        if h in upstream.headers and not (encoded and h == "content-length")
    }
    headers["Cache-Control"] = "private, no-store"
    return StreamingResponse(
        upstream.aiter_bytes(),
        status_code=upstream.status_code,
        headers=headers,
        background=BackgroundTask(upstream.aclose),
    )
