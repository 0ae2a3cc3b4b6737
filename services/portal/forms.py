"""The registration form's fields -> the registration API's body (the full profile)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.contracts.registration import DirectoryField

REPRESENTATIVES = 2  # rows on the form


def _list(text: str, *, lines: bool = False) -> list[str]:
    parts = text.splitlines() if lines else text.replace("\n", ",").split(",")
    return [p.strip() for p in parts if p.strip()]


def availability(text: str, zone: str) -> list[dict[str, str]]:
    """Lines `2026-04-13 09:00-12:00` in the event's time zone -> intervals."""
    tz = ZoneInfo(zone)
    out = []
    for line in _list(text, lines=True):
        try:
            day, hours = line.split()
            start, end = hours.split("-")
            out.append(
                {
                    "start": datetime.fromisoformat(f"{day}T{start}")
                    .replace(tzinfo=tz)
                    .isoformat(),
                    "end": datetime.fromisoformat(f"{day}T{end}").replace(tzinfo=tz).isoformat(),
                }
            )
        except ValueError as exc:
            raise ValueError(f"availability: {line!r} is not like 2026-04-13 09:00-12:00") from exc
    return out


def profile_body(
    form: Mapping[str, str], event: Mapping[str, Any], published: list[str]
) -> dict[str, Any]:
    representatives = []
    for n in range(1, REPRESENTATIVES + 1):
        name = form.get(f"rep_name_{n}", "").strip()
        if not name:
            continue
        rep = {"name": name, "email": form.get(f"rep_email_{n}", "").strip()}
        for extra in ("phone", "role"):
            if value := form.get(f"rep_{extra}_{n}", "").strip():
                rep[extra] = value
        representatives.append(rep)
    body: dict[str, Any] = {
        "organisation_type": form.get("organisation_type", ""),
        "name": form.get("name", "").strip(),
        "country": form.get("country", "").strip().upper(),
        "sectors": _list(form.get("sectors", "")),
        "technologies": _list(form.get("technologies", "")),
        "value_chain_position": form.get("value_chain_position", "").strip() or None,
        "markets": _list(form.get("markets", "")),
        "offers": _list(form.get("offers", ""), lines=True),
        "requests": _list(form.get("requests", ""), lines=True),
        "attendance": form.get("attendance", "on_site"),
        "availability": availability(form.get("availability", ""), event["time_zone"]),
        "representatives": representatives,
        "published": [p for p in published if p in set(DirectoryField)],
    }
    if event.get("support_offices") and form.get("support_office"):
        body["support_office"] = form["support_office"]
    return body


def event_body(form: Mapping[str, str], meeting_types: list[str]) -> dict[str, Any]:
    """The create-event form -> registration's body. Sessions `09:00-12:00` one per line;
    support offices `DE-NDS; EEN Lower Saxony; DE, AT` one per line."""
    sessions = []
    for line in _list(form.get("sessions", ""), lines=True):
        start, _, end = line.partition("-")
        sessions.append({"start": start.strip(), "end": end.strip()})
    offices = []
    for line in _list(form.get("support_offices", ""), lines=True):
        parts = [p.strip() for p in line.split(";")]
        if len(parts) < 2:
            raise ValueError(f"support offices: {line!r} is not like DE-NDS; Name; DE, AT")
        countries = _list(parts[2].upper()) if len(parts) > 2 else []
        offices.append({"office_id": parts[0], "name": parts[1], "countries": countries})
    zone = form.get("time_zone", "").strip() or "UTC"
    deadline = form.get("registration_deadline", "").strip()
    try:
        when = datetime.fromisoformat(deadline).replace(tzinfo=ZoneInfo(zone)).isoformat()
    except (ValueError, KeyError) as exc:
        raise ValueError(f"registration deadline: {deadline!r} is not a date and time") from exc
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "venue": form.get("venue", "").strip(),
        "time_zone": zone,
        "days": _list(form.get("days", "")),
        "sessions": sessions,
        "slot_minutes": int(form.get("slot_minutes") or 30),
        "tables": int(form.get("tables") or 0),
        "meeting_types": meeting_types,
        "registration_deadline": when,
        "request_expiry_hours": int(form.get("request_expiry_hours") or 48),
        "support_offices": offices,
    }
    if cap := form.get("max_meetings_per_participant", "").strip():
        body["max_meetings_per_participant"] = int(cap)
    return body


# The edit form's fields: the settings an organiser may change (see EDITABLE_SETTINGS).
SETTINGS_FIELDS = (
    "name",
    "venue",
    "days",
    "sessions",
    "slot_minutes",
    "tables",
    "meeting_types",
    "registration_deadline",
    "max_meetings_per_participant",
    "request_expiry_hours",
)


class FormErrors(ValueError):
    """Fields of a form that could not be read, each with its reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def settings_form(event: Mapping[str, Any]) -> dict[str, str]:
    """An event's settings as the edit form shows them (times in the event's zone)."""
    deadline = datetime.fromisoformat(event["registration_deadline"])
    local = deadline.astimezone(ZoneInfo(event["time_zone"]))
    cap = event.get("max_meetings_per_participant")
    return {
        "name": event["name"],
        "venue": event["venue"],
        "days": ", ".join(event["days"]),
        "sessions": "\n".join(f"{s['start'][:5]}-{s['end'][:5]}" for s in event["sessions"]),
        "slot_minutes": str(event["slot_minutes"]),
        "tables": str(event["tables"]),
        "registration_deadline": local.strftime("%Y-%m-%dT%H:%M"),
        "max_meetings_per_participant": "" if cap is None else str(cap),
        "request_expiry_hours": str(event["request_expiry_hours"]),
    }


def settings_body(
    form: Mapping[str, str], meeting_types: list[str], time_zone: str
) -> dict[str, Any]:
    """The edit form -> registration's PATCH body: every setting as the form now has it
    (registration works out what changed). Raises FormErrors naming unreadable fields."""
    errors: dict[str, str] = {}

    def number(name: str) -> int | None:
        text = form.get(name, "").strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            errors[name] = "is not a whole number"
            return None

    sessions = []
    for line in _list(form.get("sessions", ""), lines=True):
        start, _, end = line.partition("-")
        sessions.append({"start": start.strip(), "end": end.strip()})
    deadline = form.get("registration_deadline", "").strip()
    when = ""
    try:
        when = datetime.fromisoformat(deadline).replace(tzinfo=ZoneInfo(time_zone)).isoformat()
    except ValueError:
        errors["registration_deadline"] = "is not a date and time"
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "venue": form.get("venue", "").strip(),
        "days": _list(form.get("days", "")),
        "sessions": sessions,
        "slot_minutes": number("slot_minutes"),
        "tables": number("tables"),
        "meeting_types": meeting_types,
        "registration_deadline": when,
        "max_meetings_per_participant": number("max_meetings_per_participant"),
        "request_expiry_hours": number("request_expiry_hours"),
    }
    for required in ("slot_minutes", "tables", "request_expiry_hours"):
        if body[required] is None and required not in errors:
            errors[required] = "is needed"
    if errors:
        raise FormErrors(errors)
    return body


def field_of(api_field: str) -> str:
    """The form field an API error names: `sessions[1]` -> `sessions`."""
    head = api_field.split(".")[0].split("[")[0]
    return head if head in SETTINGS_FIELDS else ""
