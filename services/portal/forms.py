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
