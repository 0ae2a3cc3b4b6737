"""The access model, pure: who may do what to which brokerage event's data.

Every route of every service declares one `Action` (see `shared.access.routes`).
A caller's standing in the event (its `Relation`) and the registrations the
request concerns (its `Subject`s) are read from the access projection; this
module alone decides, from them, whether the action is allowed and how much the
caller may see (`Scope`). Nothing here does I/O.

The table `RULES` is the policy: the README's access table is generated from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What kind of key a caller holds."""

    ADMIN = "admin"  # the platform operator's key
    ORGANISER = "organiser"  # an organiser's key: leads the events it creates
    CO_ORGANISER = "co_organiser"  # a support office's key for one event
    ORGANISATION = "organisation"  # a participant's key: one registration in one event


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its role and the id its key was issued to."""

    role: Role
    id: str  # organiser id, co-organiser id, registration id, or "admin"

    @property
    def label(self) -> str:
        return f"{self.role.value}:{self.id}"


ADMIN_ID = "admin"
ADMIN = Principal(Role.ADMIN, ADMIN_ID)


class Relation(StrEnum):
    """A caller's standing in one brokerage event."""

    ADMIN = "platform admin"
    LEAD_ORGANISER = "lead organiser"
    CO_ORGANISER = "co-organiser"
    PARTICIPANT = "approved participant"
    APPLICANT = "applicant"  # registered, not (or no longer) approved
    ORGANISER_ACCOUNT = "organiser of other events"  # an organiser's key, not this event's
    OUTSIDER = "other key"  # a valid key with no part in this event
    ANONYMOUS = "anonymous"


class RegistrationStatus(StrEnum):
    """A registration's status, as every service projects it."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WAITLISTED = "waitlisted"
    WITHDRAWN = "withdrawn"


class Scope(StrEnum):
    """How much of the event an allowed caller sees."""

    EVENT = "everything of the event"
    OFFICE = "its support office's participants"
    SELF = "its own registration"
    PUBLIC = "what is public"


class Grants(StrEnum):
    """For one relation in a rule: on what condition the action is allowed."""

    ALWAYS = "always"  # on the whole event
    OWN_OFFICE = "own office"  # co-organiser: the subjects (if any) include one of its office
    SELF = "self"  # the subjects (if any) include the caller's own registration
    LISTED = "listed"  # an approved participant reading what participants publish


class Action(StrEnum):
    VIEW_PUBLIC = "read public pages (events, programme)"
    FOLLOW_LINK = "open a signed link (the token in it is the credential)"
    REGISTER = "register an organisation (open until the deadline)"
    REQUEST_SIGN_IN_LINK = "ask for a sign-in link by e-mail (same answer for any address)"
    WRITE_SIGN_IN_MESSAGE = "read a sign-in link's message to send it (the notification service)"
    READ_CONTACTS_TO_SEND = "read many organisations' contacts to e-mail them (notification)"
    WHO_AM_I = "read whom the calling key belongs to"
    CREATE_ORGANISER = "register an organiser"
    CREATE_EVENT = "create an event"
    MANAGE_EVENT = "manage the event (programme, webhooks, scheduling, invitations)"
    MANAGE_CO_ORGANISERS = "add, list and remove co-organisers, assign support offices"
    VIEW_ACTIVITY = "read the event's registrations, meetings, agendas, dashboard, report"
    VIEW_REPORT = "read the event's report and dashboard"
    VIEW_DIRECTORY = "read the participant directory"
    VALIDATE = "approve, reject or waitlist a registration"
    IMPORT_REGISTRATIONS = "register organisations from a spreadsheet"
    VIEW_REGISTRATION = "read one registration with its contacts and private data"
    EDIT_PROFILE = "edit or withdraw a registration"
    ERASE = "erase a registration's personal data"
    ACT_AS_PARTICIPANT = "act as the participant (requests, replies, preferences, feedback)"
    GIVE_FEEDBACK = "rate a meeting or report its outcome (its participants)"
    CANCEL_MEETING = "cancel a meeting request or an accepted meeting"
    RECORD_ATTENDANCE = "record attendance and meetings not held"


@dataclass(frozen=True)
class Rule:
    by: Mapping[Relation, Grants]
    needs_key: bool = True  # False: anonymous callers too

    @property
    def public(self) -> bool:
        return not self.needs_key


_ORGANISERS: dict[Relation, Grants] = {
    Relation.ADMIN: Grants.ALWAYS,
    Relation.LEAD_ORGANISER: Grants.ALWAYS,
}
_ORGANISERS_AND_OFFICES = {**_ORGANISERS, Relation.CO_ORGANISER: Grants.OWN_OFFICE}
_EVERYONE = dict.fromkeys(Relation, Grants.ALWAYS)

RULES: Mapping[Action, Rule] = {
    Action.VIEW_PUBLIC: Rule(_EVERYONE, needs_key=False),
    Action.FOLLOW_LINK: Rule(_EVERYONE, needs_key=False),
    Action.REGISTER: Rule(_EVERYONE, needs_key=False),
    Action.REQUEST_SIGN_IN_LINK: Rule(_EVERYONE, needs_key=False),
    Action.WRITE_SIGN_IN_MESSAGE: Rule({Relation.ADMIN: Grants.ALWAYS}),
    Action.READ_CONTACTS_TO_SEND: Rule({Relation.ADMIN: Grants.ALWAYS}),
    Action.WHO_AM_I: Rule({r: Grants.ALWAYS for r in Relation if r is not Relation.ANONYMOUS}),
    Action.CREATE_ORGANISER: Rule({Relation.ADMIN: Grants.ALWAYS}),
    # Creating an event: any organiser's key (it becomes the event's lead organiser).
    Action.CREATE_EVENT: Rule({Relation.ORGANISER_ACCOUNT: Grants.ALWAYS}),
    Action.MANAGE_EVENT: Rule(_ORGANISERS),
    Action.MANAGE_CO_ORGANISERS: Rule(_ORGANISERS),
    Action.VIEW_ACTIVITY: Rule({**_ORGANISERS_AND_OFFICES, Relation.PARTICIPANT: Grants.SELF}),
    Action.VIEW_REPORT: Rule(_ORGANISERS_AND_OFFICES),
    Action.VIEW_DIRECTORY: Rule({**_ORGANISERS_AND_OFFICES, Relation.PARTICIPANT: Grants.LISTED}),
    Action.VALIDATE: Rule(_ORGANISERS_AND_OFFICES),
    # A co-organiser imports its own office's participants (the handler assigns them).
    Action.IMPORT_REGISTRATIONS: Rule(_ORGANISERS_AND_OFFICES),
    Action.VIEW_REGISTRATION: Rule(
        {
            **_ORGANISERS_AND_OFFICES,
            Relation.PARTICIPANT: Grants.SELF,
            Relation.APPLICANT: Grants.SELF,
        }
    ),
    Action.EDIT_PROFILE: Rule(
        {
            **_ORGANISERS_AND_OFFICES,
            Relation.PARTICIPANT: Grants.SELF,
            Relation.APPLICANT: Grants.SELF,
        }
    ),
    # Erasure is the data subject's right (and the operator's duty on request).
    Action.ERASE: Rule(
        {
            Relation.ADMIN: Grants.ALWAYS,
            Relation.PARTICIPANT: Grants.SELF,
            Relation.APPLICANT: Grants.SELF,
        }
    ),
    Action.ACT_AS_PARTICIPANT: Rule(
        {Relation.PARTICIPANT: Grants.SELF, Relation.APPLICANT: Grants.SELF}
    ),
    Action.GIVE_FEEDBACK: Rule({Relation.PARTICIPANT: Grants.SELF}),
    Action.CANCEL_MEETING: Rule(
        {**_ORGANISERS, Relation.PARTICIPANT: Grants.SELF, Relation.APPLICANT: Grants.SELF}
    ),
    Action.RECORD_ATTENDANCE: Rule(_ORGANISERS_AND_OFFICES),
}


@dataclass(frozen=True)
class Standing:
    """A caller's standing in one event, read from the access projection."""

    relation: Relation
    office: str | None = None  # a co-organiser's support office
    registration_id: str | None = None  # a participant's (or applicant's) own registration


@dataclass(frozen=True)
class Subject:
    """A registration a request concerns, with its support office."""

    registration_id: str
    office: str | None = None


@dataclass(frozen=True)
class Grant:
    """An allowed request: who asked, and how much it may see."""

    principal: Principal | None
    relation: Relation
    scope: Scope
    office: str | None = None  # set when scope is OFFICE
    registration_id: str | None = None  # set when scope is SELF

    @property
    def sees_everything(self) -> bool:
        return self.scope is Scope.EVENT

    def may_see(self, registration_id: str, office: str | None) -> bool:
        """Whether a row about `registration_id` (of `office`) is within the grant."""
        if self.scope is Scope.EVENT:
            return True
        if self.scope is Scope.OFFICE:
            return office is not None and office == self.office
        if self.scope is Scope.SELF:
            return registration_id == self.registration_id
        return False


class Denied(Exception):
    """The caller may not do this: `status` 401 (no key) or 403 (not its business)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decide(
    action: Action,
    principal: Principal | None,
    standing: Standing,
    subjects: tuple[Subject, ...] = (),
) -> Grant:
    """Allow `action` for a caller of `standing` on `subjects`, or raise `Denied`."""
    rule = RULES[action]
    if principal is None and rule.needs_key:
        raise Denied(401, "an API key is needed (X-API-Key header or Authorization: Bearer)")
    grants = rule.by.get(standing.relation)
    if grants is None:
        raise Denied(403, f"a caller who is {standing.relation.value} may not {action.value}")
    if rule.public:
        # What is public, plus the caller's standing (a route may show its organisers more).
        return Grant(
            principal,
            standing.relation,
            Scope.PUBLIC,
            office=standing.office,
            registration_id=standing.registration_id,
        )
    if grants is Grants.ALWAYS:
        return Grant(principal, standing.relation, Scope.EVENT)
    if grants is Grants.OWN_OFFICE:
        if subjects and not any(s.office == standing.office for s in subjects):
            raise Denied(403, "this registration belongs to another support office")
        return Grant(principal, standing.relation, Scope.OFFICE, office=standing.office)
    if grants is Grants.SELF:
        if subjects and not any(s.registration_id == standing.registration_id for s in subjects):
            raise Denied(403, "this concerns another participant")
        return Grant(
            principal, standing.relation, Scope.SELF, registration_id=standing.registration_id
        )
    # LISTED: the directory shows approved participants what they chose to publish.
    return Grant(
        principal, standing.relation, Scope.PUBLIC, registration_id=standing.registration_id
    )


def standing_of(
    principal: Principal | None,
    *,
    lead_organiser: str | None,
    co_organiser_office: str | None,
    own_status: RegistrationStatus | None,
) -> Standing:
    """A caller's relation to an event from what the projection holds about it.

    `co_organiser_office` is set when the principal is an active co-organiser of the
    event (the office may be an empty string for a co-organiser without one), and
    `own_status` when the principal is a registration of the event.
    """
    if principal is None:
        return Standing(Relation.ANONYMOUS)
    if principal.role is Role.ADMIN:
        return Standing(Relation.ADMIN)
    if principal.role is Role.ORGANISER:
        if lead_organiser == principal.id:
            return Standing(Relation.LEAD_ORGANISER)
        return Standing(Relation.ORGANISER_ACCOUNT)
    if principal.role is Role.CO_ORGANISER and co_organiser_office is not None:
        return Standing(Relation.CO_ORGANISER, office=co_organiser_office)
    if principal.role is Role.ORGANISATION and own_status is not None:
        relation = (
            Relation.PARTICIPANT
            if own_status is RegistrationStatus.APPROVED
            else Relation.APPLICANT
        )
        return Standing(relation, registration_id=principal.id)
    return Standing(Relation.OUTSIDER)
