"""Signing in by e-mail, the rules (pure: no I/O, the time passed in).

A sign-in link belongs to one registration. It is issued when someone asks at an address
of the registration's representatives, works once, and expires after `LINK_LIFETIME`;
using it gives the browser a key of the organisation's own that lasts as long as the
portal's session (`KEY_LIFETIME`). A withdrawn or erased registration gets no link and
can use none. At most `REQUESTS_PER_WINDOW` requests per address in `REQUEST_WINDOW`,
whether the address is registered or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.access.policy import RegistrationStatus
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    DECISIONS,
    REGISTERED_BY_TYPE,
    DecisionBase,
    PersonalDataErased,
    RegisteredBase,
    SignedInByLink,
    SignInLinkRequested,
)
from shared.dispatch import StateChanges
from shared.errors import Conflict

LINK_LIFETIME = timedelta(minutes=20)
KEY_LIFETIME = timedelta(hours=12)  # the portal's session (services/portal/session.py)
REQUEST_WINDOW = timedelta(minutes=15)
REQUESTS_PER_WINDOW = 3
PURPOSE = "sign-in"  # of the signed link (shared.links)


def normalised(address: str) -> str:
    """An address as compared: no surrounding space, case ignored."""
    return address.strip().lower()


def too_many(requests_in_window: int) -> bool:
    return requests_in_window >= REQUESTS_PER_WINDOW


@dataclass
class SignInState:
    """What signing in needs of a registration, folded from its stream."""

    registration_id: str = ""
    event_id: str = ""
    status: RegistrationStatus | None = None
    erased: bool = False
    links: dict[str, datetime] = field(default_factory=dict)  # link id -> expires at
    used: set[str] = field(default_factory=set)
    version: int = 0

    def apply(self, event: EventPayload) -> None:
        self.version += 1
        CHANGES.apply(self, event)

    @property
    def may_sign_in(self) -> bool:
        return not self.erased and self.status not in (None, RegistrationStatus.WITHDRAWN)


CHANGES = StateChanges[SignInState]()


@CHANGES.on(*REGISTERED_BY_TYPE.values())
def _registered(state: SignInState, event: RegisteredBase) -> None:
    state.registration_id, state.event_id = event.registration_id, event.event_id
    state.status = RegistrationStatus.PENDING


@CHANGES.on(*DECISIONS)
def _decided(state: SignInState, event: DecisionBase) -> None:
    state.status = RegistrationStatus(event.status_after)


@CHANGES.on(PersonalDataErased)
def _erased(state: SignInState, _: PersonalDataErased) -> None:
    state.erased = True


@CHANGES.on(SignInLinkRequested)
def _requested(state: SignInState, event: SignInLinkRequested) -> None:
    state.links[event.link_id] = event.expires_at


@CHANGES.on(SignedInByLink)
def _used(state: SignInState, event: SignedInByLink) -> None:
    state.used.add(event.link_id)


def request_link(
    state: SignInState, *, link_id: str, address_encrypted: str, now: datetime
) -> SignInLinkRequested | None:
    """A new link for this registration, or None when it may not sign in (the caller's
    answer is the same either way)."""
    if not state.may_sign_in:
        return None
    return SignInLinkRequested(
        registration_id=state.registration_id,
        event_id=state.event_id,
        link_id=link_id,
        address_encrypted=address_encrypted,
        issued_at=now,
        expires_at=now + LINK_LIFETIME,
    )


def use_link(
    state: SignInState, *, link_id: str, api_key_digest: str, now: datetime
) -> SignedInByLink:
    """The link opens once, before it expires, for a registration that may sign in."""
    expires_at = state.links.get(link_id)
    if expires_at is None:
        raise Conflict("token", "is not a sign-in link of this registration")
    if link_id in state.used:
        raise Conflict("token", "was used already: ask for a new link")
    if now >= expires_at:
        raise Conflict("token", "has expired: ask for a new link")
    if not state.may_sign_in:
        raise Conflict("token", "the registration was withdrawn or its data erased")
    return SignedInByLink(
        registration_id=state.registration_id,
        event_id=state.event_id,
        link_id=link_id,
        api_key_digest=api_key_digest,
        key_expires_at=now + KEY_LIFETIME,
    )
