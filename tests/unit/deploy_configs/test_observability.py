"""The OpenTelemetry collector, Prometheus and Grafana's provisioning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.settings import SERVICE_PORTS
from tests.unit.deploy_configs.files import (
    COLLECTOR_CONFIG,
    COMPOSE_FILE,
    GRAFANA_DASHBOARD_PROVIDERS,
    GRAFANA_DASHBOARDS,
    GRAFANA_PROVISIONING,
    PROMETHEUS_CONFIG,
    as_argv,
    bind_mounts,
    env_str,
    environment,
    host_port,
    load_yaml,
    published_ports,
    scrape_targets,
)

# --------------------------------------------------------------------------
# OpenTelemetry collector and Jaeger
# --------------------------------------------------------------------------


def _component_type(component_id: str) -> str:
    return component_id.split("/")[0]


def test_collector_pipelines(
    collector_config: dict[str, Any], compose_services: dict[str, dict[str, Any]]
) -> None:
    receivers = collector_config.get("receivers") or {}
    processors = collector_config.get("processors") or {}
    exporters = collector_config.get("exporters") or {}
    connectors = collector_config.get("connectors") or {}
    pipelines = collector_config["service"]["pipelines"]

    protocols = receivers["otlp"]["protocols"]
    assert {"grpc", "http"} <= set(protocols)
    for protocol in ("grpc", "http"):
        host, _port = host_port(protocols[protocol]["endpoint"])
        assert host == "0.0.0.0", f"OTLP {protocol} must listen on all interfaces in a container"

    used_connectors: dict[str, set[str]] = {}
    for pipeline_id, pipeline in pipelines.items():
        for receiver in pipeline.get("receivers", []):
            assert receiver in receivers or receiver in connectors, (pipeline_id, receiver)
            if receiver in connectors:
                used_connectors.setdefault(receiver, set()).add("receiver")
        for processor in pipeline.get("processors", []):
            assert processor in processors, (pipeline_id, processor)
        for exporter in pipeline.get("exporters", []):
            assert exporter in exporters or exporter in connectors, (pipeline_id, exporter)
            if exporter in connectors:
                used_connectors.setdefault(exporter, set()).add("exporter")
    for connector, roles in used_connectors.items():
        assert roles == {"receiver", "exporter"}, f"connector {connector} is only a {roles}"

    traces = [p for pid, p in pipelines.items() if _component_type(pid) == "traces"]
    metrics = [p for pid, p in pipelines.items() if _component_type(pid) == "metrics"]
    assert traces and metrics, "need a traces pipeline and a metrics pipeline"

    # Traces: OTLP in, OTLP out to the Jaeger container.
    jaeger_exporters = [
        exporter_id
        for pipeline in traces
        if "otlp" in pipeline.get("receivers", [])
        for exporter_id in pipeline.get("exporters", [])
        if _component_type(exporter_id) == "otlp"
        and host_port(exporters[exporter_id]["endpoint"])[0] == "jaeger"
    ]
    assert jaeger_exporters, "no traces pipeline from the otlp receiver to jaeger"
    jaeger = compose_services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert env_str(jaeger, "COLLECTOR_OTLP_ENABLED") == "true"
    assert ("16686", "16686") in published_ports(jaeger), "Jaeger UI on port 16686"

    # Metrics: served by a prometheus exporter.
    assert any(
        _component_type(exporter_id) == "prometheus"
        for pipeline in metrics
        for exporter_id in pipeline.get("exporters", [])
    ), "the metrics pipeline has no prometheus exporter"


def test_collector_container_uses_config(compose_services: dict[str, dict[str, Any]]) -> None:
    collector = compose_services["otel-collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target
        for source, target in bind_mounts(collector)
    }
    target = mounts.get(COLLECTOR_CONFIG)
    assert target is not None, "config.yaml is not mounted into the collector"
    config_args = [arg for arg in as_argv(collector.get("command")) if "--config" in arg]
    if config_args:
        assert config_args == [f"--config={target}"]
    else:
        assert target == "/etc/otelcol-contrib/config.yaml"


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------


def test_prometheus_scrapes_every_service(prometheus_config: dict[str, Any]) -> None:
    jobs = scrape_targets(prometheus_config)
    for name, port in SERVICE_PORTS.items():
        # The job is named after the service: dashboards filter HTTP metrics by job.
        assert jobs.get(name) == [f"{name}:{port}"], f"job {name} must scrape {name}:{port}"


def test_prometheus_scrapes_collector(
    prometheus_config: dict[str, Any], collector_config: dict[str, Any]
) -> None:
    jobs = scrape_targets(prometheus_config)
    exporter_ports = {
        host_port(spec["endpoint"])[1]
        for exporter_id, spec in (collector_config.get("exporters") or {}).items()
        if _component_type(exporter_id) == "prometheus"
    }
    scraped = {
        host_port(target)[1]
        for targets in jobs.values()
        for target in targets
        if host_port(target)[0] == "otel-collector"
    }
    assert exporter_ports and exporter_ports <= scraped


def test_prometheus_targets_are_compose_services(
    prometheus_config: dict[str, Any], compose_services: dict[str, dict[str, Any]]
) -> None:
    for job, targets in scrape_targets(prometheus_config).items():
        for target in targets:
            host, _port = host_port(target)
            assert host in compose_services or host == "localhost", f"{job}: {target}"


def test_prometheus_targets_are_ports_the_containers_listen_on(
    prometheus_config: dict[str, Any], compose_services: dict[str, dict[str, Any]]
) -> None:
    for job, targets in scrape_targets(prometheus_config).items():
        for target in targets:
            host, port = host_port(target)
            if host == "localhost":
                continue  # Prometheus itself
            service = compose_services[host]
            listening = {int(container) for _host, container in published_ports(service)}
            assert port in listening, f"{job}: {host} listens on {sorted(listening)}, not {port}"


def test_prometheus_container_uses_config(compose_services: dict[str, dict[str, Any]]) -> None:
    prometheus = compose_services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target
        for source, target in bind_mounts(prometheus)
    }
    assert mounts.get(PROMETHEUS_CONFIG) == "/etc/prometheus/prometheus.yml"


# --------------------------------------------------------------------------
# Grafana provisioning
# --------------------------------------------------------------------------


def test_grafana_container(compose_services: dict[str, dict[str, Any]]) -> None:
    grafana = compose_services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert env_str(grafana, "GF_AUTH_ANONYMOUS_ENABLED") == "true"
    assert env_str(grafana, "GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"
    assert ("3000", "3000") in published_ports(grafana)
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target for source, target in bind_mounts(grafana)
    }
    for kind in ("datasources", "dashboards"):
        assert mounts.get(GRAFANA_PROVISIONING / kind) == f"/etc/grafana/provisioning/{kind}"
    home = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home is not None:
        dashboards_target = mounts.get(GRAFANA_DASHBOARDS)
        assert dashboards_target is not None, "deploy/grafana/dashboards is not mounted"
        relative = Path(str(home)).relative_to(dashboards_target)
        assert (GRAFANA_DASHBOARDS / relative).is_file(), f"no home dashboard {home}"


def test_grafana_datasources(
    grafana_datasources: list[dict[str, Any]], compose_services: dict[str, dict[str, Any]]
) -> None:
    by_type = {ds["type"]: ds for ds in grafana_datasources}
    assert {"prometheus", "jaeger"} <= set(by_type)
    uids = [ds.get("uid") for ds in grafana_datasources]
    assert all(uids) and len(set(uids)) == len(uids), "every datasource needs a unique uid"

    prometheus_host, prometheus_port = host_port(by_type["prometheus"]["url"])
    assert prometheus_host == "prometheus" and prometheus_port == 9090
    jaeger_host, jaeger_port = host_port(by_type["jaeger"]["url"])
    assert jaeger_host == "jaeger" and jaeger_port == 16686
    assert {prometheus_host, jaeger_host} <= set(compose_services)


def test_grafana_dashboard_provider_points_at_mounted_dashboards(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    data = load_yaml(GRAFANA_DASHBOARD_PROVIDERS)
    assert data.get("apiVersion") == 1
    providers = data["providers"]
    assert providers
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target
        for source, target in bind_mounts(compose_services["grafana"])
    }
    dashboards_target = mounts.get(GRAFANA_DASHBOARDS)
    assert dashboards_target is not None, "deploy/grafana/dashboards is not mounted"
    paths = {provider["options"]["path"].rstrip("/") for provider in providers}
    assert all(provider.get("type", "file") == "file" for provider in providers)
    assert dashboards_target.rstrip("/") in paths
