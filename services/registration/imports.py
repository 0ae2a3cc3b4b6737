"""The spreadsheet import's command: every row checked as a single registration is, then
all of them registered in the upload's one transaction (or none, as the caller chooses).

One correlation id (the upload's) is on every event the import causes, so its trace and
its history show as one. API keys of the new registrations are in the answer only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import asyncpg

from services.registration import domain, handlers, spreadsheet
from services.registration.domain import ImportRow
from shared.access.policy import Grant, Scope
from shared.contracts.registration import OrganisationProfile
from shared.errors import RuleViolation
from shared.problems import ProblemError
from shared.sheets import Upload

MAX_ROWS = 20_000


class ImportMode(StrEnum):
    ALL_OR_NOTHING = "all-or-nothing"  # one refused row: nothing is imported
    VALID_ONLY = "valid-only"  # the valid rows are imported, the others reported


def _rows(
    upload: Upload, fields: spreadsheet.Layout, grant: Grant
) -> tuple[list[ImportRow], dict[int, tuple[dict[str, Any], list[dict[str, Any]]]]]:
    rows: list[ImportRow] = []
    bodies: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for line, values in upload.rows:
        try:
            body = spreadsheet.parse(values, fields)
        except spreadsheet.RowError as error:
            rows.append(ImportRow(line, None, unreadable=RuleViolation(error.field, error.reason)))
            continue
        profile, representatives = body.split()
        # A co-organiser's rows are its own office's participants, whatever the file says.
        office = grant.office if grant.scope is Scope.OFFICE else body.support_office
        checked = OrganisationProfile(
            **profile, representatives_encrypted="", representative_count=len(representatives)
        )
        rows.append(ImportRow(line, checked, office))
        bodies[line] = (profile, representatives)
    return rows, bodies


async def import_registrations(
    conn: asyncpg.Connection,
    event_id: str,
    upload: Upload,
    mode: ImportMode,
    grant: Grant,
    correlation_id: str | None,
) -> dict[str, Any]:
    event = await handlers.load_event(conn, event_id)
    fields = spreadsheet.layout(upload.headers)
    if fields.missing:
        raise RuleViolation("file", f"missing column(s): {', '.join(fields.missing)}")
    if len(upload.rows) > MAX_ROWS:
        raise RuleViolation("file", f"more than {MAX_ROWS} rows; split the file")
    rows, bodies = _rows(upload, fields, grant)
    # Serialise imports into one event: two uploads of one file cannot both create a row.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('import:' || $1))", event_id)
    existing = await conn.fetch(
        "SELECT r.registration_id, r.name, r.country, a.office_id FROM registrations r"
        " JOIN access_registrations a USING (registration_id)"
        " WHERE r.event_id = $1 AND r.status <> 'withdrawn'",
        event_id,
    )
    registered = {domain.organisation_key(r["name"], r["country"]): r for r in existing}
    plan = domain.plan_import(
        event, rows, {key: r["registration_id"] for key, r in registered.items()}
    )
    refused = [{"line": line, "field": f, "reason": reason} for line, f, reason in plan.refused]
    if refused and mode is ImportMode.ALL_OR_NOTHING:
        lines = sorted({line for line, _, _ in plan.refused})
        raise ProblemError(
            422,
            "Rows refused: nothing imported",
            f"{len(lines)} row(s) refused (lines {', '.join(map(str, lines))}); fix them, or"
            " upload with mode=valid-only to import the others",
            errors=refused,
        )
    made = []
    created = []
    for row in plan.create:
        profile, representatives = bodies[row.line]
        made.append(
            handlers.prepare_registration(
                event, profile, representatives, grant, row.support_office
            )
        )
        created.append(
            {"line": row.line, "name": profile["name"], "country": profile["country"]}
            | made[-1].answer
        )
    if made:
        await handlers.record_registrations(conn, event_id, made, correlation_id)
    unchanged = []
    for row, registration_id in plan.unchanged:
        assert row.profile is not None
        found = registered[domain.organisation_key(row.profile.name, row.profile.country)]
        visible = grant.may_see(registration_id, found["office_id"])
        unchanged.append(
            {
                "line": row.line,
                "name": found["name"],
                "country": found["country"],
                "registration_id": registration_id if visible else None,
            }
        )
    return {
        "event_id": event_id,
        "mode": mode.value,
        "correlation_id": correlation_id,
        "rows": len(upload.rows),
        "created": created,
        "unchanged": unchanged,
        "refused": refused,
        "ignored_columns": fields.ignored,
        "api_keys_note": "each created registration's API key is shown here once;"
        " it cannot be recovered later",
    }
