"""Support offices in the read side (pure, no I/O): an event's rows cut down to one
office's participants, and the lead organiser's figures by office.

A support office's share of an event is its participants' registrations (the access
projection's `office_id`), the meeting requests and meetings one of them takes part
in (with their placements and "not held" marks), the feedback and outcome reports on
those meetings, and its participants' attendance. A meeting between two offices'
participants belongs to both, so the offices' meeting figures may add up to more than
the event's. The report and the dashboard are built from such a share exactly as from
the whole event, so a co-organiser's view and the lead's row for that office agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.reporting import report

Row = Mapping[str, Any]

UNASSIGNED = "(no support office)"


@dataclass(frozen=True)
class EventRows:
    """The rows `report.build` reads, for one event (or one office's share of it)."""

    event: Row
    registrations: Sequence[Row]
    meetings: Sequence[Row]
    placements: Sequence[Row]
    requests: Sequence[Row]
    attendance: Sequence[Row]
    not_held: Sequence[Row]
    feedback: Sequence[Row]
    outcomes: Sequence[Row]
    side_programme: Sequence[Row] = ()

    def report(self) -> dict[str, Any]:
        return report.build(
            self.event,
            self.registrations,
            self.meetings,
            self.placements,
            self.requests,
            self.attendance,
            self.not_held,
            self.feedback,
            self.outcomes,
            self.side_programme,
        )


def share(rows: EventRows, office_of: Mapping[str, str | None], office: str) -> EventRows:
    """The rows concerning `office`'s participants (`office_of`: registration -> office)."""
    members = {rid for rid, o in office_of.items() if o == office}

    def involves(participants: Sequence[str] | None) -> bool:
        return any(p in members for p in participants or ())

    meetings = [m for m in rows.meetings if involves(m["participants"])]
    ids = {m["meeting_id"] for m in meetings}
    return replace(
        rows,
        registrations=[r for r in rows.registrations if r["registration_id"] in members],
        meetings=meetings,
        placements=[p for p in rows.placements if p["meeting_id"] in ids],
        requests=[r for r in rows.requests if involves(r.get("participants"))],
        attendance=[a for a in rows.attendance if a["registration_id"] in members],
        not_held=[n for n in rows.not_held if n["meeting_id"] in ids],
        feedback=[f for f in rows.feedback if f["meeting_id"] in ids],
        outcomes=[o for o in rows.outcomes if o["meeting_id"] in ids],
        side_programme=[
            {**item, "participants": [p for p in item["participants"] if p in members]}
            for item in rows.side_programme
        ],
    )


def offices_of(
    declared: Sequence[Row], office_of: Mapping[str, str | None]
) -> list[dict[str, str]]:
    """The event's support offices (id, name): those it declared, then any other office
    a participant was assigned to (a name is not known for those)."""
    listed = [{"office_id": str(o["office_id"]), "name": str(o["name"])} for o in declared]
    known = {o["office_id"] for o in listed}
    extra = sorted({o for o in office_of.values() if o is not None and o not in known})
    return listed + [{"office_id": o, "name": o} for o in extra]


def figures(part: EventRows) -> dict[str, int]:
    """One office's line: registrations, approvals, meetings requested / held, feedback
    responses and agreements, read from the report built on its share."""
    built = part.report()
    return {
        "registrations": len(part.registrations),
        "approved": sum(r["status"] == "approved" for r in part.registrations),
        "meetings_requested": sum(built["meetings"]["funnel"]["requested"].values()),
        "meetings_held": built["meetings"]["held"],
        "feedback_responses": built["feedback"]["responses"],
        "agreements": built["outcomes"]["agreements"],
    }


def by_office(
    rows: EventRows, declared: Sequence[Row], office_of: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """The figures of every office of the event, then of participants without one (if any)."""
    lines: list[dict[str, Any]] = [
        {**office, **figures(share(rows, office_of, office["office_id"]))}
        for office in offices_of(declared, office_of)
    ]
    registered = {r["registration_id"] for r in rows.registrations}
    if any(office_of.get(rid) is None for rid in registered):
        # Unassigned participants: the share of a key no office has.
        alone = {rid: office_of.get(rid) or UNASSIGNED for rid in registered}
        lines.append(
            {
                "office_id": None,
                "name": UNASSIGNED,
                **figures(share(rows, alone, UNASSIGNED)),
            }
        )
    return lines
