"""A support office's co-organisers hear of the participants registering for their office."""

from __future__ import annotations

from services.notification import domain
from services.notification.domain import IMMEDIATE_KINDS, WEBHOOK_KINDS, Kind
from services.notification.templates import EventInfo, RenderInput, render
from shared.contracts.notification import Channel
from shared.contracts.registration import AssignedBy, ParticipantAssignedToSupportOffice


def assignment(by: AssignedBy) -> ParticipantAssignedToSupportOffice:
    return ParticipantAssignedToSupportOffice(
        registration_id="reg-1", event_id="ev-1", office_id="de-ns", assigned_by=by
    )


def test_an_assignment_at_registration_is_announced_to_the_offices_co_organisers() -> None:
    for by in (AssignedBy.PARTICIPANT, AssignedBy.COUNTRY_RULE):
        notice = domain.office_registration(assignment(by), "Optics Valley", ("co-1", "co-2"))
        assert notice is not None
        assert (notice.kind, notice.event_id, notice.recipients) == (
            Kind.OFFICE_REGISTRATION,
            "ev-1",
            ("co-1", "co-2"),
        )
        assert notice.facts == {
            "registration_id": "reg-1",
            "organisation": "Optics Valley",
            "office_id": "de-ns",
            "assigned_by": by.value,
        }


def test_a_reassignment_or_an_office_without_co_organisers_sends_nothing() -> None:
    assert domain.office_registration(assignment(AssignedBy.ORGANISER), "X", ("co-1",)) is None
    assert domain.office_registration(assignment(AssignedBy.PARTICIPANT), "X", ()) is None


def test_one_delivery_per_co_organiser_and_cause() -> None:
    keys = {
        domain.dedupe_key("registration#e1", co, Channel.EMAIL, Kind.OFFICE_REGISTRATION)
        for co in ("co-1", "co-2", "co-1")
    }
    assert len({domain.delivery_id(k) for k in keys}) == 2
    assert Kind.OFFICE_REGISTRATION not in WEBHOOK_KINDS | IMMEDIATE_KINDS


def test_the_notice_names_the_organisation_and_event_and_has_no_unsubscribe_link() -> None:
    notice = domain.office_registration(
        assignment(AssignedBy.COUNTRY_RULE), "Optics Valley", ("co-1",)
    )
    assert notice is not None
    out = render(
        RenderInput(
            kind=Kind.OFFICE_REGISTRATION,
            recipient_id="co-1",
            recipient_name="EEN Lower Saxony",
            time_zone=None,
            event=EventInfo("ev-1", "Photonics Matchmaking", "Hannover", "Europe/Berlin"),
            facts=notice.facts,
            names={},
            calendar=None,
            unsubscribe_url="",
            feed_url="",
        )
    )
    assert out.subject == "Optics Valley registered for Photonics Matchmaking"
    assert "Dear EEN Lower Saxony," in out.text
    assert "Optics Valley registered for Photonics Matchmaking and belongs to your office." in (
        out.text
    )
    assert "rule for its country" in out.text
    assert "Unsubscribe" not in out.text and "Unsubscribe" not in out.html
