"""The registration spreadsheet: its columns, the template, and one row to a registration body.

Columns are matched by header (case, spaces and punctuation ignored; a few aliases);
their order does not matter and unknown columns are ignored (the answer names them).
A row becomes the same `NewRegistration` body a single registration posts, so the same
field rules apply; the domain's rules are checked by the import handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.registration.bodies import NewRegistration
from shared.contracts.registration import Attendance, DirectoryField, OrganisationType
from shared.sheets import Cell, Sheet, normalise_header

LIST_SEPARATOR = ";"


@dataclass(frozen=True)
class Column:
    header: str
    meaning: str
    example: str
    required: bool = False
    is_list: bool = False
    aliases: tuple[str, ...] = ()


def _choices(values: type[Any]) -> str:
    return ", ".join(v.value for v in values)


COLUMNS: list[Column] = [
    Column(
        "organisation_type",
        f"one of {_choices(OrganisationType)}",
        "cluster",
        required=True,
        aliases=("type", "organisation_kind"),
    ),
    Column(
        "name",
        "the organisation's name (with the country, the key of a row: a second upload"
        " of the same organisation creates nothing)",
        "Leine Valley Mechatronics Cluster",
        required=True,
        aliases=("organisation", "organisation_name", "organization"),
    ),
    Column("country", "ISO 3166-1 alpha-2 code", "DE", required=True),
    Column("sectors", "separated by ';'", "mechanical engineering; automotive", is_list=True),
    Column("technologies", "separated by ';'", "robotics; sensors", is_list=True),
    Column("value_chain_position", "free text", "system integrator"),
    Column("markets", "separated by ';'", "EU; CN", is_list=True),
    Column("offers", "separated by ';'", "access to 120 member companies", is_list=True),
    Column("requests", "separated by ';'", "partners for joint projects", is_list=True),
    Column("attendance", f"{_choices(Attendance)} (default on_site)", "on_site"),
    Column(
        "representative_name",
        "the representative's name",
        "Anna Example",
        required=True,
        aliases=("contact", "contact_name", "representative"),
    ),
    Column(
        "representative_email",
        "the representative's email",
        "anna@example.org",
        required=True,
        aliases=("email", "e_mail", "contact_email"),
    ),
    Column("representative_phone", "optional", "+49 511 000000", aliases=("phone",)),
    Column("representative_role", "optional", "cluster manager", aliases=("role",)),
    Column(
        "support_office",
        "one of the event's support offices (optional: the country rule assigns one;"
        " a co-organiser's rows always go to its own office)",
        "",
        aliases=("office", "office_id"),
    ),
    Column(
        "published",
        f"directory fields to publish, separated by ';' (default all: {_choices(DirectoryField)})",
        "",
        is_list=True,
    ),
]
REQUIRED = [c.header for c in COLUMNS if c.required]
_BY_HEADER = {alias: c for c in COLUMNS for alias in (c.header, *c.aliases)}
_REPRESENTATIVE = {
    "representative_name": "name",
    "representative_email": "email",
    "representative_phone": "phone",
    "representative_role": "role",
}


@dataclass(frozen=True)
class Layout:
    """Which upload column holds which field."""

    columns: dict[str, str]  # normalised upload header -> column header
    ignored: list[str]
    missing: list[str]


def layout(headers: list[str]) -> Layout:
    columns: dict[str, str] = {}
    ignored = []
    for header in headers:
        column = _BY_HEADER.get(normalise_header(header))
        if column is None or column.header in columns.values():
            ignored.append(header)
        else:
            columns[header] = column.header
    missing = [h for h in REQUIRED if h not in columns.values()]
    return Layout(columns, ignored, missing)


@dataclass(frozen=True)
class RowError(Exception):
    field: str
    reason: str


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(LIST_SEPARATOR) if part.strip()]


def parse(values: dict[str, str], fields: Layout) -> NewRegistration:
    """One row as a registration body, or `RowError` naming the first column at fault."""
    data: dict[str, Any] = {}
    representative: dict[str, Any] = {}
    for header, name in fields.columns.items():
        text = values.get(header, "").strip()
        if not text:
            continue
        if name in _REPRESENTATIVE:
            representative[_REPRESENTATIVE[name]] = text
        elif _BY_HEADER[name].is_list:
            data[name] = _split(text)
        else:
            data[name] = text.lower() if name in ("organisation_type", "attendance") else text
    if "country" in data:
        data["country"] = data["country"].upper()
    data["representatives"] = [representative]
    try:
        return NewRegistration.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise RowError(_column_of(error["loc"]), error["msg"]) from exc


def _column_of(loc: tuple[int | str, ...]) -> str:
    """The spreadsheet column a validation error's location points at."""
    if loc and loc[0] == "representatives":
        if len(loc) >= 3 and isinstance(loc[2], str):
            return f"representative_{loc[2]}"
        return "representative_name"
    return str(loc[0]) if loc else "row"


def template_sheets() -> list[Sheet]:
    """The template: the columns with one example row, and a sheet that explains them."""
    example: list[Cell] = [c.example for c in COLUMNS]
    return [
        Sheet("Registrations", [c.header for c in COLUMNS], [example]),
        Sheet(
            "Columns",
            ["column", "required", "meaning", "also accepted as"],
            [
                [c.header, "yes" if c.required else "no", c.meaning, ", ".join(c.aliases)]
                for c in COLUMNS
            ],
        ),
    ]
