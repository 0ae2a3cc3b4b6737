"""Spreadsheets, pure: reading CSV and XLSX uploads, writing sheets, a row to a registration,
and the import's plan (which rows are created, unchanged or refused, and why)."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from services.registration import domain, spreadsheet
from services.registration.domain import ImportRow
from shared.contracts.registration import SupportOffice
from shared.errors import RuleViolation
from shared.problems import ProblemError
from shared.sheets import Sheet, read_table, to_csv, to_xlsx
from tests.unit.test_registration_domain import hannover, profile

ROWS = [
    ["Name", "Country", "Type", "Sectors", "Contact", "E-mail"],
    ["Weser Aero Network", "de", "Cluster", "aerospace; new materials", "Ann", "ann@weser.example"],
    ["Rhône Smart Materials", "FR", "cluster", "", "Bé", "be@rhone.example"],
]


def test_csv_and_xlsx_read_alike_with_their_line_numbers() -> None:
    as_csv = to_csv(Sheet("x", ROWS[0], [list(r) for r in ROWS[1:]]))
    as_xlsx = to_xlsx([Sheet("x", ROWS[0], [list(r) for r in ROWS[1:]])])
    semicolons = "\n\n".join(";".join(r) for r in ROWS).encode("cp1252")  # a blank line too
    for content in (as_csv, as_xlsx):
        upload = read_table(content)
        assert upload.headers == ["name", "country", "type", "sectors", "contact", "e_mail"]
        assert [line for line, _ in upload.rows] == [2, 3]
        assert upload.rows[1][1]["name"] == "Rhône Smart Materials"
    upload = read_table(semicolons)
    assert [line for line, _ in upload.rows] == [3, 5]
    assert upload.rows[1][1]["name"] == "Rhône Smart Materials"
    with pytest.raises(ProblemError):
        read_table(b"PK\x03\x04 not really a workbook")


def test_xlsx_sheets_have_headers_first_and_unique_names() -> None:
    long = "A very long organisation name: with/odd*characters"
    book = load_workbook(io.BytesIO(to_xlsx([Sheet(long, ["a"], [[1]]), Sheet(long, ["a"])])))
    assert [len(t) <= 31 and ":" not in t and "/" not in t for t in book.sheetnames] == [True] * 2
    assert len(set(book.sheetnames)) == 2
    assert book.worksheets[0]["A1"].value == "a" and book.worksheets[0]["A2"].value == 1


def test_a_row_becomes_the_registration_body_or_names_its_column() -> None:
    upload = read_table(to_csv(Sheet("x", ROWS[0], [list(r) for r in ROWS[1:]])))
    fields = spreadsheet.layout(upload.headers)
    assert fields.missing == [] and fields.ignored == []
    body = spreadsheet.parse(upload.rows[0][1], fields)
    assert (body.country, body.organisation_type.value) == ("DE", "cluster")
    assert body.sectors == ["aerospace", "new materials"]
    assert body.representatives[0].email == "ann@weser.example"
    broken = {**upload.rows[0][1], "e_mail": "nobody"}
    with pytest.raises(spreadsheet.RowError) as refused:
        spreadsheet.parse(broken, fields)
    assert refused.value.field == "representative_email"
    assert spreadsheet.layout(["name"]).missing == [
        "organisation_type",
        "country",
        "representative_name",
        "representative_email",
    ]


def _row(line: int, name: str, country: str = "DE", office: str | None = None) -> ImportRow:
    return ImportRow(line, profile(name=name, country=country), office)


def test_the_plan_creates_new_rows_keeps_known_ones_and_refuses_the_rest() -> None:
    event = hannover(support_offices=[SupportOffice(office_id="N", name="North", countries=["DE"])])
    rows = [
        _row(2, "Alpha"),
        _row(3, "Beta"),
        _row(4, "ALPHA"),  # the same organisation as line 2
        _row(5, "Gamma", "XX"),
        _row(6, "Delta", office="nowhere"),
        ImportRow(7, None, unreadable=RuleViolation("organisation_type", "bad")),
    ]
    plan = domain.plan_import(event, rows, {("beta", "DE"): "reg-beta"})
    assert [r.line for r in plan.create] == [2]
    assert [(r.line, rid) for r, rid in plan.unchanged] == [(3, "reg-beta")]
    assert [(line, field) for line, field, _ in plan.refused] == [
        (4, "name"),
        (5, "country"),
        (6, "support_office"),
        (7, "organisation_type"),
    ]
