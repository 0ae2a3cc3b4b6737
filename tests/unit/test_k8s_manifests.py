"""deploy/k8s: rendered with kustomize and checked against the code.

Structural checks: every service a Deployment with replicas, probes on /health and
/ready, resource requests, its secrets by reference; topics created once by a Job.
The schema checks (kubeconform, kubernetes-validate) are in test_k8s_schemas.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import SERVICE_PORTS
from tests.unit.test_k8s_schemas import K8S
from tests.unit.test_k8s_schemas import render as render_text


def render(path: Path) -> list[dict[str, Any]]:
    """kustomize's output (var/tools/bin/kustomize, else `kubectl kustomize`; skips without)."""
    return [doc for doc in yaml.safe_load_all(render_text(path)) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(K8S / "base")


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return render(K8S / "overlays" / "strimzi-cnpg")


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_service_is_replicated_with_probes(base: list[dict[str, Any]]) -> None:
    deployments = by_kind(base, "Deployment")
    services = by_kind(base, "Service")
    assert set(deployments) == set(SERVICE_PORTS)
    for name, port in SERVICE_PORTS.items():
        spec = deployments[name]["spec"]
        assert spec["replicas"] >= 2
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["ports"][0]["containerPort"] == port
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        env = env_of(container)
        assert env["REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        db = env[f"{name.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert db["name"].startswith("matchmaking-databases")
        assert "secretKeyRef" in env["PLATFORM_ADMIN_KEY"]["valueFrom"]
        assert "secretKeyRef" in env["KAFKA_SASL_PASSWORD"]["valueFrom"]
        assert services[name]["spec"]["ports"][0]["port"] == port
    assert set(by_kind(base, "PodDisruptionBudget")) == set(SERVICE_PORTS)


def test_topics_are_created_once_by_a_job(base: list[dict[str, Any]]) -> None:
    (job,) = by_kind(base, "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:4] == ["python", "-m", "shared.topics", "create"]


def test_settings_are_ones_the_code_reads(base: list[dict[str, Any]]) -> None:
    from shared.settings import NotificationSettings

    (config,) = by_kind(base, "ConfigMap").values()
    known = {name.upper() for name in NotificationSettings.model_fields}
    assert set(config["data"]) <= known, set(config["data"]) - known


def test_the_strimzi_cnpg_example(overlay: list[dict[str, Any]]) -> None:
    assert not by_kind(overlay, "Secret"), "secrets are made outside git in this example"
    (config,) = by_kind(overlay, "ConfigMap").values()
    assert config["data"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["data"]["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    ca = config["data"]["KAFKA_SSL_CAFILE"]
    for workload in [*by_kind(overlay, "Deployment").values(), *by_kind(overlay, "Job").values()]:
        container = workload["spec"]["template"]["spec"]["containers"][0]
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert any(ca.startswith(m) for m in mounts), workload["metadata"]["name"]
    assert by_kind(overlay, "KafkaUser")
    assert len(by_kind(overlay, "Database")) == len(SERVICE_PORTS) - 1  # + initdb's
