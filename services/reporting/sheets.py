"""The report's figures as a spreadsheet: the figures, and breakdowns by country,
organisation type, sector and support office (the lead organiser sees every office's
line, a co-organiser its own office's figures only). Times in the event's zone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import Response

from services.reporting import dashboard, dashboard_queries, offices
from shared.access.guard import AccessRouter, Granted, requires
from shared.access.policy import Action, Grant, Scope
from shared.problems import ProblemError
from shared.runtime import runtime_of
from shared.sheets import Cell, Sheet, documented, sheet_response

router = AccessRouter(tags=["spreadsheets"])

FIGURE_HEADERS = ["section", "figure", "value"]


def _figures(report: Mapping[str, Any]) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for group in ("applied", "participated", "remote"):
        for key in ("organisations", "clusters", "countries"):
            rows.append([group, key, report[group][key]])
    rows.append(["participated", "basis", report["participation_basis"]])
    meetings = report["meetings"]
    rows.append(["meetings", "held", meetings["held"]])
    for kind, n in meetings["by_type"].items():
        rows.append(["meetings held", kind, n])
    for stage, counts in meetings["funnel"].items():
        for kind, n in counts.items():
            rows.append([f"meetings {stage}", kind, n])
    rows.append(["meetings", "online", meetings["online"]])
    rows.append(["meetings", "not held", meetings["not_held"]])
    rows.append(["feedback", "responses", report["feedback"]["responses"]])
    rows.append(["feedback", "meetings rated", report["feedback"]["meetings_rated"]])
    for rating, n in report["feedback"]["by_rating"].items():
        rows.append(["feedback by rating", rating, n])
    outcomes = report["outcomes"]
    rows.append(["outcomes", "reports", outcomes["reports"]])
    rows.append(["outcomes", "agreements", outcomes["agreements"]])
    for outcome, n in outcomes["by_outcome"].items():
        rows.append(["outcomes", outcome, n])
    for kind, n in outcomes["agreements_by_kind"].items():
        rows.append(["agreements by kind", kind, n])
    return rows


def _breakdown(
    title: str, key: str, lines: list[dict[str, Any]], took_part: Mapping[str, int] | None
) -> Sheet:
    headers = [key, "applied", "approved"] + (["participated"] if took_part is not None else [])
    rows: list[list[Cell]] = []
    for line in lines:
        row: list[Cell] = [line["key"], line["applied"], line["approved"]]
        if took_part is not None:
            row.append(took_part.get(line["key"], 0))
        rows.append(row)
    return Sheet(title, headers, rows)


def _minute(iso: str) -> str:
    return iso[:16].replace("T", " ")


def report_sheets(
    report: Mapping[str, Any], part: offices.EventRows, lines: list[dict[str, Any]]
) -> list[Sheet]:
    tz = report["event"]["time_zone"]
    applications = dashboard.applications(part.registrations)
    took = report["participated"]
    sheets = [
        Sheet("Figures", FIGURE_HEADERS, _figures(report), [report["event"]["name"]]),
        _breakdown("By country", "country", applications["by_country"], took["by_country"]),
        _breakdown(
            "By organisation type", "organisation_type", applications["by_type"], took["by_type"]
        ),
        _breakdown("By sector", "sector", applications["by_sector"], None),
    ]
    if lines:
        keys = list(lines[0])
        rows: list[list[Cell]] = [[line[k] for k in keys] for line in lines]
        sheets.append(Sheet("By support office", keys, rows))
    side: list[list[Cell]] = [
        [i["title"], i["kind"], _minute(i["start"]), _minute(i["end"]), i["participants"]]
        for i in report["side_programme"]
    ]
    headers = ["title", "kind", f"start ({tz})", f"end ({tz})", "participants"]
    sheets.append(Sheet("Side programme", headers, side))
    return sheets


async def build(request: Request, grant: Grant, event_id: str) -> list[Sheet]:
    async with (
        runtime_of(request).pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        data = await dashboard_queries.event_rows(conn, event_id)
    if data is None:
        raise ProblemError(404, "Not found", f"brokerage event {event_id} not found")
    lines = offices.by_office(data.rows, data.declared, data.office_of)
    part = data.rows
    if grant.scope is Scope.OFFICE:
        office = grant.office or ""
        part = offices.share(data.rows, data.office_of, office)
        lines = [line for line in lines if line["office_id"] == office]
    return report_sheets(part.report(), part, lines)


@router.get(
    "/api/events/{event_id}/report.{fmt}",
    response_class=Response,
    responses=documented("csv", "xlsx"),
    summary="The report's figures as CSV or XLSX, with breakdowns by country, organisation"
    " type, sector and support office (organisers; a co-organiser its office's)",
    openapi_extra=requires(Action.VIEW_REPORT),
)
async def export_report(
    request: Request, event_id: str, fmt: Literal["csv", "xlsx"], grant: Granted
) -> Response:
    sheets = await build(request, grant, event_id)
    if fmt == "csv":
        # One table: the figures, then each breakdown's rows as (section, key, value).
        flat = [row for row in sheets[0].rows]
        for sheet in sheets[1:]:
            for row in sheet.rows:
                for header, value in zip(sheet.headers[1:], row[1:], strict=True):
                    flat.append([f"{sheet.title.lower()}: {row[0]}", header, value])
        sheets = [Sheet("Figures", FIGURE_HEADERS, flat)]
    return sheet_response(sheets, fmt, "report")
