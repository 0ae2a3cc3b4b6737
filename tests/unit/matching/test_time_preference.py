"""A requester's time preference in matching: the request carries it to the accepted
meeting (which scheduling reads), and the request body refuses a malformed one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.matching import domain
from services.matching.api import NewMeetingRequest
from shared.contracts.matching import MeetingAccepted, MeetingRequested, PartOfDay, TimePreference
from tests.unit.matching.test_meeting_domain import NOW, A, Bp, event, rebuild

AM = TimePreference(part_of_day=PartOfDay.MORNING)
PM = TimePreference(part_of_day=PartOfDay.AFTERNOON, day=2)


def _ask(requester: Any, recipient: Any, preference: Any, **kw: Any) -> domain.Decision:
    return domain.request_meeting(
        event(),
        requester,
        recipient,
        request_id=kw.pop("request_id", "r1"),
        message=None,
        open_request=kw.pop("open_request", None),
        time_preference=preference,
        accepted={},
        now=NOW,
    )


def test_the_request_carries_the_preference_to_the_accepted_meeting() -> None:
    [requested] = _ask(A, Bp, AM).events
    assert isinstance(requested, MeetingRequested) and requested.time_preference == AM
    request = rebuild(requested)
    assert request.time_preference == AM
    accepted = domain.accept(request, event(), A, Bp, by="b", accepted={}, now=NOW)
    assert accepted.time_preference == AM


def test_an_empty_preference_is_none() -> None:
    [requested] = _ask(A, Bp, TimePreference()).events
    assert isinstance(requested, MeetingRequested) and requested.time_preference is None


@pytest.mark.parametrize(("standing", "second", "kept"), [(AM, PM, AM), (None, PM, PM)])
def test_opposite_requests_keep_the_standing_preference_else_the_new_one(
    standing: TimePreference | None, second: TimePreference, kept: TimePreference
) -> None:
    first = rebuild(*_ask(A, Bp, standing).events)
    [meeting] = _ask(Bp, A, second, request_id="r2", open_request=first).events
    assert isinstance(meeting, MeetingAccepted) and meeting.mutual
    assert meeting.time_preference == kept


def test_an_arranged_meeting_has_no_preference() -> None:
    [meeting] = domain.arrange(
        event(), A, Bp, request_id="r9", organiser_id="org1", open_request=None, accepted={}
    ).events
    assert isinstance(meeting, MeetingAccepted) and meeting.time_preference is None


@pytest.mark.parametrize(
    ("preference", "where"),
    [
        ({}, ("time_preference",)),
        ({"part_of_day": "evening"}, ("time_preference", "part_of_day")),
        ({"day": 0}, ("time_preference", "day")),
        ({"slots": []}, ("time_preference", "slots")),
        ({"slots": ["d1-s1-01; drop"]}, ("time_preference", "slots", 0)),
        ({"day": 1, "hour": 9}, ("time_preference", "hour")),
    ],
)
def test_the_body_refuses_a_malformed_preference(
    preference: dict[str, Any], where: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        NewMeetingRequest.model_validate({"recipient_id": "b", "time_preference": preference})
    assert [tuple(e["loc"]) for e in caught.value.errors()] == [where]


def test_the_body_turns_into_the_contract() -> None:
    body = NewMeetingRequest.model_validate(
        {
            "recipient_id": "b",
            "time_preference": {"day": 1, "slots": ["d1-s1-02", "d1-s1-01", "d1-s1-02"]},
        }
    )
    assert body.time_preference is not None
    assert body.time_preference.contract() == TimePreference(day=1, slots=["d1-s1-02", "d1-s1-01"])
