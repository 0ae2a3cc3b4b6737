"""Scheduling's exports: the participants' agendas and the table plan (CSV, XLSX, PDF) and
the unscheduled meetings with their reasons (CSV, XLSX)."""

from __future__ import annotations

from typing import Literal

from fastapi import Request
from fastapi.responses import Response

from services.scheduling import sheets
from services.scheduling.api import _read
from shared.access.guard import AccessRouter, Granted, requires
from shared.access.policy import Action
from shared.printable import to_pdf
from shared.sheets import PDF, documented, download, sheet_response

router = AccessRouter(prefix="/api", tags=["spreadsheets"])

Printable = Literal["csv", "xlsx", "pdf"]


@router.get(
    "/events/{event_id}/agendas.{fmt}",
    response_class=Response,
    responses=documented("csv", "xlsx", "pdf"),
    summary="Each participant's agenda, one sheet (or PDF page) each, times in the event's"
    " zone (its organisers; a co-organiser its office's participants, a participant its own)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def agendas(request: Request, event_id: str, fmt: Printable, grant: Granted) -> Response:
    grid, pages = await _read(request, lambda c: sheets.participant_agendas(c, grant, event_id))
    if fmt == "pdf":
        title = f"Agendas, times in {grid.time_zone}"
        return download(
            to_pdf(title, pages, widths=(22, 16, 16, 14, 70, 16, 36)), PDF, "agendas.pdf"
        )
    return sheet_response(pages, fmt, "agendas", csv_label="participant")


@router.get(
    "/events/{event_id}/table-plan.{fmt}",
    response_class=Response,
    responses=documented("csv", "xlsx", "pdf"),
    summary="The table plan for the help desk, one sheet (or PDF page) per session: who meets"
    " at which table when (its organisers; a co-organiser its office's meetings)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def table_plan(request: Request, event_id: str, fmt: Printable, grant: Granted) -> Response:
    grid, pages = await _read(request, lambda c: sheets.table_plan(c, grant, event_id))
    if fmt == "pdf":
        title = f"Table plan, times in {grid.time_zone}"
        body = to_pdf(title, pages, landscape=True, narrow_first=True)
        return download(body, PDF, "table-plan.pdf")
    return sheet_response(pages, fmt, "table-plan", csv_label="session")


@router.get(
    "/events/{event_id}/unscheduled.{fmt}",
    response_class=Response,
    responses=documented("csv", "xlsx"),
    summary="Meetings left unscheduled, with the reasons (CSV or XLSX)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def unscheduled(
    request: Request, event_id: str, fmt: Literal["csv", "xlsx"], grant: Granted
) -> Response:
    sheet = await _read(request, lambda c: sheets.unscheduled_sheet(c, grant, event_id))
    return sheet_response([sheet], fmt, "unscheduled")
