"""The organiser dashboard's figures, shaped from the projections' rows (pure, no I/O).

The funnel, feedback and outcome figures are the report's (`report.build`), so the
dashboard and the report never disagree on what "held" means; this module adds the
breakdowns a person looks at rather than reads: applications and approvals by
country, organisation type and sector, the agenda grid (slots by tables, online
meetings beside it), notifications sent and failed, and dead letters.
`dashboard_queries` reads the rows; `dashboard_api` serves the result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pycountry

from services.reporting.report import RATINGS, TYPE_KEYS, held_meetings

Row = Mapping[str, Any]

STAGES = ("requested", "accepted", "placed", "held")
STATUSES = ("pending", "approved", "waitlisted", "rejected", "withdrawn")
ORGANISATION_TYPES = ("cluster", "business", "research", "other")


@dataclass(frozen=True)
class DeadLetters:
    """How many dead letters, and the latest few rows (newest first)."""

    count: int
    latest: Sequence[Row]


def country_name(code: str) -> str:
    found = pycountry.countries.get(alpha_2=code)
    return str(found.name) if found is not None else code


def _breakdown(
    registrations: Sequence[Row], keys_of: Callable[[Row], Iterable[str]]
) -> list[dict[str, Any]]:
    """Applied and approved counts per key, most applications first."""
    applied: Counter[str] = Counter()
    approved: Counter[str] = Counter()
    for r in registrations:
        for key in set(keys_of(r)):
            applied[key] += 1
            approved[key] += r["status"] == "approved"
    return [
        {"key": key, "applied": n, "approved": approved[key]}
        for key, n in sorted(applied.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def applications(registrations: Sequence[Row]) -> dict[str, Any]:
    statuses = Counter(r["status"] for r in registrations)
    by_country = _breakdown(registrations, lambda r: [r["country"]])
    for entry in by_country:
        entry["label"] = country_name(entry["key"])
    return {
        "applied": len(registrations),
        "approved": statuses.get("approved", 0),
        "by_status": {
            s: statuses.get(s, 0) for s in (*STATUSES, *sorted(set(statuses) - set(STATUSES)))
        },
        "by_country": by_country,
        "by_type": _breakdown(registrations, lambda r: [r["organisation_type"]]),
        # An organisation counts once under each sector it names.
        "by_sector": _breakdown(registrations, lambda r: r["sectors"]),
    }


def funnel(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report's request funnel, one row per meeting type (every type, even at zero)."""
    stages = report["meetings"]["funnel"]
    rows = [
        {"meeting_type": name, **{stage: stages[stage][key] for stage in STAGES}}
        for name, key in TYPE_KEYS.items()
    ]
    total = {stage: sum(r[stage] for r in rows) for stage in STAGES}
    return {"stages": list(STAGES), "by_type": rows, "total": total}


def _grid_slots(event: Row, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The event's slots from its sessions (empty when the grid is not known)."""
    sessions, minutes = event.get("sessions"), event.get("slot_minutes")
    if not sessions or not minutes:
        return []
    step = timedelta(minutes=int(minutes))
    slots = []
    for day in event["days"]:
        for session in sessions:
            start = datetime.combine(date.fromisoformat(day), time.fromisoformat(session["start"]))
            end = datetime.combine(date.fromisoformat(day), time.fromisoformat(session["end"]))
            start, end = start.replace(tzinfo=zone), end.replace(tzinfo=zone)
            while start + step <= end:
                slots.append((start, start + step))
                start += step
    return slots


def agenda(
    event: Row,
    registrations: Sequence[Row],
    meetings: Sequence[Row],
    placements: Sequence[Row],
    held: set[str],
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The agenda: per day, one row per slot with the meeting at each table; online beside.

    `names` (registration -> organisation name) defaults to the registrations'; an
    office's agenda is given the whole event's, for the other side of its meetings."""
    zone = ZoneInfo(event["time_zone"])
    if names is None:
        names = {r["registration_id"]: r["name"] for r in registrations}
    by_id = {m["meeting_id"]: m for m in meetings if not m["cancelled"]}
    placed = [p for p in placements if p["placed"] and p["meeting_id"] in by_id]
    slots = {
        start.astimezone(zone): end.astimezone(zone) for start, end in _grid_slots(event, zone)
    }
    for p in placed:
        slots.setdefault(p["slot_start"].astimezone(zone), p["slot_end"].astimezone(zone))
    seen_tables = {p["table_no"] for p in placed if p["table_no"] is not None}
    tables = sorted(set(range(1, int(event.get("tables") or 0) + 1)) | seen_tables)

    def meeting(p: Row) -> dict[str, Any]:
        m = by_id[p["meeting_id"]]
        return {
            "meeting_id": m["meeting_id"],
            "meeting_type": m["meeting_type"],
            "organisations": [names.get(rid, "(not known yet)") for rid in m["participants"]],
            "held": m["meeting_id"] in held,
            "start": p["slot_start"].astimezone(zone).strftime("%H:%M"),
            "end": p["slot_end"].astimezone(zone).strftime("%H:%M"),
        }

    at: dict[tuple[datetime, int], dict[str, Any]] = {}
    online: dict[datetime, list[dict[str, Any]]] = {}
    for p in sorted(placed, key=lambda p: (p["slot_start"], p["meeting_id"])):
        start = p["slot_start"].astimezone(zone)
        if p["table_no"] is None:
            online.setdefault(start, []).append(meeting(p))
        else:
            at[(start, p["table_no"])] = meeting(p)
    days: dict[str, list[dict[str, Any]]] = {}
    for start in sorted(slots):
        days.setdefault(start.date().isoformat(), []).append(
            {
                "start": start.strftime("%H:%M"),
                "end": slots[start].strftime("%H:%M"),
                "tables": {str(t): at[(start, t)] for t in tables if (start, t) in at},
                "online": online.get(start, []),
            }
        )
    on_site = sum(p["table_no"] is not None for p in placed)
    return {
        "time_zone": event["time_zone"],
        "tables": tables,
        "days": [{"date": day, "slots": rows} for day, rows in days.items()],
        "placed": len(placed),
        "at_tables": on_site,
        "online": len(placed) - on_site,
        "unplaced": len(by_id) - len(placed),
    }


def notifications(counts: Sequence[Row]) -> dict[str, Any]:
    """Deliveries sent and failed, by message kind and by channel (rows of grouped counts)."""

    def by(field: str) -> list[dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {}
        for c in counts:
            entry = table.setdefault(c[field], {"key": c[field], "sent": 0, "failed": 0})
            entry[c["outcome"]] = entry.get(c["outcome"], 0) + c["n"]
        return sorted(table.values(), key=lambda e: (-(e["sent"] + e["failed"]), e["key"]))

    return {
        "sent": sum(c["n"] for c in counts if c["outcome"] == "sent"),
        "failed": sum(c["n"] for c in counts if c["outcome"] == "failed"),
        "by_kind": by("kind"),
        "by_channel": by("channel"),
    }


def _letters(found: DeadLetters) -> dict[str, Any]:
    return {
        "count": found.count,
        "latest": [
            {
                "topic": d["topic"],
                "original_topic": d["original_topic"],
                "consumer": d["consumer"],
                "error_type": d["error_type"],
                "event_type": d["event_type"],
                "at": d["dead_lettered_at"].isoformat(),
            }
            for d in found.latest
        ],
    }


def feedback(
    report: Mapping[str, Any], meetings: Sequence[Row], ratings: Sequence[Row]
) -> dict[str, Any]:
    """The report's feedback figures, plus ratings per meeting type (the stacked bars)."""
    types = {m["meeting_id"]: m["meeting_type"] for m in meetings}
    stacked: dict[str, Counter[str]] = {name: Counter() for name in TYPE_KEYS}
    for f in ratings:
        kind = types.get(f["meeting_id"])
        if kind in stacked:
            stacked[kind][f["rating"]] += 1
    return {
        **report["feedback"],
        "ratings": list(RATINGS),
        "by_meeting_type": [
            {"meeting_type": name, **{r: counts.get(r, 0) for r in RATINGS}}
            for name, counts in stacked.items()
        ],
    }


def build(
    *,
    event: Row,
    report: Mapping[str, Any],
    registrations: Sequence[Row],
    meetings: Sequence[Row],
    placements: Sequence[Row],
    not_held: Sequence[Row],
    ratings: Sequence[Row],
    notification_counts: Sequence[Row],
    event_dead_letters: DeadLetters,
    platform_dead_letters: DeadLetters,
    generated_at: datetime,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    held = held_meetings(meetings, placements, not_held, ratings)
    flow = funnel(report)
    sent = notifications(notification_counts)
    return {
        "event": report["event"],
        "generated_at": generated_at.isoformat(),
        "totals": {
            "applied": len(registrations),
            "approved": sum(r["status"] == "approved" for r in registrations),
            **{f"meetings_{stage}": flow["total"][stage] for stage in STAGES},
            "notifications_sent": sent["sent"],
            "notifications_failed": sent["failed"],
            "dead_letters": event_dead_letters.count,
        },
        "applications": applications(registrations),
        "funnel": flow,
        "agenda": agenda(event, registrations, meetings, placements, held, names),
        "notifications": sent,
        "dead_letters": {
            "event": _letters(event_dead_letters),
            "platform": _letters(platform_dead_letters),
        },
        "feedback": feedback(report, meetings, ratings),
        "outcomes": report["outcomes"],
    }
