"""Test-suite wide hooks.

Everything under `tests/integration/` needs the real Kafka broker and PostgreSQL
server; those tests carry the `integration` marker (each module sets it, and
this hook adds it to anything there that forgot), so `-m "not integration"`
runs the rest alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
