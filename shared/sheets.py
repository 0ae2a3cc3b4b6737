"""Spreadsheets in and out, as plumbing: tables to CSV / XLSX / PDF and uploads to rows.

No domain rules live here. A service builds `Sheet`s from its reads and answers with
`sheet_response`; an upload is read by `read_table` (XLSX when the bytes are a ZIP
archive, CSV otherwise) into header-keyed rows with their line numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi.responses import Response
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from shared.problems import ProblemError

Cell = str | int | float | bool | None

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"
PDF = "application/pdf"
FORMATS = ("csv", "xlsx")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@dataclass
class Sheet:
    """One table: a title (the XLSX sheet's name), headers and rows; `notes` go above."""

    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cell(value: Any) -> Cell:
    """A value as a spreadsheet cell: lists joined by '; ', times as ISO text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return "; ".join(str(v) for v in value)
    return str(value)


def local_time(moment: datetime | None, zone: Any) -> str | None:
    """`moment` in the event's zone, as 'YYYY-MM-DD HH:MM' (the zone is named in the header)."""
    if moment is None:
        return None
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


# -- writing ----------------------------------------------------------------------------


def to_csv(sheet: Sheet) -> bytes:
    """One sheet as CSV (UTF-8 with a BOM, which Excel needs to read it as UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(sheet.headers)
    writer.writerows(sheet.rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_csv_many(sheets: Sequence[Sheet], label: str) -> bytes:
    """Several sheets as one CSV: a first column `label` holding each row's sheet title."""
    headers = [label, *(sheets[0].headers if sheets else [])]
    rows = [[s.title, *row] for s in sheets for row in s.rows]
    return to_csv(Sheet(label, headers, rows))


_BAD_TITLE = re.compile(r"[\[\]:*?/\\]")


def _titles(sheets: Sequence[Sheet]) -> list[str]:
    """Unique XLSX sheet names (31 characters, none of []:*?/\\)."""
    seen: set[str] = set()
    titles = []
    for sheet in sheets:
        base = _BAD_TITLE.sub("-", sheet.title).strip() or "Sheet"
        title, n = base[:31], 1
        while title.lower() in seen:
            n += 1
            title = f"{base[: 31 - len(str(n)) - 1]}~{n}"
        seen.add(title.lower())
        titles.append(title)
    return titles


def to_xlsx(sheets: Sequence[Sheet]) -> bytes:
    """Sheets as one workbook: bold, frozen headers in row 1, notes below the rows."""
    book = Workbook()
    book.remove(book.active)
    for sheet, title in zip(sheets, _titles(sheets), strict=True):
        ws = book.create_sheet(title)
        ws.append(sheet.headers)
        for col in range(1, len(sheet.headers) + 1):
            ws.cell(row=1, column=col).font = Font(bold=True)
        for row in sheet.rows:
            ws.append(row)
        if sheet.notes:
            ws.append([])
            for note in sheet.notes:
                ws.append([note])
        ws.freeze_panes = "A2"
        for col, header in enumerate(sheet.headers, start=1):
            values = [len(str(r[col - 1])) for r in sheet.rows[:200] if r[col - 1] is not None]
            ws.column_dimensions[get_column_letter(col)].width = min(
                60, max([len(header), *values]) + 2
            )
    if not sheets:
        book.create_sheet("Empty")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def sheet_response(
    sheets: Sequence[Sheet], fmt: str, filename: str, *, csv_label: str = "sheet"
) -> Response:
    """Sheets as a download: XLSX (one sheet each) or CSV (one sheet, or a label column)."""
    if fmt == "xlsx":
        return download(to_xlsx(sheets), XLSX, f"{filename}.xlsx")
    if fmt == "csv":
        body = to_csv(sheets[0]) if len(sheets) == 1 else to_csv_many(sheets, csv_label)
        return download(body, CSV, f"{filename}.csv")
    raise ProblemError(404, "Not found", f"no {fmt!r} format: csv or xlsx")


def download(body: bytes, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def save(directory: Path, name: str, body: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(body)
    return path


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """An uploaded table: normalised headers, and each data row with its line number."""

    headers: list[str]
    rows: list[tuple[int, dict[str, str]]]


def normalise_header(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def read_table(content: bytes) -> Upload:
    """Read CSV or XLSX (by content: an XLSX file is a ZIP archive); blank rows skipped.

    Line numbers are the spreadsheet's own (the header is line 1)."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise ProblemError(413, "Upload too large", f"at most {MAX_UPLOAD_BYTES} bytes")
    if content.startswith(b"PK\x03\x04"):
        lines = _xlsx_lines(content)
    else:
        lines = _csv_lines(content)
    if not lines:
        raise ProblemError(422, "Empty upload", "the file holds no header row")
    headers = [normalise_header(h) for h in lines[0][1]]
    rows = []
    for number, values in lines[1:]:
        if not any(v.strip() for v in values):
            continue
        rows.append(
            (number, {h: (values[i] if i < len(values) else "") for i, h in enumerate(headers)})
        )
    return Upload(headers, rows)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _xlsx_lines(content: bytes) -> list[tuple[int, list[str]]]:
    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        sheet = book.worksheets[0]
        lines = [
            (number, [_text(v) for v in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        ]
        book.close()
    except Exception as exc:  # a damaged or foreign ZIP fails in many ways inside openpyxl
        raise ProblemError(422, "Unreadable upload", f"not a readable XLSX file: {exc}") from exc
    return lines


def _csv_lines(content: bytes) -> list[tuple[int, list[str]]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1252", errors="replace")
    if "\x00" in text:
        raise ProblemError(422, "Unreadable upload", "neither CSV nor XLSX")
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines = []
    try:
        for values in reader:
            lines.append((reader.line_num, values))
    except csv.Error as exc:
        raise ProblemError(422, "Unreadable upload", f"not a readable CSV file: {exc}") from exc
    return lines


def documented(*formats: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a download route: a file in each of `formats`."""
    types = {"csv": "text/csv", "xlsx": XLSX, "pdf": PDF}
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {
            "description": "the file, as an attachment",
            "content": {types[f]: binary for f in formats},
        }
    }
