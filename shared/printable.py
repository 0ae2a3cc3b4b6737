"""Printable PDFs from sheets (fpdf2): each sheet a section on a new page, a table with
repeated headers. Text is set in DejaVu Sans from Debian's fonts-dejavu-core (every
European name prints); without it, in the core Helvetica with what Latin-1 can show.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from shared.sheets import Sheet

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)


def _font(pdf: FPDF) -> tuple[str, bool]:
    for directory in FONT_DIRS:
        regular, bold = directory / "DejaVuSans.ttf", directory / "DejaVuSans-Bold.ttf"
        if regular.exists() and bold.exists():
            pdf.add_font("DejaVu", "", str(regular))
            pdf.add_font("DejaVu", "B", str(bold))
            return "DejaVu", True
    return "Helvetica", False


def to_pdf(
    title: str,
    sheets: Sequence[Sheet],
    *,
    landscape: bool = False,
    widths: Sequence[int] | None = None,
    narrow_first: bool = False,
) -> bytes:
    """One page (or more) per sheet: the document's title, the sheet's, its notes, its table.

    `widths`: relative column widths for every sheet; `narrow_first`: a narrow first column
    (e.g. table numbers) and equal others, whatever each sheet's number of columns."""
    pdf = FPDF(orientation="L" if landscape else "P", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_title(title)
    family, unicode = _font(pdf)

    def text(value: object) -> str:
        shown = "" if value is None else str(value)
        return shown if unicode else shown.encode("latin-1", "replace").decode("latin-1")

    for sheet in sheets or [Sheet("(nothing to print)", [])]:
        pdf.add_page()
        pdf.set_font(family, "", 9)
        pdf.cell(0, 5, text(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "B", 14)
        pdf.multi_cell(0, 8, text(sheet.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "", 9)
        for note in sheet.notes:
            pdf.multi_cell(0, 5, text(note), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        if not sheet.headers:
            continue
        if not sheet.rows:
            pdf.cell(0, 6, "(none)", new_x="LMARGIN", new_y="NEXT")
            continue
        columns = (1, *[4] * (len(sheet.headers) - 1)) if narrow_first else widths
        with pdf.table(
            col_widths=tuple(columns) if columns else None,
            headings_style=FontFace(emphasis="BOLD", fill_color=(225, 225, 225)),
            line_height=5,
            text_align="LEFT",
        ) as table:
            table.row([text(h) for h in sheet.headers])
            for values in sheet.rows:
                table.row([text(v) for v in values])
    return bytes(pdf.output())
