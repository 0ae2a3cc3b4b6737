"""CONSUMER_ENGINE picks the class that runs a service's subscriptions."""

from __future__ import annotations

import pytest

from shared.faststream_inbox import FastStreamInboxConsumer
from shared.inbox import InboxConsumer
from shared.runtime import consumer_class
from shared.settings import PlatformSettings


def test_aiokafka_is_the_default() -> None:
    assert consumer_class(PlatformSettings()) is InboxConsumer


def test_the_engine_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_ENGINE", "aiokafka")
    assert consumer_class(PlatformSettings()) is InboxConsumer
    monkeypatch.setenv("CONSUMER_ENGINE", "faststream")
    assert consumer_class(PlatformSettings()) is FastStreamInboxConsumer


def test_an_unknown_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_ENGINE", "kafka-python")
    with pytest.raises(ValueError, match="consumer_engine"):
        PlatformSettings()
