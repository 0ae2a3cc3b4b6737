"""Registration's spreadsheet routes: the import (CSV or XLSX, multipart), its template,
and the participants' export."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from fastapi import File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from services.registration import sheet_views, spreadsheet
from services.registration.imports import ImportMode, import_registrations
from shared.access.guard import AccessRouter, requires
from shared.access.policy import Action
from shared.api import Granted, IdempotencyKey, run_command
from shared.runtime import runtime_of
from shared.sheets import documented, read_table, sheet_response

router = AccessRouter(prefix="/api", tags=["spreadsheets"])

Format = Literal["csv", "xlsx"]


@router.post(
    "/events/{event_id}/registrations/import",
    summary="Register organisations from a CSV or XLSX file (organisers; a co-organiser for"
    " its own office); returns each new registration's API key once",
    description="Columns are matched by header (see the template). Every row is checked as a"
    " single registration is; the answer lists each refused row with its line, field and"
    " reason. By default nothing is imported when a row is refused (`mode=all-or-nothing`);"
    " `mode=valid-only` imports the others. A row whose organisation (name and country) is"
    " registered already is reported as unchanged, so a second upload creates nothing twice.",
    openapi_extra=requires(Action.IMPORT_REGISTRATIONS),
)
async def import_file(
    request: Request,
    event_id: str,
    grant: Granted,
    file: Annotated[UploadFile, File(description="CSV (UTF-8) or XLSX, first sheet")],
    mode: ImportMode = ImportMode.ALL_OR_NOTHING,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    content = await file.read()
    upload = await run_in_threadpool(read_table, content)  # parsing XLSX takes a while
    return await run_command(
        request,
        grant.principal,
        idempotency_key,
        {"file": hashlib.sha256(content).hexdigest(), "mode": mode.value},
        lambda conn, cid: import_registrations(conn, event_id, upload, mode, grant, cid),
    )


@router.get(
    "/events/{event_id}/registrations/import-template.{fmt}",
    response_class=Response,
    responses=documented("csv", "xlsx"),
    summary="The import template (CSV, or XLSX with a sheet explaining the columns)",
    openapi_extra=requires(Action.VIEW_PUBLIC),
)
async def import_template(event_id: str, fmt: Format) -> Response:
    sheets = spreadsheet.template_sheets()
    # CSV has one table: the columns; the XLSX explains them on a second sheet.
    return sheet_response(sheets if fmt == "xlsx" else sheets[:1], fmt, "registrations-template")


@router.get(
    "/events/{event_id}/registrations/export.{fmt}",
    response_class=Response,
    responses=documented("csv", "xlsx"),
    summary="The participants as CSV or XLSX, with their contact details (its organisers; a"
    " co-organiser its office's, a participant itself)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def export_participants(
    request: Request,
    event_id: str,
    fmt: Format,
    grant: Granted,
) -> Response:
    async with runtime_of(request).pool.acquire() as conn:
        sheet = await sheet_views.participants(conn, grant, event_id)
    return sheet_response([sheet], fmt, "participants")
