"""The event report: computed from the projections' rows (pure), rendered as Markdown or HTML.

Definitions (see the README):

- **applied**: every registration of the event, whatever its status.
- **held**: a meeting agreed in matching, not cancelled, placed on the agenda by
  scheduling, and neither marked "not held" by the organiser nor rated
  `did_not_take_place` by one of its sides.
- **participated**: approved and recorded by the organiser as attended. For an
  event where no attendance has been recorded at all, approved participants
  attending on site with at least one held meeting count instead (stated in the
  report as `participation_basis`).
- **remote**: approved registrations attending remotely — those who could not
  come in person.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

TYPE_KEYS = {
    "Cluster2Cluster": "cluster2cluster",
    "Business2Cluster": "business2cluster",
    "Business2Business": "business2business",
}
RATINGS = (
    "did_not_take_place",
    "no_interest",
    "informative_no_cooperation",
    "cooperation_possible",
)
OUTCOMES = ("negotiation_started", "agreement_reached")
KINDS = ("joint_funding_proposal", "joint_event", "other")

Row = Mapping[str, Any]


def _group(rows: Iterable[Row]) -> dict[str, Any]:
    listed = list(rows)
    return {
        "organisations": len(listed),
        "clusters": sum(r["organisation_type"] == "cluster" for r in listed),
        "countries": len({r["country"] for r in listed}),
        "by_type": dict(sorted(Counter(r["organisation_type"] for r in listed).items())),
        "by_country": dict(sorted(Counter(r["country"] for r in listed).items())),
        "sectors": sorted({s for r in listed for s in r["sectors"]}),
    }


def held_meetings(
    meetings: Sequence[Row],
    placements: Sequence[Row],
    not_held: Sequence[Row],
    feedback: Sequence[Row],
) -> set[str]:
    """Ids of the held meetings (see "held" above); the dashboard uses it too."""
    placed = {p["meeting_id"] for p in placements if p["placed"]}
    said_not = {n["meeting_id"] for n in not_held} | {
        f["meeting_id"] for f in feedback if f["rating"] == "did_not_take_place"
    }
    return {
        m["meeting_id"]
        for m in meetings
        if not m["cancelled"] and m["meeting_id"] in placed and m["meeting_id"] not in said_not
    }


def build(
    event: Row,
    registrations: Sequence[Row],
    meetings: Sequence[Row],
    placements: Sequence[Row],
    requests: Sequence[Row],
    attendance: Sequence[Row],
    not_held: Sequence[Row],
    feedback: Sequence[Row],
    outcomes: Sequence[Row],
    side_programme: Sequence[Row] = (),
) -> dict[str, Any]:
    placed = {p["meeting_id"] for p in placements if p["placed"]}
    agreed = [m for m in meetings if not m["cancelled"]]
    on_agenda = [m for m in agreed if m["meeting_id"] in placed]
    held_ids = held_meetings(meetings, placements, not_held, feedback)
    held = [m for m in on_agenda if m["meeting_id"] in held_ids]
    with_held = {p for m in held for p in m["participants"]}
    approved = [r for r in registrations if r["status"] == "approved"]
    came = {a["registration_id"]: a["attended"] for a in attendance}
    if came:
        basis = "attendance recorded by the organiser"
        took_part = [r for r in approved if came.get(r["registration_id"], False)]
    else:
        basis = "no attendance recorded: approved on-site participants with a held meeting"
        took_part = [
            r
            for r in approved
            if r["attendance"] == "on_site" and r["registration_id"] in with_held
        ]
    remote = [r for r in approved if r["attendance"] == "remote"]

    def by_type(rows: Iterable[Row]) -> dict[str, int]:
        counts = Counter(TYPE_KEYS[r["meeting_type"]] for r in rows)
        return {key: counts.get(key, 0) for key in TYPE_KEYS.values()}

    ratings = Counter(f["rating"] for f in feedback)
    results = Counter(o["outcome"] for o in outcomes)
    kinds = Counter(o["kind"] for o in outcomes if o["kind"])
    agreements = {o["meeting_id"] for o in outcomes if o["outcome"] == "agreement_reached"}
    return {
        "event": {
            "event_id": event["event_id"],
            "name": event["name"],
            "venue": event["venue"],
            "time_zone": event["time_zone"],
            "days": list(event["days"]),
        },
        "applied": _group(registrations),
        "participated": _group(took_part),
        "participation_basis": basis,
        "remote": {
            **_group(remote),
            "names": sorted(r["name"] for r in remote),
        },
        "meetings": {
            "held": len(held),
            "by_type": by_type(held),
            "funnel": {
                "requested": by_type(requests),
                "accepted": by_type(agreed),
                "placed": by_type(on_agenda),
                "held": by_type(held),
            },
            "online": sum(m["mode"] == "online" for m in held),
            "not_held": len(on_agenda) - len(held),
        },
        "side_programme": [
            {
                "title": item["title"],
                "kind": item["kind"],
                "start": item["starts_at"].astimezone(ZoneInfo(event["time_zone"])).isoformat(),
                "end": item["ends_at"].astimezone(ZoneInfo(event["time_zone"])).isoformat(),
                "participants": len(item["participants"]),
            }
            for item in sorted(side_programme, key=lambda i: (i["starts_at"], i["title"]))
        ],
        "feedback": {
            "responses": len(feedback),
            "meetings_rated": len({f["meeting_id"] for f in feedback}),
            "by_rating": {key: ratings.get(key, 0) for key in RATINGS},
        },
        "outcomes": {
            "reports": len(outcomes),
            "by_outcome": {key: results.get(key, 0) for key in OUTCOMES},
            "agreements": len(agreements),
            "agreements_by_kind": {key: kinds.get(key, 0) for key in KINDS},
        },
    }


def _label(key: str) -> str:
    return key.replace("_", " ").replace("2", " to ")


def sections(report: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The report as titled lists of (label, value) lines, shared by Markdown and HTML."""
    applied, took, remote = report["applied"], report["participated"], report["remote"]
    meetings, fb, out = report["meetings"], report["feedback"], report["outcomes"]

    def countries(group: Mapping[str, Any]) -> str:
        return ", ".join(f"{c} ({n})" for c, n in group["by_country"].items()) or "none"

    return [
        *_office_heading(report),
        (
            "Applications",
            [
                ("Organisations applied", str(applied["organisations"])),
                ("Clusters applied", str(applied["clusters"])),
                ("Countries", f"{applied['countries']}: {countries(applied)}"),
            ],
        ),
        (
            "Participation",
            [
                ("Organisations took part", str(took["organisations"])),
                ("Clusters took part", str(took["clusters"])),
                ("Countries", f"{took['countries']}: {countries(took)}"),
                ("Sectors represented", ", ".join(took["sectors"]) or "none"),
                ("Counted as", report["participation_basis"]),
                (
                    "Could not come in person",
                    f"{remote['organisations']} ({remote['clusters']} clusters): "
                    + (", ".join(remote.get("names", [])) or "not published"),
                ),
            ],
        ),
        (
            "Meetings",
            [
                ("Meetings held", str(meetings["held"])),
                *[(_label(k).capitalize(), str(v)) for k, v in meetings["by_type"].items()],
                ("Held online", str(meetings["online"])),
                ("Placed but not held", str(meetings["not_held"])),
                *[
                    (f"Funnel, {stage}", ", ".join(f"{_label(k)} {v}" for k, v in c.items()))
                    for stage, c in meetings["funnel"].items()
                ],
            ],
        ),
        (
            "Side programme",
            [
                (
                    f"{item['title']} ({item['start'][:16].replace('T', ' ')})",
                    f"{item['participants']} joined",
                )
                for item in report["side_programme"]
            ]
            or [("Items", "none")],
        ),
        (
            "Feedback and outcomes",
            [
                ("Feedback responses", f"{fb['responses']} on {fb['meetings_rated']} meetings"),
                *[(_label(k).capitalize(), str(v)) for k, v in fb["by_rating"].items()],
                *[(_label(k).capitalize(), str(v)) for k, v in out["by_outcome"].items()],
                *[
                    (f"Agreements: {_label(k)}", str(v))
                    for k, v in out["agreements_by_kind"].items()
                ],
            ],
        ),
        *_by_office(report),
    ]


def _office_heading(report: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """A co-organiser's report says whose participants it counts."""
    office = report.get("office")
    if not office:
        return []
    return [
        (
            "Support office",
            [(str(office["name"]), f"{office['office_id']}: its participants only")],
        )
    ]


def _by_office(report: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The lead organiser's figures by support office, one line each."""
    lines = report.get("by_office")
    if lines is None:
        return []
    return [
        (
            "By support office",
            [
                (
                    f"{line['name']} ({line['office_id']})" if line["office_id"] else line["name"],
                    f"{line['registrations']} registrations, {line['approved']} approved,"
                    f" {line['meetings_requested']} meetings requested,"
                    f" {line['meetings_held']} held, {line['feedback_responses']} feedback"
                    f" responses, {line['agreements']} agreements",
                )
                for line in lines
            ]
            or [("Offices", "none")],
        )
    ]


def _title(report: Mapping[str, Any]) -> str:
    event = report["event"]
    days = event["days"]
    when = f"{days[0]} to {days[-1]}" if days else ""
    return f"{event['name']}, {event['venue']}, {when}"


def markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# Event report: {_title(report)}", ""]
    for title, rows in sections(report):
        lines += [f"## {title}", "", "| | |", "|---|---|"]
        lines += [f"| {label} | {value.replace('|', '/')} |" for label, value in rows]
        lines.append("")
    return "\n".join(lines)


def page(report: Mapping[str, Any]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Report: {esc(report['event']['name'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;width:100%;margin-bottom:1.5em}"
        "td{border-bottom:1px solid #ddd;padding:.3em .6em;vertical-align:top}"
        "td:first-child{width:16em;color:#444}.big{font-size:2em;font-weight:bold}"
        ".tiles{display:flex;gap:1em;margin:1em 0}"
        ".tiles div{border:1px solid #ccc;border-radius:6px;padding:.6em 1em}</style>",
        "</head><body>",
        f"<h1>Event report</h1><p>{esc(_title(report))}</p>",
        f"<p><a href='/events/{esc(report['event']['event_id'])}/dashboard'>Live dashboard</a></p>",
        "<div class='tiles'>",
    ]
    for label, value in (
        ("clusters applied", report["applied"]["clusters"]),
        ("clusters took part", report["participated"]["clusters"]),
        ("countries represented", report["participated"]["countries"]),
        ("meetings held", report["meetings"]["held"]),
    ):
        parts.append(f"<div><span class='big'>{value}</span><br>{esc(label)}</div>")
    parts.append("</div>")
    for title, rows in sections(report):
        parts.append(f"<h2>{esc(title)}</h2><table>")
        parts += [f"<tr><td>{esc(label)}</td><td>{esc(value)}</td></tr>" for label, value in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
