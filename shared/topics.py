"""Topic names: each service's canonical `<service>.events`, and the namespace before them.

`TOPIC_PREFIX` (`PlatformSettings.topic_prefix`) is prepended to every topic name
a service reads or writes on Kafka, so that a test suite or a second platform can
share a broker without seeing each other's events. Contracts, outbox rows and the
AsyncAPI documents keep the canonical names; only the Kafka clients (the runtime's
consumers, the outbox relay, reporting's dead-letter reader) see prefixed ones. A
dead-letter topic is `<record topic>.dlq`, so it carries the prefix of the topic
its record came from.
"""

from __future__ import annotations

from collections.abc import Iterable


def prefixed(prefix: str, name: str) -> str:
    """The topic `name` (canonical, e.g. `registration.events`) under `prefix`."""
    return f"{prefix}{name}"


def prefixed_all(prefix: str, names: Iterable[str]) -> tuple[str, ...]:
    return tuple(prefixed(prefix, name) for name in names)
