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
