"""The queue's event ids: random version-4 UUIDs, made a run at a time."""

from __future__ import annotations

import uuid

from services.notification.queue import _random_ids


def test_event_ids_are_distinct_canonical_version_4_uuids() -> None:
    ids = list(_random_ids(5000))
    assert len(ids) == len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    assert list(_random_ids(0)) == []
