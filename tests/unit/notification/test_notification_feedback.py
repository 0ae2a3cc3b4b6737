"""Feedback invitations: one notice per invited participant, its text, the digest's timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.notification import domain
from services.notification.domain import IMMEDIATE_KINDS, WEBHOOK_KINDS, Kind
from services.notification.templates import EventInfo, RenderInput, render, render_digest
from shared.contracts.reporting import (
    FeedbackInvitationsRequested,
    InvitedParticipant,
    MeetingToRate,
)

START = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)  # 10:00 in Berlin
URL = "https://r.example/api/events/ev-1/meetings/{}/feedback"


def rate(meeting_id: str, partner: str, name: str, hours: int = 0) -> MeetingToRate:
    start = START + timedelta(hours=hours)
    return MeetingToRate(
        meeting_id=meeting_id,
        partner_id=partner,
        partner_name=name,
        slot_start=start,
        slot_end=start + timedelta(minutes=30),
        feedback_url=URL.format(meeting_id),
    )


def requested(round_: int = 1) -> FeedbackInvitationsRequested:
    return FeedbackInvitationsRequested(
        event_id="ev-1",
        round_id=f"round-{round_}",
        round=round_,
        requested_by="org-1",
        event_title="Photonics <Matchmaking>",
        time_zone="Europe/Berlin",
        participants=[
            InvitedParticipant(
                registration_id="a",
                meetings=[rate("m1", "b", "Beta & Co"), rate("m2", "c", "Gamma", hours=2)],
            ),
            InvitedParticipant(registration_id="b", meetings=[rate("m1", "a", "Alpha")]),
            InvitedParticipant(registration_id="d", meetings=[]),
        ],
    )


def test_one_invitation_per_participant_with_its_own_meetings() -> None:
    notices = domain.feedback_invitations(requested())
    assert [(n.kind, n.recipients) for n in notices] == [
        (Kind.FEEDBACK_INVITATION, ("a",)),
        (Kind.FEEDBACK_INVITATION, ("b",)),
    ]
    first = notices[0]
    assert [m["meeting_id"] for m in first.facts["meetings"]] == ["m1", "m2"]
    assert first.facts["meetings"][0] == {
        "meeting_id": "m1",
        "partner_id": "b",
        "partner_name": "Beta & Co",
        "start": START.isoformat(),
        "end": (START + timedelta(minutes=30)).isoformat(),
        "feedback_url": URL.format("m1"),
    }
    assert first.meeting_id is None and first.calendar is None


def test_an_invitation_may_wait_for_the_digest_and_is_no_webhook_kind() -> None:
    assert Kind.FEEDBACK_INVITATION not in IMMEDIATE_KINDS
    assert Kind.FEEDBACK_INVITATION not in WEBHOOK_KINDS


def _input(facts: dict[str, object], own_zone: str | None = None) -> RenderInput:
    return RenderInput(
        kind=Kind.FEEDBACK_INVITATION,
        recipient_id="a",
        recipient_name="Alpha Cluster",
        time_zone=own_zone,
        event=EventInfo("ev-1", "the matchmaking event", "the venue", "UTC"),
        facts=facts,
        names={},
        calendar=None,
        unsubscribe_url="https://n.example/unsubscribe/t",
        feed_url="https://n.example/calendar/f.ics",
    )


def test_the_invitation_lists_partner_and_time_in_both_zones_and_how_to_rate() -> None:
    facts = domain.feedback_invitations(requested())[0].facts
    out = render(_input(facts, "America/New_York"))
    assert out.subject == "How did your meetings at Photonics <Matchmaking> go?"
    assert "rate your 2 meetings" in out.text
    # The round's own zone and title, though this service has not heard of the event.
    assert (
        "Tue 14 Apr 2026, 10:00-10:30 (Europe/Berlin) - 04:00-04:30 your time"
        " (America/New_York): Beta & Co - rate it at " + URL.format("m1")
    ) in out.text
    assert "12:00-12:30 (Europe/Berlin)" in out.text and "Gamma" in out.text
    assert '"cooperation_possible"' in out.text and "X-API-Key" in out.text
    assert "did_not_take_place" in out.text
    assert "Beta &amp; Co" in out.html and "&lt;Matchmaking&gt;" in out.html
    assert "https://n.example/unsubscribe/t" in out.text


def test_a_later_round_says_it_is_a_reminder_and_fits_in_a_digest() -> None:
    facts = domain.feedback_invitations(requested(round_=2))[1].facts
    part = render(_input(facts), standalone=False)
    assert part.subject == "Reminder: how did your meetings at Photonics <Matchmaking> go?"
    assert "rate your 1 meeting there" in part.text and "Alpha" in part.text
    digest = render_digest("Beta Cluster", "Photonics", [part], "https://u")
    assert part.subject in digest.text and digest.subject == "Photonics: 1 update"


def test_the_digest_time_has_minutes() -> None:
    now = datetime(2026, 4, 14, 6, 29, 30, tzinfo=UTC)  # 08:29:30 in Berlin
    assert domain.next_digest_at(now, "Europe/Berlin", 8, 30) == datetime(
        2026, 4, 14, 6, 30, tzinfo=UTC
    )
    assert domain.next_digest_at(now, "Europe/Berlin", 8, 29) == datetime(
        2026, 4, 15, 6, 29, tzinfo=UTC
    )
    # 11:59:30 in Kolkata (UTC+05:30): its noon is half a minute away.
    assert domain.next_digest_at(now, "Asia/Kolkata", 12) == datetime(
        2026, 4, 14, 6, 30, tzinfo=UTC
    )


def test_an_invitation_with_the_portals_links_says_one_click_not_an_api_call() -> None:
    facts = domain.feedback_invitations(requested())[0].facts
    portal = "https://portal.example/events/ev-1/meetings/{}/rate"
    for m in facts["meetings"]:  # as reporting writes them when PORTAL_PUBLIC_URL is set
        m["feedback_url"] = portal.format(m["meeting_id"])
    out = render(_input(facts))
    assert "Beta & Co - rate it at " + portal.format("m1") in out.text
    assert "one click per meeting" in out.text and "X-API-Key" not in out.text
