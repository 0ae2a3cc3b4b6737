"""The access policy, pure: every relation against every action, and the scopes it grants."""

from __future__ import annotations

import pytest

from shared.access.policy import (
    ADMIN,
    RULES,
    Action,
    Denied,
    Principal,
    RegistrationStatus,
    Relation,
    Role,
    Scope,
    Standing,
    Subject,
    decide,
    standing_of,
)

LEAD = Principal(Role.ORGANISER, "org-a")
OTHER_ORGANISER = Principal(Role.ORGANISER, "org-b")
OFFICE_NORTH = Principal(Role.CO_ORGANISER, "co-north")
PARTICIPANT = Principal(Role.ORGANISATION, "reg-1")


def standing(principal: Principal | None, **facts: object) -> Standing:
    base: dict[str, object] = {
        "lead_organiser": "org-a",
        "co_organiser_office": None,
        "own_status": None,
    }
    return standing_of(principal, **{**base, **facts})  # type: ignore[arg-type]


def test_standing_follows_the_event() -> None:
    assert standing(None).relation is Relation.ANONYMOUS
    assert standing(ADMIN).relation is Relation.ADMIN
    assert standing(LEAD).relation is Relation.LEAD_ORGANISER
    assert standing(OTHER_ORGANISER).relation is Relation.ORGANISER_ACCOUNT
    north = standing(OFFICE_NORTH, co_organiser_office="north")
    assert (north.relation, north.office) == (Relation.CO_ORGANISER, "north")
    assert standing(OFFICE_NORTH).relation is Relation.OUTSIDER  # not this event's
    approved = standing(PARTICIPANT, own_status=RegistrationStatus.APPROVED)
    assert (approved.relation, approved.registration_id) == (Relation.PARTICIPANT, "reg-1")
    pending = standing(PARTICIPANT, own_status=RegistrationStatus.PENDING)
    assert pending.relation is Relation.APPLICANT
    assert standing(PARTICIPANT).relation is Relation.OUTSIDER


@pytest.mark.parametrize("action", list(Action))
def test_anonymous_callers_pass_only_public_rules(action: Action) -> None:
    if RULES[action].public:
        assert decide(action, None, standing(None)).scope is Scope.PUBLIC
    else:
        with pytest.raises(Denied) as refused:
            decide(action, None, standing(None))
        assert refused.value.status == 401


@pytest.mark.parametrize("action", [a for a in Action if not RULES[a].public])
def test_keys_with_no_part_in_the_event_are_refused(action: Action) -> None:
    for principal in (OTHER_ORGANISER, PARTICIPANT, OFFICE_NORTH):
        outsider = standing(principal)
        if outsider.relation in RULES[action].by:
            continue  # e.g. creating an event needs no event
        with pytest.raises(Denied) as refused:
            decide(action, principal, outsider)
        assert refused.value.status == 403


def test_a_co_organiser_acts_on_its_own_office_only() -> None:
    north = standing(OFFICE_NORTH, co_organiser_office="north")
    grant = decide(Action.VALIDATE, OFFICE_NORTH, north, (Subject("reg-1", "north"),))
    assert (grant.scope, grant.office) == (Scope.OFFICE, "north")
    with pytest.raises(Denied):
        decide(Action.VALIDATE, OFFICE_NORTH, north, (Subject("reg-2", "south"),))
    with pytest.raises(Denied):
        decide(Action.VALIDATE, OFFICE_NORTH, north, (Subject("reg-3", None),))
    with pytest.raises(Denied):
        decide(Action.MANAGE_CO_ORGANISERS, OFFICE_NORTH, north)
    # A list is granted with the office's scope, and rows are filtered by it.
    listing = decide(Action.VIEW_ACTIVITY, OFFICE_NORTH, north)
    assert listing.may_see("reg-1", "north") and not listing.may_see("reg-2", "south")


def test_a_participant_sees_what_concerns_itself() -> None:
    own = standing(PARTICIPANT, own_status=RegistrationStatus.APPROVED)
    grant = decide(Action.VIEW_REGISTRATION, PARTICIPANT, own, (Subject("reg-1"),))
    assert grant.scope is Scope.SELF
    with pytest.raises(Denied):
        decide(Action.VIEW_REGISTRATION, PARTICIPANT, own, (Subject("reg-2"),))
    # A meeting concerns both its participants.
    both = (Subject("reg-1"), Subject("reg-2"))
    assert decide(Action.VIEW_ACTIVITY, PARTICIPANT, own, both).scope is Scope.SELF
    with pytest.raises(Denied):
        decide(Action.VALIDATE, PARTICIPANT, own, (Subject("reg-1"),))


def test_the_directory_is_for_approved_participants_and_organisers() -> None:
    approved = standing(PARTICIPANT, own_status=RegistrationStatus.APPROVED)
    assert decide(Action.VIEW_DIRECTORY, PARTICIPANT, approved).scope is Scope.PUBLIC
    pending = standing(PARTICIPANT, own_status=RegistrationStatus.PENDING)
    with pytest.raises(Denied):
        decide(Action.VIEW_DIRECTORY, PARTICIPANT, pending)
    assert decide(Action.VIEW_DIRECTORY, LEAD, standing(LEAD)).sees_everything


def test_the_lead_organiser_and_admin_see_everything_of_the_event() -> None:
    for principal in (LEAD, ADMIN):
        for action in (Action.VIEW_ACTIVITY, Action.VALIDATE, Action.MANAGE_EVENT):
            assert decide(action, principal, standing(principal)).sees_everything
