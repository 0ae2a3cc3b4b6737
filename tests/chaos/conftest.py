"""Fault tests on a real local Kafka cluster (KAFKA_BROKERS=3, deploy/local/kafka.sh).

Run them all with `make chaos` (CHAOS=1); each writes its row to var/chaos/table.md.
`make test` runs the ones not marked `chaos` (a broker killed and restarted; a replica
killed mid-batch with the relay leader taken over) through deploy/local/test-cluster.sh,
which provisions the cluster on offset 3000 first. The tests need a cluster that
infra.sh started in this environment (3+ nodes, its MATCHMAKING_STATE_DIR) and skip,
saying so, without one: they kill and pause broker processes, so they never run against
a broker they did not start. See docs/cluster.md, "Faults on a cluster".
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.harness import Cluster
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    database,
    infra,
    kafka_admin,
    processes,
    topics,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CHAOS") == "1":
        return
    skip = pytest.mark.skip(reason="the whole fault matrix runs with `make chaos` (CHAOS=1)")
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)


@pytest.fixture
def cluster() -> Cluster:
    found = Cluster.ours()
    if found is None:
        pytest.skip(
            "needs a local Kafka cluster started by infra.sh in this environment"
            " (KAFKA_BROKERS=3, e.g. MATCHMAKING_PORT_OFFSET=3000 KAFKA_BROKERS=3"
            " . deploy/local/ports.env && make infra-up)"
        )
    return found
