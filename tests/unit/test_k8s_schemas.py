"""deploy/k8s against the Kubernetes API's JSON schemas (strict: no unknown field).

The schemas are those of the kubernetes-validate package (uv.lock), generated from
the Kubernetes OpenAPI for each release; nothing is fetched at test time. Two
validators read them:
  - kubeconform (`deploy/local/k8s-tools.sh` installs it, and kustomize, with `go
    install`; the test skips, saying why, without Go). Its local schema files must be
    self-contained, so the package's `-local` schemas, whose `$ref`s point into a shared
    `_definitions.json`, are rewritten with the definitions inlined;
  - kubernetes-validate itself, in process, which needs no Go.
Strimzi's and CloudNativePG's custom resources have no schema here (theirs ship with
their operators): both validators list them as skipped, and the test checks that
nothing else is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
TOOLS = REPO / "var" / "tools" / "bin"
UNAVAILABLE = REPO / "var" / "k8s-tools-unavailable.txt"
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = [K8S / "base", K8S / "overlays" / "strimzi-cnpg"]
# The operators' resources (Strimzi KafkaUser, CloudNativePG Cluster and Database).
CUSTOM_KINDS = {"KafkaUser", "Cluster", "Database"}
DEFINITIONS_REF = '"/api/_definitions.json#/$defs/'


def renderer() -> list[str] | None:
    if (TOOLS / "kustomize").exists():
        return [str(TOOLS / "kustomize"), "build"]
    kubectl = shutil.which("kubectl")
    return [kubectl, "kustomize"] if kubectl else None


def render(path: Path) -> str:
    command = renderer()
    if command is None:
        pytest.skip("neither kustomize (make test installs it, with Go) nor kubectl is here")
    return subprocess.run([*command, str(path)], capture_output=True, text=True, check=True).stdout


def schema_dir() -> Path:
    schemas = files("kubernetes_validate") / "kubernetes-json-schema"
    return Path(str(schemas / f"v{KUBERNETES_VERSION}-local-strict"))


def standalone_schemas(docs: list[dict[str, Any]], into: Path) -> Path:
    """kubeconform's layout (`<version>-standalone-strict/<kind>-<group>-<version>.json`)
    for the built-in kinds among `docs`, each with the shared definitions inlined."""
    source = schema_dir()
    definitions_text = (source / "_definitions.json").read_text()
    definitions = json.loads(
        definitions_text.replace(DEFINITIONS_REF, '"#/definitions/').replace(
            '"#/$defs/', '"#/definitions/'
        )
    )["$defs"]
    out = into / f"v{KUBERNETES_VERSION}-standalone-strict"
    out.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        group_version = doc["apiVersion"].split("/")
        suffix = "-".join(part.split(".")[0].lower() for part in group_version)
        name = f"{doc['kind'].lower()}-{suffix}.json"
        if not (source / name).exists() or (out / name).exists():
            continue
        schema = json.loads((source / name).read_text().replace(DEFINITIONS_REF, '"#/definitions/'))
        schema["definitions"] = definitions
        (out / name).write_text(json.dumps(schema))
    return into


def kubeconform() -> Path:
    binary = TOOLS / "kubeconform"
    if not binary.exists():
        reason = UNAVAILABLE.read_text().strip() if UNAVAILABLE.exists() else "not installed"
        pytest.skip(f"kubeconform is not in var/tools/bin (deploy/local/k8s-tools.sh): {reason}")
    return binary


def run_kubeconform(manifests: str, schemas: Path) -> dict[str, Any]:
    location = f"{schemas}/{{{{ .NormalizedKubernetesVersion }}}}-standalone{{{{ .StrictSuffix }}}}"
    location += "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    out = subprocess.run(
        [
            str(kubeconform()), "-strict", "-summary", "-output", "json",
            "-kubernetes-version", KUBERNETES_VERSION,
            "-schema-location", location, "-ignore-missing-schemas", "-",
        ],
        input=manifests, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.stdout, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_kubeconform_finds_every_manifest_valid(path: Path, tmp_path: Path) -> None:
    manifests = render(path)
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    result = run_kubeconform(manifests, standalone_schemas(docs, tmp_path))
    by_status: dict[str, set[str]] = {}
    for resource in result["resources"]:
        by_status.setdefault(resource["status"], set()).add(resource["kind"])
    problems = [r for r in result["resources"] if r["status"] in ("statusInvalid", "statusError")]
    assert not problems, problems
    assert by_status.get("statusSkipped", set()) <= CUSTOM_KINDS
    assert result["summary"]["valid"] == len([d for d in docs if d["kind"] not in CUSTOM_KINDS])


def test_kubeconform_refuses_a_broken_deployment(tmp_path: Path) -> None:
    """The validator can fail: a misspelt field and a number as text are both caught."""
    docs = [d for d in yaml.safe_load_all(render(K8S / "base")) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    result = run_kubeconform(yaml.safe_dump(deployment), standalone_schemas(docs, tmp_path))
    (resource,) = result["resources"]
    assert resource["status"] == "statusInvalid"
    assert "replicas" in resource["msg"] and "readinesProbe" in resource["msg"]


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_kubernetes_validate_finds_every_manifest_valid(path: Path) -> None:
    skipped = set()
    for doc in yaml.safe_load_all(render(path)):
        if not doc:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.add(doc["kind"])
    assert skipped <= CUSTOM_KINDS


def test_kubernetes_validate_refuses_a_broken_service() -> None:
    docs = [d for d in yaml.safe_load_all(render(K8S / "base")) if d]
    service = next(d for d in docs if d["kind"] == "Service")
    service["spec"]["ports"][0]["port"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
