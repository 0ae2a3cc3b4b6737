"""Meeting requests' rules, on the pure domain: no database, no broker, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.matching import domain
from services.matching.domain import (
    Actor,
    EventRules,
    MeetingRequest,
    Participant,
    Status,
)
from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    CancelledBy,
    MeetingAccepted,
    MeetingCancelled,
    MeetingDeclined,
    MeetingMode,
    MeetingRequested,
    MeetingRequestExpired,
)
from shared.contracts.registration import Attendance, MeetingType, OrganisationType
from shared.errors import RuleViolation

NOW = datetime(2015, 4, 1, 9, 0, tzinfo=UTC)
C, B, R, OTHER = (
    OrganisationType.CLUSTER,
    OrganisationType.BUSINESS,
    OrganisationType.RESEARCH,
    OrganisationType.OTHER,
)


def event(**changes: Any) -> EventRules:
    fields: dict[str, Any] = dict(
        event_id="e1",
        organiser_id="org1",
        meeting_types=frozenset(MeetingType),
        max_meetings_per_participant=None,
        request_expiry_hours=48,
    )
    return EventRules(**{**fields, **changes})


def participant(ident: str, **changes: Any) -> Participant:
    fields: dict[str, Any] = dict(
        registration_id=ident,
        event_id="e1",
        name=f"Org {ident}",
        organisation_type=C,
        attendance=Attendance.ON_SITE,
        status="approved",
    )
    return Participant(**{**fields, **changes})


A, Bp = participant("a"), participant("b")


def rebuild(*events: EventPayload) -> MeetingRequest:
    request = MeetingRequest()
    for e in events:
        request.apply(e)
    return request


def pending(requester: Participant = A, recipient: Participant = Bp, **kw: Any) -> MeetingRequest:
    decision = domain.request_meeting(
        kw.pop("rules", event()),
        requester,
        recipient,
        request_id=kw.pop("request_id", "r1"),
        message="hello",
        open_request=None,
        accepted={},
        now=NOW,
    )
    return rebuild(*decision.events)


def violation(call: Any) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        call()
    return caught.value


# -- derived facts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (C, C, MeetingType.CLUSTER2CLUSTER),
        (C, B, MeetingType.BUSINESS2CLUSTER),
        (B, C, MeetingType.BUSINESS2CLUSTER),
        (R, C, MeetingType.BUSINESS2CLUSTER),
        (C, OTHER, MeetingType.BUSINESS2CLUSTER),
        (B, B, MeetingType.BUSINESS2BUSINESS),
        (B, R, MeetingType.BUSINESS2BUSINESS),
        (R, OTHER, MeetingType.BUSINESS2BUSINESS),
        (OTHER, OTHER, MeetingType.BUSINESS2BUSINESS),
    ],
)
def test_meeting_type_follows_the_organisation_types(
    a: OrganisationType, b: OrganisationType, expected: MeetingType
) -> None:
    assert domain.meeting_type_for(a, b) == expected


def test_mode_is_onsite_only_when_both_are_on_site() -> None:
    on, off = Attendance.ON_SITE, Attendance.REMOTE
    assert domain.mode_for(on, on) == MeetingMode.ONSITE
    assert domain.mode_for(on, off) == MeetingMode.ONLINE
    assert domain.mode_for(off, on) == MeetingMode.ONLINE
    assert domain.mode_for(off, off) == MeetingMode.ONLINE


# -- requesting ---------------------------------------------------------------------


def test_a_request_is_pending_with_its_type_and_expiry() -> None:
    decision = domain.request_meeting(
        event(request_expiry_hours=24),
        A,
        participant("b", organisation_type=B),
        request_id="r1",
        message="hi",
        open_request=None,
        accepted={},
        now=NOW,
    )
    assert decision.request_id == "r1" and decision.expected_version == 0
    [requested] = decision.events
    assert isinstance(requested, MeetingRequested)
    assert requested.meeting_type == MeetingType.BUSINESS2CLUSTER
    assert requested.expires_at == NOW + timedelta(hours=24)
    assert (requested.requester_id, requested.recipient_id) == ("a", "b")
    assert rebuild(requested).status == Status.PENDING


def _request(requester: Participant, recipient: Participant, **kw: Any) -> Any:
    return lambda: domain.request_meeting(
        kw.get("rules", event()),
        requester,
        recipient,
        request_id="r9",
        message=None,
        open_request=kw.get("open_request"),
        accepted=kw.get("accepted", {}),
        now=NOW,
    )


@pytest.mark.parametrize(
    ("requester", "recipient", "field", "status"),
    [
        (A, participant("a"), "recipient_id", 422),
        (A, participant("b", status="pending"), "recipient_id", 409),
        (A, participant("b", status="withdrawn"), "recipient_id", 409),
        (participant("a", status="rejected"), Bp, "requester_id", 409),
        (A, participant("b", event_id="e2"), "recipient_id", 422),
    ],
)
def test_both_must_be_different_approved_participants_of_the_event(
    requester: Participant, recipient: Participant, field: str, status: int
) -> None:
    refused = violation(_request(requester, recipient))
    assert (refused.field, refused.status) == (field, status)


def test_the_meeting_type_must_be_offered_by_the_event() -> None:
    rules = event(meeting_types=frozenset({MeetingType.CLUSTER2CLUSTER}))
    refused = violation(_request(A, participant("b", organisation_type=B), rules=rules))
    assert refused.field == "meeting_type" and "Business2Cluster" in refused.reason
    assert _request(A, Bp, rules=rules)().events


def test_no_second_open_request_for_a_pair_either_way() -> None:
    open_request = pending()  # a -> b, pending
    again = violation(_request(A, Bp, open_request=open_request))
    assert (again.field, again.status) == ("recipient_id", 409)
    met = rebuild(*open_request_events(), accepted_event(open_request))
    for requester, recipient in ((A, Bp), (Bp, A)):
        refused = violation(_request(requester, recipient, open_request=met))
        assert (refused.field, refused.status) == ("recipient_id", 409)
        assert "accepted meeting" in refused.reason


def open_request_events() -> list[EventPayload]:
    return list(
        domain.request_meeting(
            event(), A, Bp, request_id="r1", message=None, open_request=None, accepted={}, now=NOW
        ).events
    )


def accepted_event(request: MeetingRequest) -> MeetingAccepted:
    return domain.accept(request, event(), A, Bp, by="b", accepted={}, now=NOW)


def test_opposite_requests_become_one_accepted_meeting() -> None:
    first = pending()  # a -> b
    decision = domain.request_meeting(
        event(),
        Bp,
        A,  # b asks a in turn
        request_id="r2",
        message="let's meet",
        open_request=first,
        accepted={},
        now=NOW + timedelta(hours=1),
    )
    assert decision.request_id == "r1" and decision.expected_version == first.version
    [accepted] = decision.events
    assert isinstance(accepted, MeetingAccepted)
    assert accepted.mutual and accepted.accepted_by == "b"
    assert (accepted.requester_id, accepted.recipient_id) == ("a", "b")
    assert [p.registration_id for p in accepted.participants] == ["a", "b"]


def test_opposite_request_still_respects_caps() -> None:
    rules = event(max_meetings_per_participant=1)
    refused = violation(_request(Bp, A, rules=rules, open_request=pending(), accepted={"a": 1}))
    assert refused.field == "max_meetings_per_participant" and refused.status == 409


def test_a_request_to_or_from_a_full_participant_is_refused() -> None:
    rules = event(max_meetings_per_participant=2)
    for full in ("a", "b"):
        refused = violation(_request(A, Bp, rules=rules, accepted={full: 2}))
        assert refused.field == "max_meetings_per_participant" and full in refused.reason
    assert _request(A, Bp, rules=rules, accepted={"a": 1, "b": 1})().events


# -- answering ----------------------------------------------------------------------


def test_the_recipient_accepts_and_the_meeting_carries_what_scheduling_needs() -> None:
    requester = participant("a", organisation_type=B, attendance=Attendance.REMOTE)
    request = pending(requester, Bp)
    accepted = domain.accept(request, event(), requester, Bp, by="b", accepted={}, now=NOW)
    assert accepted.meeting_type == MeetingType.BUSINESS2CLUSTER
    assert accepted.mode == MeetingMode.ONLINE
    assert [
        (p.registration_id, p.attendance, p.organisation_type) for p in accepted.participants
    ] == [
        ("a", Attendance.REMOTE, B),
        ("b", Attendance.ON_SITE, C),
    ]
    assert not accepted.arranged_by_organiser and accepted.accepted_by == "b"
    request.apply(accepted)
    assert request.status == Status.ACCEPTED


@pytest.mark.parametrize("who", ["a", "c", ""])
def test_only_the_recipient_accepts_or_declines(who: str) -> None:
    request = pending()
    for refused in (
        violation(lambda: domain.accept(request, event(), A, Bp, by=who, accepted={}, now=NOW)),
        violation(lambda: domain.decline(request, by=who, reason=None, now=NOW)),
    ):
        assert (refused.field, refused.status) == ("recipient_id", 403)


def test_accept_respects_the_cap_on_either_side() -> None:
    rules = event(max_meetings_per_participant=3)
    request = pending()
    for counts in ({"a": 3}, {"b": 3}):
        refused = violation(
            lambda counts=counts: domain.accept(
                request, rules, A, Bp, by="b", accepted=counts, now=NOW
            )
        )
        assert refused.field == "max_meetings_per_participant"
    assert domain.accept(request, rules, A, Bp, by="b", accepted={"a": 2, "b": 2}, now=NOW)


def test_accept_needs_both_still_approved() -> None:
    request = pending()
    gone = participant("a", status="withdrawn")
    refused = violation(
        lambda: domain.accept(request, event(), gone, Bp, by="b", accepted={}, now=NOW)
    )
    assert refused.field == "requester_id"


def test_only_pending_requests_are_answered() -> None:
    request = pending()
    request.apply(domain.decline(request, by="b", reason="no time", now=NOW))
    assert request.status == Status.DECLINED
    for call in (
        lambda: domain.accept(request, event(), A, Bp, by="b", accepted={}, now=NOW),
        lambda: domain.decline(request, by="b", reason=None, now=NOW),
    ):
        refused = violation(call)
        assert (refused.field, refused.status) == ("status", 409)


def test_a_due_request_can_no_longer_be_answered() -> None:
    request = pending()
    later = NOW + timedelta(hours=48)
    refused = violation(
        lambda: domain.accept(request, event(), A, Bp, by="b", accepted={}, now=later)
    )
    assert (refused.field, refused.status) == ("expires_at", 409)


def test_decline_carries_the_reason() -> None:
    declined = domain.decline(pending(), by="b", reason="not our field", now=NOW)
    assert isinstance(declined, MeetingDeclined) and declined.reason == "not our field"


# -- cancelling -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "actor",
    [
        Actor(CancelledBy.PARTICIPANT, "a"),
        Actor(CancelledBy.PARTICIPANT, "b"),
        Actor(CancelledBy.ORGANISER, "org1"),
        Actor(CancelledBy.ADMIN, "admin"),
        Actor(CancelledBy.SYSTEM, "matching"),
    ],
)
def test_either_side_or_the_organiser_cancels_pending_or_accepted(actor: Actor) -> None:
    for accept_first in (False, True):
        request = pending()
        if accept_first:
            request.apply(accepted_event(request))
        cancelled = domain.cancel(request, by=actor, organiser_id="org1", reason="sorry")
        assert isinstance(cancelled, MeetingCancelled)
        assert cancelled.was_accepted is accept_first
        assert (cancelled.cancelled_by, cancelled.cancelled_by_role) == (actor.id, actor.role)


@pytest.mark.parametrize(
    "actor", [Actor(CancelledBy.PARTICIPANT, "c"), Actor(CancelledBy.ORGANISER, "org2")]
)
def test_others_do_not_cancel(actor: Actor) -> None:
    refused = violation(
        lambda: domain.cancel(pending(), by=actor, organiser_id="org1", reason=None)
    )
    assert refused.status == 403


def test_closed_requests_are_not_cancelled() -> None:
    request = pending()
    request.apply(
        domain.cancel(
            request, by=Actor(CancelledBy.PARTICIPANT, "a"), organiser_id=None, reason=None
        )
    )
    refused = violation(
        lambda: domain.cancel(
            request, by=Actor(CancelledBy.PARTICIPANT, "a"), organiser_id=None, reason=None
        )
    )
    assert (refused.field, refused.status) == ("status", 409)


# -- expiry ---------------------------------------------------------------------------


def test_expiry_only_of_due_pending_requests() -> None:
    request = pending()
    assert request.expires_at == NOW + timedelta(hours=48)
    assert domain.expire(request, NOW + timedelta(hours=47, minutes=59)) is None
    due = NOW + timedelta(hours=48)
    expired = domain.expire(request, due)
    assert isinstance(expired, MeetingRequestExpired) and expired.expired_at == due
    request.apply(expired)
    assert request.status == Status.EXPIRED
    assert domain.expire(request, due + timedelta(days=1)) is None
    answered = pending()
    answered.apply(accepted_event(answered))
    assert domain.expire(answered, due) is None


def test_an_expired_request_in_the_other_direction_is_not_turned_into_a_meeting() -> None:
    first = pending()
    later = NOW + timedelta(hours=49)
    # Not swept yet, but due: b's request is a new request, not an acceptance.
    with pytest.raises(RuleViolation) as refused:
        domain.request_meeting(
            event(),
            Bp,
            A,
            request_id="r2",
            message=None,
            open_request=first,
            accepted={},
            now=later,
        )
    assert refused.value.field == "recipient_id"  # the handler expires it first, then asks again
    decision = domain.request_meeting(
        event(), Bp, A, request_id="r2", message=None, open_request=None, accepted={}, now=later
    )
    assert isinstance(decision.events[0], MeetingRequested)


# -- organisers' meetings ---------------------------------------------------------------


def test_an_organiser_arranges_a_meeting_accepted_at_once() -> None:
    remote = participant("b", attendance=Attendance.REMOTE)
    decision = domain.arrange(
        event(), A, remote, organiser_id="org1", request_id="m1", open_request=None, accepted={}
    )
    [meeting] = decision.events
    assert isinstance(meeting, MeetingAccepted)
    assert decision.expected_version == 0 and meeting.request_id == "m1"
    assert meeting.arranged_by_organiser and meeting.accepted_by == "org1"
    assert meeting.mode == MeetingMode.ONLINE
    request = rebuild(meeting)
    assert request.status == Status.ACCEPTED and request.parties == ("a", "b")


def test_arranging_over_a_pending_request_accepts_it() -> None:
    first = pending()  # a -> b
    decision = domain.arrange(
        event(), Bp, A, organiser_id="org1", request_id="m1", open_request=first, accepted={}
    )
    assert decision.request_id == "r1"
    [meeting] = decision.events
    assert isinstance(meeting, MeetingAccepted)
    assert (meeting.requester_id, meeting.recipient_id) == ("a", "b")


def _arrange(first: Participant, second: Participant, **kw: Any) -> Any:
    return lambda: domain.arrange(
        kw.get("rules", event()),
        first,
        second,
        organiser_id="o",
        request_id="m",
        open_request=kw.get("open_request"),
        accepted=kw.get("accepted", {}),
    )


def test_arranging_follows_the_same_rules() -> None:
    capped = event(max_meetings_per_participant=1)
    met = rebuild(*open_request_events(), accepted_event(pending()))
    waitlisted = participant("b", status="waitlisted")
    cases = [
        (_arrange(A, A), "participants[1]"),
        (_arrange(A, waitlisted), "participants[1]"),
        (_arrange(A, Bp, rules=capped, accepted={"b": 1}), "max_meetings_per_participant"),
        (_arrange(A, Bp, open_request=met), "participants"),
    ]
    for call, field in cases:
        assert violation(call).field == field


def test_requests_rebuild_from_their_events() -> None:
    request = pending()
    assert request.version == 1 and request.history == ["MeetingRequested"]
    request.apply(accepted_event(request))
    request.apply(
        domain.cancel(
            request, by=Actor(CancelledBy.PARTICIPANT, "b"), organiser_id=None, reason="ill"
        )
    )
    assert request.history == ["MeetingRequested", "MeetingAccepted", "MeetingCancelled"]
    assert request.status == Status.CANCELLED and request.version == 3
    assert replace(A, status="withdrawn").status == "withdrawn"
