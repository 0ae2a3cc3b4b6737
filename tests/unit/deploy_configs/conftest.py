"""The parsed deploy files, once per module."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.deploy_configs.files import (
    COLLECTOR_CONFIG,
    COMPOSE_FILE,
    GRAFANA_DASHBOARDS,
    GRAFANA_DATASOURCES,
    PROMETHEUS_CONFIG,
    load_yaml,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def compose_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict), "docker-compose.yml has no `services` mapping"
    return services


@pytest.fixture(scope="module")
def collector_config() -> dict[str, Any]:
    return load_yaml(COLLECTOR_CONFIG)


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    return load_yaml(PROMETHEUS_CONFIG)


@pytest.fixture(scope="module")
def grafana_datasources() -> list[dict[str, Any]]:
    data = load_yaml(GRAFANA_DATASOURCES)
    assert data.get("apiVersion") == 1
    datasources = data.get("datasources")
    assert isinstance(datasources, list) and datasources
    return datasources


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> the dashboard, for every JSON file in deploy/grafana/dashboards."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(GRAFANA_DASHBOARDS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict), path
        found[path.name] = data
    assert found, "deploy/grafana/dashboards has no dashboards"
    return found
