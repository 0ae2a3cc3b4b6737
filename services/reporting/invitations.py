"""Who is invited to rate which meetings in a round of feedback invitations (pure).

A meeting is to be rated by a side when it is held as far as anyone has said
(agreed, not cancelled, placed, not marked not held by the organiser), its slot
has ended, and that side has not rated it yet. A side that rated every meeting
is left out, so a later round reminds only those who still owe a rating.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.contracts.reporting import InvitedParticipant, MeetingToRate

Row = Mapping[str, Any]


def held_and_ended(meetings: Iterable[Row], now: datetime) -> list[Row]:
    """Rows of placed, uncancelled meetings not marked not held (the caller's query) that ended."""
    return [m for m in meetings if m["slot_end"] is not None and m["slot_end"] <= now]


def invitations(
    held: Iterable[Row],
    names: Mapping[str, str],
    rated: Collection[tuple[str, str]],
    feedback_url: Callable[[str], str],
) -> list[InvitedParticipant]:
    """Per participant (by registration id), its meetings to rate in slot order.

    `rated` holds (meeting id, registration id) pairs that have feedback already.
    """
    by_side: dict[str, list[MeetingToRate]] = {}
    for m in sorted(held, key=lambda r: (r["slot_start"], r["meeting_id"])):
        sides = list(m["participants"])
        for side in sides:
            if (m["meeting_id"], side) in rated:
                continue
            partner = next((p for p in sides if p != side), "")
            by_side.setdefault(side, []).append(
                MeetingToRate(
                    meeting_id=m["meeting_id"],
                    partner_id=partner,
                    partner_name=names.get(partner, "another participant"),
                    slot_start=m["slot_start"],
                    slot_end=m["slot_end"],
                    feedback_url=feedback_url(m["meeting_id"]),
                )
            )
    return [InvitedParticipant(registration_id=r, meetings=by_side[r]) for r in sorted(by_side)]
