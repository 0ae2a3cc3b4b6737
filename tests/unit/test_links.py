"""Signed links open only with their secret and purpose, reveal their parts, and expire."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from shared.links import LIFETIMES, open_link, read_link, sign_link


def test_a_link_opens_with_its_secret_and_purpose_only() -> None:
    token = sign_link("s3cret", "dashboard", "event-1")
    assert open_link("s3cret", "dashboard", token) == ["event-1"]
    assert open_link("other", "dashboard", token) is None
    assert open_link("s3cret", "feed", token) is None


def test_a_forged_or_damaged_token_opens_nothing() -> None:
    mac = sign_link("s3cret", "dashboard", "event-1").split(".")[1]
    forged = sign_link("s3cret", "dashboard", "event-2").split(".")[0] + "." + mac
    assert open_link("s3cret", "dashboard", forged) is None
    for damaged in ("", "garbage", "a.b.c", ".", "ZXZlbnQ.!!!", "\u00e9.\u00e9"):
        assert open_link("s3cret", "dashboard", damaged) is None


def test_parts_travel_in_the_clear_and_come_back_split() -> None:
    token = sign_link("s3cret", "unsubscribe", "reg-1", "*")
    assert open_link("s3cret", "unsubscribe", token) == ["reg-1", "*"]


def test_a_link_carries_its_issue_and_expiry_and_defaults_by_purpose() -> None:
    issued = datetime(2026, 3, 1, 9, 30, 0, 123000, tzinfo=UTC)
    for purpose, lifetime in LIFETIMES.items():
        link = read_link("s3cret", purpose, sign_link("s3cret", purpose, "x", issued_at=issued))
        assert link is not None
        assert (link.parts, link.issued_at, link.expires_at) == (("x",), issued, issued + lifetime)
    assert LIFETIMES["dashboard"] == timedelta(days=30)
    assert LIFETIMES["feed"] == LIFETIMES["unsubscribe"] == timedelta(days=365)


def test_an_expired_link_opens_nothing() -> None:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    token = sign_link("s3cret", "dashboard", "event-1", issued_at=issued, lifetime=timedelta(1))
    assert open_link("s3cret", "dashboard", token, now=issued + timedelta(hours=23)) == ["event-1"]
    assert open_link("s3cret", "dashboard", token, now=issued + timedelta(days=1)) is None
    assert open_link("s3cret", "dashboard", token) is None  # now: long after


def test_its_dates_cannot_be_changed() -> None:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    token = sign_link("s3cret", "feed", "reg-1", issued_at=issued, lifetime=timedelta(1))
    body = read_link("s3cret", "feed", token)
    assert body is not None
    encoded, mac = token.split(".")
    text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    later = text.rsplit(":", 1)[0] + ":99999999999999"
    tampered = base64.urlsafe_b64encode(later.encode()).rstrip(b"=").decode() + "." + mac
    assert read_link("s3cret", "feed", tampered) is None


def test_a_token_without_dates_or_parts_is_refused() -> None:
    with pytest.raises(ValueError):
        sign_link("s3cret", "feed")
    with pytest.raises(ValueError):
        sign_link("s3cret", "feed", "a:b")
