"""Signed links open only with their secret and purpose, and reveal their parts."""

from __future__ import annotations

from shared.links import open_link, sign_link


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
