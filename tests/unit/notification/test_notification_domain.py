"""Notification's pure rules: who hears of what, calendar UID/SEQUENCE, identities, timers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.notification import domain
from services.notification.domain import Kind, Meeting, Method
from shared.contracts.matching import (
    CancelledBy,
    MeetingAccepted,
    MeetingCancelled,
    MeetingDeclined,
    MeetingMode,
    MeetingParty,
    MeetingRequested,
    MeetingRequestExpired,
)
from shared.contracts.registration import (
    Attendance,
    MeetingType,
    OrganisationType,
    RegistrationApproved,
    RegistrationWithdrawn,
)
from shared.contracts.scheduling import AgendaPublished, ReleaseReason, SlotAssigned, SlotReleased

EVENT, A, B, M = "ev-1", "reg-a", "reg-b", "req-1"
T0 = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)
AT = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def assigned(start: datetime = T0, table: int | None = 4) -> SlotAssigned:
    return SlotAssigned(
        meeting_id=M,
        event_id=EVENT,
        participants=[A, B],
        slot_start=start,
        slot_end=start + timedelta(minutes=30),
        table=table,
        mode=MeetingMode.ONSITE,
    )


def released(reason: ReleaseReason) -> SlotReleased:
    return SlotReleased(meeting_id=M, event_id=EVENT, participants=[A, B], reason=reason)


def cancelled(*, was_accepted: bool = True, by: str = A) -> MeetingCancelled:
    return MeetingCancelled(
        request_id=M,
        event_id=EVENT,
        requester_id=A,
        recipient_id=B,
        cancelled_by=by,
        cancelled_by_role=CancelledBy.PARTICIPANT,
        was_accepted=was_accepted,
    )


def party(rid: str) -> MeetingParty:
    return MeetingParty(
        registration_id=rid,
        name=rid,
        organisation_type=OrganisationType.CLUSTER,
        attendance=Attendance.ON_SITE,
    )


def accepted(*, arranged_by_organiser: bool = False) -> MeetingAccepted:
    return MeetingAccepted(
        request_id=M,
        event_id=EVENT,
        requester_id=A,
        recipient_id=B,
        meeting_type=MeetingType.CLUSTER2CLUSTER,
        mode=MeetingMode.ONSITE,
        participants=[party(A), party(B)],
        accepted_by=B,
        arranged_by_organiser=arranged_by_organiser,
    )


# -- who hears of what ---------------------------------------------------------


def test_application_decisions_go_to_the_registration() -> None:
    notice = domain.notice_for(RegistrationApproved(registration_id=A, event_id=EVENT))
    assert notice is not None
    assert (notice.kind, notice.recipients) == (Kind.APPLICATION_APPROVED, (A,))
    assert domain.notice_for(RegistrationWithdrawn(registration_id=A, event_id=EVENT)) is None


def test_meeting_request_lifecycle_recipients() -> None:
    requested = MeetingRequested(
        request_id=M,
        event_id=EVENT,
        requester_id=A,
        recipient_id=B,
        meeting_type=MeetingType.CLUSTER2CLUSTER,
        expires_at=AT,
    )
    declined = MeetingDeclined(request_id=M, event_id=EVENT, requester_id=A, recipient_id=B)
    expired = MeetingRequestExpired(
        request_id=M, event_id=EVENT, requester_id=A, recipient_id=B, expired_at=AT
    )
    got = {
        n.kind: n.recipients
        for n in map(domain.notice_for, [requested, accepted(), declined, expired])
        if n is not None
    }
    assert got == {
        Kind.REQUEST_RECEIVED: (B,),
        Kind.REQUEST_ACCEPTED: (A,),
        Kind.REQUEST_DECLINED: (A,),
        Kind.REQUEST_EXPIRED: (A,),
    }
    arranged = domain.notice_for(accepted(arranged_by_organiser=True))
    assert arranged is not None and arranged.recipients == (A, B)


def test_a_withdrawn_pending_request_is_told_to_the_other_side_only() -> None:
    _, notice = domain.meeting_cancelled(None, cancelled(was_accepted=False, by=A), AT)
    assert (notice.kind, notice.recipients, notice.calendar) == (
        Kind.REQUEST_CANCELLED,
        (B,),
        None,
    )


def test_agenda_published_goes_to_every_approved_participant() -> None:
    e = AgendaPublished(event_id=EVENT, published_at=AT)
    notice = domain.agenda_published(e, (A, B))
    assert (notice.kind, notice.recipients) == (Kind.AGENDA_PUBLISHED, (A, B))


# -- calendar entries: one UID, rising SEQUENCE, REQUEST then CANCEL -----------------


def test_a_delivery_context_names_no_recipients_but_a_webhooks_does() -> None:
    # Each e-mail delivery has its own recipient; a list in every delivery's context
    # grew with the square of the audience (an agenda published to everyone).
    notice = domain.Notice(Kind.AGENDA_PUBLISHED, "ev", (A, B), {"published_at": "t"})
    assert "recipients" not in notice.context()
    assert notice.webhook_context() == {**notice.context(), "recipients": [A, B]}


def test_placed_moved_cancelled_update_one_entry() -> None:
    meeting, placed = domain.slot_assigned(None, assigned(), AT)
    assert placed is not None and placed.calendar is not None
    assert placed.kind is Kind.MEETING_PLACED and placed.recipients == (A, B)
    assert (placed.calendar.method, placed.calendar.sequence) == (Method.REQUEST, 0)

    same, repeat = domain.slot_assigned(meeting, assigned(), AT)
    assert repeat is None and same == meeting

    meeting, moved = domain.slot_assigned(meeting, assigned(T0 + timedelta(hours=1)), AT)
    assert moved is not None and moved.calendar is not None
    assert moved.kind is Kind.MEETING_MOVED
    assert (moved.calendar.method, moved.calendar.sequence) == (Method.REQUEST, 1)
    assert moved.facts["previous"]["start"] == T0.isoformat()

    meeting, gone = domain.meeting_cancelled(meeting, cancelled(), AT)
    assert gone.kind is Kind.MEETING_CANCELLED and gone.recipients == (A, B)
    assert gone.calendar is not None
    assert (gone.calendar.method, gone.calendar.sequence) == (Method.CANCEL, 2)
    assert gone.calendar.start == T0 + timedelta(hours=1)
    uids = {n.calendar.uid for n in (placed, moved, gone) if n.calendar}
    assert uids == {domain.meeting_uid(M)}

    _, late = domain.slot_assigned(meeting, assigned(), AT)
    assert late is None, "a cancelled meeting is never placed again"


def test_a_table_change_is_a_move() -> None:
    meeting, _ = domain.slot_assigned(None, assigned(table=1), AT)
    _, moved = domain.slot_assigned(meeting, assigned(table=2), AT)
    assert moved is not None and moved.kind is Kind.MEETING_MOVED


def test_release_for_cancellation_leaves_the_cancel_to_matchings_event() -> None:
    meeting, _ = domain.slot_assigned(None, assigned(), AT)
    meeting, notice = domain.slot_released(meeting, released(ReleaseReason.MEETING_CANCELLED), AT)
    assert notice is None and not meeting.placed and meeting.live
    meeting, gone = domain.meeting_cancelled(meeting, cancelled(), AT)
    assert gone.calendar is not None and gone.calendar.method is Method.CANCEL
    assert gone.calendar.sequence == 1


def test_release_for_other_reasons_cancels_and_a_new_placement_requests_again() -> None:
    meeting, _ = domain.slot_assigned(None, assigned(), AT)
    meeting, notice = domain.slot_released(meeting, released(ReleaseReason.REOPTIMISED), AT)
    assert notice is not None and notice.kind is Kind.MEETING_RELEASED
    assert notice.calendar is not None and notice.calendar.method is Method.CANCEL
    assert notice.calendar.sequence == 1
    assert domain.slot_released(meeting, released(ReleaseReason.REOPTIMISED), AT)[1] is None
    meeting, again = domain.slot_assigned(meeting, assigned(), AT)
    assert again is not None and again.kind is Kind.MEETING_PLACED
    assert again.calendar is not None and again.calendar.sequence == 2


def test_cancelling_a_meeting_never_placed_carries_no_calendar_entry() -> None:
    meeting, notice = domain.meeting_cancelled(None, cancelled(), AT)
    assert notice.calendar is None and meeting.cancelled


def test_calendar_entry_survives_its_json_form() -> None:
    _, notice = domain.slot_assigned(Meeting(M, EVENT, (A, B)), assigned(), AT)
    assert notice is not None and notice.calendar is not None
    assert domain.CalendarEntry.from_json(notice.calendar.to_json()) == notice.calendar


# -- identities, timers, links --------------------------------------------------------


def test_delivery_identities_are_derived_from_the_dedupe_key() -> None:
    key = domain.dedupe_key("/services/matching#e1", A, "email", "meeting.placed")
    other = domain.dedupe_key("/services/matching#e1", B, "email", "meeting.placed")
    assert domain.delivery_id(key) == domain.delivery_id(key) != domain.delivery_id(other)
    uuid.UUID(domain.delivery_id(key))
    mid = domain.message_id(key, "example.org")
    assert mid == domain.message_id(key, "example.org")
    assert mid.startswith("<") and mid.endswith("@example.org>")
    assert mid != domain.message_id(other, "example.org")


def test_a_delivery_id_is_the_uuid5_of_its_dedupe_key_in_the_namespace() -> None:
    """Ids of deliveries queued before stay the ids of their keys (the dedupe)."""
    keys = [
        domain.dedupe_key(f"/services/matching#{n}", f"r{n}", "email", "meeting.placed")
        for n in range(2000)
    ]
    keys += ["", "ä|ß|€|🙂", "x" * 5000]
    for key in keys:
        assert domain.delivery_id(key) == str(uuid.uuid5(domain._NAMESPACE, key))
    # A fixed vector, so that the namespace itself cannot change unnoticed.
    assert domain.delivery_id("a|b|email|c") == "573dfddd-4a8f-53dc-ae48-7c57fcb7d783"


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [domain.backoff(n, 0.5) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert domain.backoff(40, 30) == 3600


def test_reminder_and_digest_times() -> None:
    assert domain.reminder_due(T0, 60) == T0 - timedelta(hours=1)
    # 07:30 in Berlin (summer time, UTC+2) -> 08:00 the same day; 09:00 -> the next day.
    early = datetime(2026, 4, 14, 5, 30, tzinfo=UTC)
    assert domain.next_digest_at(early, "Europe/Berlin", 8) == datetime(
        2026, 4, 14, 6, 0, tzinfo=UTC
    )
    late = datetime(2026, 4, 14, 7, 0, tzinfo=UTC)
    assert domain.next_digest_at(late, "Europe/Berlin", 8) == datetime(
        2026, 4, 15, 6, 0, tzinfo=UTC
    )


def test_preferences_filter_kinds() -> None:
    assert domain.wants(Kind.MEETING_PLACED, frozenset(), False)
    assert not domain.wants(Kind.MEETING_PLACED, frozenset({"meeting.placed"}), False)
    assert not domain.wants(Kind.MEETING_PLACED, frozenset(), True)


def _fold(events: list[object]) -> domain.Meeting | None:
    meeting: domain.Meeting | None = None
    for e in events:
        if isinstance(e, SlotAssigned):
            meeting, _ = domain.slot_assigned(meeting, e, AT)
        elif isinstance(e, SlotReleased):
            meeting, _ = domain.slot_released(meeting, e, AT)
        else:
            assert isinstance(e, MeetingCancelled)
            meeting, _ = domain.meeting_cancelled(meeting, e, AT)
    return meeting


@pytest.mark.parametrize(
    "scheduling",
    [
        [assigned()],
        [assigned(), assigned(T0 + timedelta(hours=1))],
        [assigned(), released(ReleaseReason.MEETING_CANCELLED)],
        [assigned(), released(ReleaseReason.REOPTIMISED), assigned(table=7)],
        [assigned(), assigned(table=2), released(ReleaseReason.MEETING_CANCELLED)],
    ],
)
def test_the_cancellation_from_another_topic_leaves_the_same_row_wherever_it_falls(
    scheduling: list[object],
) -> None:
    """Matching's cancellation and scheduling's events (in their own order) interleaved
    every way the two topics allow: one row, cancelled, with scheduling's last facts."""
    rows = {
        position: _fold([*scheduling[:position], cancelled(), *scheduling[position:]])
        for position in range(len(scheduling) + 1)
    }
    first = rows[0]
    assert first is not None and first.cancelled and not first.live and first.sequence == -1
    assert all(row == first for row in rows.values()), rows
    assert first.placed == isinstance(scheduling[-1], SlotAssigned)


def test_an_agenda_to_many_gives_each_email_its_recipient_and_each_webhook_the_list() -> None:
    from services.notification import handlers
    from shared.envelope import Envelope

    everyone = tuple(str(uuid.uuid4()) for _ in range(50))
    notice = domain.Notice(Kind.AGENDA_PUBLISHED, "ev", everyone, {"published_at": "t"})
    look = handlers.Lookups({}, {}, {"ev": [("hook-1", [Kind.AGENDA_PUBLISHED.value])]})
    config = handlers.Config("x.org", 15, 8)
    emails = handlers._emails(config, "cause", notice, look)
    assert [e.recipient for e in emails] == list(everyone)
    assert all("recipients" not in e.context for e in emails)
    envelope = Envelope(id="e1", source="/s", type="t", key="ev", data={})
    (hook,) = handlers._webhooks("cause", notice, envelope, look)
    assert hook.context["recipients"] == list(everyone)
