"""Signing in by e-mail: the link's rules (pure) and its token (signed, expiring, bound to
its purpose), as registration issues and checks them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.registration import sign_in_rules as rules
from services.registration.sign_in import address_digest, sign
from services.registration.sign_in_rules import SignInState
from shared import links
from shared.contracts.registration import (
    ClusterRegistered,
    PersonalDataErased,
    RegistrationApproved,
    RegistrationWithdrawn,
)
from shared.errors import Conflict
from tests.unit.test_registration_domain import profile

NOW = datetime(2031, 4, 1, 9, tzinfo=UTC)
SECRET = "test-sign-in-secret"


def registered(*later: object) -> SignInState:
    state = SignInState()
    state.apply(
        ClusterRegistered(
            registration_id="r1", event_id="e1", profile=profile(), api_key_digest="d"
        )
    )
    state.apply(RegistrationApproved(registration_id="r1", event_id="e1"))
    for event in later:
        state.apply(event)  # type: ignore[arg-type]
    return state


def issued(state: SignInState, link_id: str = "l1", now: datetime = NOW) -> SignInState:
    requested = rules.request_link(state, link_id=link_id, address_encrypted="sealed", now=now)
    assert requested is not None
    state.apply(requested)
    return state


def test_a_link_is_issued_for_twenty_minutes_with_the_address_sealed() -> None:
    requested = rules.request_link(registered(), link_id="l1", address_encrypted="x", now=NOW)
    assert requested is not None
    assert (requested.registration_id, requested.event_id) == ("r1", "e1")
    assert requested.expires_at - requested.issued_at == timedelta(minutes=20)
    assert "address" not in requested.model_dump() and requested.address_encrypted == "x"


@pytest.mark.parametrize(
    "gone",
    [
        RegistrationWithdrawn(registration_id="r1", event_id="e1"),
        PersonalDataErased(registration_id="r1", event_id="e1"),
    ],
)
def test_withdrawn_or_erased_registrations_get_no_link_and_use_none(gone: object) -> None:
    assert (
        rules.request_link(registered(gone), link_id="l1", address_encrypted="x", now=NOW) is None
    )
    state = issued(registered())
    state.apply(gone)  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        rules.use_link(state, link_id="l1", api_key_digest="k", now=NOW)


def test_a_link_opens_once_and_gives_a_key_for_the_session() -> None:
    state = issued(registered())
    used = rules.use_link(state, link_id="l1", api_key_digest="k", now=NOW + timedelta(minutes=5))
    assert used.key_expires_at == NOW + timedelta(minutes=5, hours=12)
    state.apply(used)
    with pytest.raises(Conflict, match="used already"):
        rules.use_link(state, link_id="l1", api_key_digest="k2", now=NOW + timedelta(minutes=6))


def test_a_link_expires_and_another_registrations_link_opens_nothing() -> None:
    state = issued(registered())
    with pytest.raises(Conflict, match="expired"):
        rules.use_link(state, link_id="l1", api_key_digest="k", now=NOW + timedelta(minutes=20))
    with pytest.raises(Conflict, match="not a sign-in link"):
        rules.use_link(state, link_id="other", api_key_digest="k", now=NOW)


def test_the_rate_limit_allows_three_requests_per_window() -> None:
    assert [rules.too_many(n) for n in range(5)] == [False, False, False, True, True]


def test_addresses_compare_without_case_or_space_and_their_digest_needs_the_secret() -> None:
    address = rules.normalised("  Hanna@Harz.Example ")
    assert address == "hanna@harz.example"
    assert address_digest(SECRET, address) == address_digest(SECRET, "hanna@harz.example")
    assert address_digest(SECRET, address) != address_digest("another secret", address)
    assert "hanna" not in address_digest(SECRET, address)


def test_the_token_is_the_same_for_the_same_link_and_opens_only_sign_in() -> None:
    issued_at = links.now_ms()
    expires = issued_at + timedelta(minutes=20)
    token = sign(SECRET, "r1", "l1", issued_at, expires)
    assert token == sign(SECRET, "r1", "l1", issued_at, expires)  # nothing to store
    read = links.read_link(SECRET, rules.PURPOSE, token)
    assert read is not None and read.parts == ("r1", "l1")
    assert (read.issued_at, read.expires_at) == (issued_at, expires)
    assert links.read_link(SECRET, "feed", token) is None  # another purpose
    assert links.read_link("another secret", rules.PURPOSE, token) is None
    mac = token.split(".")[1]
    forged = links.sign_link("guess", rules.PURPOSE, "r2", "l1").split(".")[0] + "." + mac
    assert links.read_link(SECRET, rules.PURPOSE, forged) is None
    assert links.open_link(SECRET, rules.PURPOSE, token, now=expires) is None  # expired


def test_the_address_index_names_an_address_by_a_keyed_hmac_of_its_normal_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.registration import addresses

    # The secret as it was restored afterwards (unset: the settings'), not this test's:
    # a later test's live service digests with the settings' secret, its rebuild with the
    # module's (a registration rebuild after this test found every address differing).
    monkeypatch.setattr(addresses, "_secret", SECRET)
    name = addresses.digest("hanna@harz.example")
    assert addresses.digest("  Hanna@Harz.Example ") == name
    assert "harz" not in name and len(name) == 64
    assert name != address_digest(SECRET, "hanna@harz.example")  # not the rate limit's
    addresses.configure("another-secret")
    assert addresses.digest("hanna@harz.example") != name
