"""Static checks of the container and observability configuration.

Nothing here needs a Docker engine: the files are parsed and cross-checked
against each other and against `shared.settings` (env var names, ports). The
one test that calls the `docker compose` CLI skips itself when the plugin is
missing.

Files covered: Dockerfile, .dockerignore, docker-compose.yml,
deploy/postgres/init-databases.sql, deploy/otel-collector/config.yaml,
deploy/prometheus/prometheus.yml, deploy/grafana/provisioning/**,
deploy/grafana/dashboards/services.json.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import SERVICE_PORTS, SETTINGS_BY_SERVICE

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
POSTGRES_INIT_SQL = REPO_ROOT / "deploy" / "postgres" / "init-databases.sql"
COLLECTOR_CONFIG = REPO_ROOT / "deploy" / "otel-collector" / "config.yaml"
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = REPO_ROOT / "deploy" / "grafana" / "provisioning"
GRAFANA_DATASOURCES = GRAFANA_PROVISIONING / "datasources" / "datasources.yaml"
GRAFANA_DASHBOARD_PROVIDERS = GRAFANA_PROVISIONING / "dashboards" / "dashboards.yaml"
GRAFANA_DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "services.json"

SERVICES: tuple[str, ...] = tuple(SERVICE_PORTS)

# Compose services besides the four application services.
INFRA_SERVICES = (
    "kafka",
    "kafka-init",
    "postgres",
    "otel-collector",
    "jaeger",
    "prometheus",
    "grafana",
)

# Topics created by the `kafka-init` compose service -> partition count.
EVENT_TOPICS = (
    "registration.events",
    "matching.events",
    "scheduling.events",
    "notification.events",
    "reporting.events",
)
EVENT_TOPIC_PARTITIONS = 3
DLQ_PARTITIONS = 1
EXPECTED_TOPICS: dict[str, int] = {
    **{topic: EVENT_TOPIC_PARTITIONS for topic in EVENT_TOPICS},
    **{f"{topic}.dlq": DLQ_PARTITIONS for topic in EVENT_TOPICS},
}


class Metric(NamedTuple):
    """A Prometheus metric as it appears on a service's /metrics page."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    labels: tuple[str, ...]


# The metrics every service exposes on /metrics, under these exact names (what
# prometheus_client prints: counters end in `_total`, histograms are scraped as
# `<name>_bucket`, `<name>_sum` and `<name>_count`). The Grafana dashboard may
# use only these; keep this list, the dashboard and the services' code in step.
SERVICE_METRICS: list[Metric] = [
    Metric("events_processed_total", "counter", ("service", "topic", "event_type")),
    Metric("event_processing_seconds", "histogram", ("service", "topic")),
    Metric("event_processing_errors_total", "counter", ("service", "topic")),
    Metric("consumer_lag", "gauge", ("service", "topic", "partition")),
    Metric("outbox_backlog", "gauge", ("service",)),
    Metric("outbox_published_total", "counter", ("service",)),
    Metric("dead_letters_total", "counter", ("service", "topic")),
    # OpenTelemetry FastAPI instrumentation, printed by the OpenTelemetry
    # Prometheus exporter on the same /metrics page. Its attribute labels
    # depend on the semantic-convention version, so dashboards only use the
    # labels Prometheus adds when scraping (job, instance) and `le`.
    Metric("http_server_duration_milliseconds", "histogram", ()),
]
SERVICE_METRIC_NAMES: list[str] = [metric.name for metric in SERVICE_METRICS]

# Labels Prometheus attaches to every scraped series.
SCRAPE_LABELS = frozenset({"job", "instance"})


def _series_names(metric: Metric) -> list[str]:
    if metric.kind == "histogram":
        return [f"{metric.name}_bucket", f"{metric.name}_sum", f"{metric.name}_count"]
    return [metric.name]


SERIES_TO_METRIC: dict[str, Metric] = {
    series: metric for metric in SERVICE_METRICS for series in _series_names(metric)
}


# --------------------------------------------------------------------------
# Loading and small helpers
# --------------------------------------------------------------------------


def _load_yaml(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path.relative_to(REPO_ROOT)} is missing"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.relative_to(REPO_ROOT)} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def compose_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict), "docker-compose.yml has no `services` mapping"
    return services


@pytest.fixture(scope="module")
def collector_config() -> dict[str, Any]:
    return _load_yaml(COLLECTOR_CONFIG)


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    return _load_yaml(PROMETHEUS_CONFIG)


@pytest.fixture(scope="module")
def grafana_datasources() -> list[dict[str, Any]]:
    data = _load_yaml(GRAFANA_DATASOURCES)
    assert data.get("apiVersion") == 1
    datasources = data.get("datasources")
    assert isinstance(datasources, list) and datasources
    return datasources


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    assert GRAFANA_DASHBOARD.is_file(), "deploy/grafana/dashboards/services.json is missing"
    data = json.loads(GRAFANA_DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


_DEFAULT_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Resolve compose `${VAR}`, `${VAR:-default}` as if VAR were unset."""
    return _DEFAULT_INTERPOLATION.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    """The `environment` of a compose service as a mapping (values as written)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return dict(env)
    result: dict[str, Any] = {}
    for item in env:
        key, _, value = str(item).partition("=")
        result[key] = value if "=" in str(item) else None
    return result


def _env_str(service: dict[str, Any], key: str) -> str:
    value = _environment(service).get(key)
    assert value is not None, f"environment variable {key} is not set"
    return _interpolate(str(value))


def _as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(part) for part in value]


def _published_ports(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host port, container port) pairs of a compose service's `ports`."""
    pairs: list[tuple[str, str]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            pairs.append((_interpolate(str(entry.get("published", ""))), str(entry["target"])))
            continue
        spec = _interpolate(str(entry)).split("/")[0]
        parts = spec.rsplit(":", 2)
        container = parts[-1]
        host = parts[-2] if len(parts) >= 2 else ""
        pairs.append((host, container))
    return pairs


def _host_port(address: str) -> tuple[str, int]:
    """`host:port` (or a URL) -> (host, port)."""
    parsed = urlsplit(address if "://" in address else f"//{address}")
    assert parsed.hostname is not None and parsed.port is not None, address
    return parsed.hostname, parsed.port


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """`depends_on` as {service: condition}; the short list form means started."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of the bind mounts of a compose service."""
    mounts: list[tuple[str, str]] = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((str(volume["source"]), str(volume["target"])))
            continue
        source, _, rest = str(volume).partition(":")
        if source.startswith((".", "/", "~")):
            mounts.append((source, rest.split(":")[0]))
    return mounts


def _healthcheck_text(service: dict[str, Any]) -> str:
    healthcheck = service.get("healthcheck") or {}
    test = healthcheck.get("test")
    if isinstance(test, list):
        return " ".join(str(part) for part in test)
    return str(test or "")


def _image_tag(image: str) -> str:
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    return last.partition(":")[2]


# --------------------------------------------------------------------------
# docker-compose.yml: general
# --------------------------------------------------------------------------


def test_compose_defines_all_services(compose_services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name in (*SERVICES, *INFRA_SERVICES) if name not in compose_services]
    assert not missing, f"docker-compose.yml lacks services: {missing}"


def test_compose_images_are_pinned(compose_services: dict[str, dict[str, Any]]) -> None:
    unpinned = [
        f"{name}: {service['image']}"
        for name, service in compose_services.items()
        if "image" in service
        and "@sha256:" not in service["image"]
        and _image_tag(service["image"]) in ("", "latest")
    ]
    assert not unpinned, f"images without a version tag: {unpinned}"


def test_compose_dependencies_are_satisfiable(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    for name, service in compose_services.items():
        for dependency, condition in _depends_on(service).items():
            assert dependency in compose_services, f"{name} depends on unknown {dependency}"
            assert condition in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            ), f"{name}: unknown depends_on condition {condition}"
            if condition == "service_healthy":
                assert compose_services[dependency].get("healthcheck"), (
                    f"{name} waits for {dependency} to be healthy, "
                    f"but {dependency} has no healthcheck"
                )


def test_compose_relative_paths_exist(compose_services: dict[str, dict[str, Any]]) -> None:
    compose_dir = COMPOSE_FILE.parent
    missing: list[str] = []
    for name, service in compose_services.items():
        for source, _target in _bind_mounts(service):
            if not source.startswith("/") and not (compose_dir / source).exists():
                missing.append(f"{name}: {source}")
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            if not (compose_dir / context).is_dir():
                missing.append(f"{name}: build context {context}")
    assert not missing, f"paths referenced by docker-compose.yml do not exist: {missing}"


def test_compose_host_ports_are_unique(compose_services: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for name, service in compose_services.items():
        for host, _container in _published_ports(service):
            if not host:
                continue
            assert host not in seen, f"host port {host} published by {seen[host]} and {name}"
            seen[host] = name


def test_compose_environment_values_are_not_booleans(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    # Unquoted true/false become YAML booleans, which compose rejects or
    # rewrites; environment values must be strings (or numbers).
    for name, service in compose_services.items():
        for key, value in _environment(service).items():
            assert not isinstance(value, bool), f"{name}: quote the value of {key}"


def test_docker_compose_config_is_valid() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        pytest.skip(
            "the `docker compose` CLI plugin is not available "
            f"(`docker compose version` exited with {probe.returncode})"
        )
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------
# docker-compose.yml: the four application services
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_built_from_repo_dockerfile(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    service = compose_services[name]
    build = service.get("build")
    if build is None:
        assert service.get("image"), f"{name} has neither `build` nor `image`"
        return
    if isinstance(build, str):
        context, dockerfile = build, "Dockerfile"
    else:
        context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
    context_dir = (COMPOSE_FILE.parent / context).resolve()
    assert context_dir == REPO_ROOT, f"{name} is built from {context}, not the repository root"
    assert (context_dir / dockerfile).resolve() == DOCKERFILE


@pytest.mark.parametrize("name", SERVICES)
def test_service_command_runs_its_package(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    argv = _as_argv(compose_services[name].get("command"))
    assert argv[:3] == ["python", "-m", f"services.{name}"], argv
    assert (REPO_ROOT / "services" / name).is_dir(), f"services/{name}/ does not exist"


@pytest.mark.parametrize("name", SERVICES)
def test_service_main_module_exists(name: str) -> None:
    # `python -m services.<name>` needs services/<name>/__main__.py.
    main = REPO_ROOT / "services" / name / "__main__.py"
    assert main.is_file(), f"services/{name}/__main__.py does not exist (yet)"


@pytest.mark.parametrize("name", SERVICES)
def test_service_publishes_its_port(compose_services: dict[str, dict[str, Any]], name: str) -> None:
    port = SERVICE_PORTS[name]
    service = compose_services[name]
    assert _published_ports(service) == [(str(port), str(port))]
    assert _env_str(service, f"{name.upper()}_PORT") == str(port)


@pytest.mark.parametrize("name", SERVICES)
def test_service_environment_matches_settings(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    settings_cls = SETTINGS_BY_SERVICE[name]
    known = {field.upper() for field in settings_cls.model_fields}
    env = _environment(compose_services[name])

    unknown = sorted(set(env) - known)
    assert not unknown, f"{name} sets variables {settings_cls.__name__} does not read: {unknown}"

    required = {
        "KAFKA_BOOTSTRAP_SERVERS",
        f"{name.upper()}_DATABASE_URL",
        f"{name.upper()}_PORT",
        "SERVICE_HOST",
    }
    unset = sorted(key for key in required if env.get(key) in (None, ""))
    assert not unset, f"{name} does not set {unset}"
    assert _env_str(compose_services[name], "SERVICE_HOST") == "0.0.0.0"

    # The values must also be valid for the settings class (types, e.g. ports).
    values = {key.lower(): _interpolate(str(value)) for key, value in env.items()}
    settings = settings_cls.model_validate(values)
    assert getattr(settings, f"{name}_port") == SERVICE_PORTS[name]


@pytest.mark.parametrize("name", SERVICES)
def test_service_database_url(compose_services: dict[str, dict[str, Any]], name: str) -> None:
    url = urlsplit(_env_str(compose_services[name], f"{name.upper()}_DATABASE_URL"))
    assert url.scheme in ("postgresql", "postgres")
    assert url.hostname == "postgres" and url.hostname in compose_services
    assert (url.port or 5432) == 5432
    assert url.path == f"/{name}"
    assert name in _databases_created_by_init_script()


@pytest.mark.parametrize("name", SERVICES)
def test_service_kafka_bootstrap_is_advertised(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    bootstrap = _env_str(compose_services[name], "KAFKA_BOOTSTRAP_SERVERS")
    advertised = _advertised_addresses(compose_services["kafka"])
    for server in bootstrap.split(","):
        assert _host_port(server.strip()) in advertised, (
            f"{name} bootstraps from {server}, which the broker does not advertise"
        )


@pytest.mark.parametrize("name", SERVICES)
def test_service_telemetry_goes_to_collector(
    compose_services: dict[str, dict[str, Any]],
    collector_config: dict[str, Any],
    name: str,
) -> None:
    service = compose_services[name]
    assert _env_str(service, "OTEL_TRACES_EXPORTER") == "otlp"
    endpoint = _env_str(service, "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert endpoint.startswith("http://")
    host, port = _host_port(endpoint)
    assert host == "otel-collector" and host in compose_services
    http_endpoint = collector_config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert port == _host_port(http_endpoint)[1], "endpoint is not the collector's OTLP/HTTP port"
    # The admin key comes from the caller's environment, with a local default.
    assert str(_environment(service)["PLATFORM_ADMIN_KEY"]).startswith("${PLATFORM_ADMIN_KEY")


@pytest.mark.parametrize("name", SERVICES)
def test_service_healthcheck_and_dependencies(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    service = compose_services[name]
    assert f":{SERVICE_PORTS[name]}/ready" in _healthcheck_text(service)
    deps = _depends_on(service)
    assert deps.get("kafka-init") == "service_completed_successfully"
    assert deps.get("postgres") == "service_healthy"


# --------------------------------------------------------------------------
# Kafka and PostgreSQL
# --------------------------------------------------------------------------


def _listener_map(value: str) -> dict[str, str]:
    """`NAME://host:port,...` -> {NAME: "host:port"}."""
    result: dict[str, str] = {}
    for item in value.split(","):
        listener, _, address = item.strip().partition("://")
        result[listener] = address
    return result


def _advertised_addresses(kafka: dict[str, Any]) -> set[tuple[str, int]]:
    advertised = _listener_map(_env_str(kafka, "KAFKA_ADVERTISED_LISTENERS"))
    return {_host_port(address) for address in advertised.values()}


def test_kafka_is_official_image_in_kraft_mode(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    kafka = compose_services["kafka"]
    image = kafka["image"]
    assert image.startswith("apache/kafka:"), image
    assert re.fullmatch(r"3\.9\.\d+|4\.\d+\.\d+", _image_tag(image)), image

    env = _environment(kafka)
    roles = {role.strip() for role in str(env.get("KAFKA_PROCESS_ROLES", "")).split(",")}
    assert roles == {"broker", "controller"}, "single node: KAFKA_PROCESS_ROLES=broker,controller"
    assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS")
    assert not any("ZOOKEEPER" in key for key in env), "KRaft mode needs no ZooKeeper settings"
    assert not any(
        "zookeeper" in str(service.get("image", "")) for service in compose_services.values()
    ), "no ZooKeeper container in KRaft mode"
    assert kafka.get("healthcheck"), "kafka needs a healthcheck"


def test_kafka_listeners_are_consistent(compose_services: dict[str, dict[str, Any]]) -> None:
    kafka = compose_services["kafka"]
    listeners = _listener_map(_env_str(kafka, "KAFKA_LISTENERS"))
    advertised = _listener_map(_env_str(kafka, "KAFKA_ADVERTISED_LISTENERS"))
    protocol_names = {
        item.split(":")[0].strip()
        for item in _env_str(kafka, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP").split(",")
    }
    controller = _env_str(kafka, "KAFKA_CONTROLLER_LISTENER_NAMES")
    assert set(advertised) <= set(listeners)
    assert set(listeners) <= protocol_names
    assert controller in listeners and controller not in advertised
    inter_broker = _environment(kafka).get("KAFKA_INTER_BROKER_LISTENER_NAME")
    if inter_broker is not None:
        assert inter_broker in advertised
    # Other containers reach the broker as kafka:<port>.
    assert any(host == "kafka" for host, _port in _advertised_addresses(kafka))
    # Every advertised listener's port is reachable: either it is the
    # in-network listener or a published port maps onto the listener.
    published = dict(_published_ports(kafka))
    for name, address in advertised.items():
        host, port = _host_port(address)
        listener_port = int(listeners[name].rsplit(":", 1)[1])
        if host == "kafka":
            assert port == listener_port, f"{name}: advertised port differs from listener port"
        else:
            assert published.get(str(port)) == str(listener_port), (
                f"{name} advertises {address} but host port {port} is not published "
                f"onto container port {listener_port}"
            )


def _topics_created(kafka_init: dict[str, Any]) -> dict[str, int]:
    # The entrypoint is a shell (`bash -ec`); the command is the script.
    script = "\n".join(_as_argv(kafka_init.get("command")))
    topics: dict[str, int] = {}
    for line in script.replace("&&", "\n").replace(";", "\n").splitlines():
        argv = shlex.split(line)
        if not argv or not argv[0].endswith("kafka-topics.sh") or "--create" not in argv:
            continue
        assert argv[0] == "/opt/kafka/bin/kafka-topics.sh", argv[0]
        topic = argv[argv.index("--topic") + 1]
        assert topic not in topics, f"topic {topic} created twice"
        topics[topic] = int(argv[argv.index("--partitions") + 1])
    return topics


def test_kafka_init_creates_topics(compose_services: dict[str, dict[str, Any]]) -> None:
    kafka_init = compose_services["kafka-init"]
    assert kafka_init.get("image") == compose_services["kafka"]["image"]
    assert _depends_on(kafka_init).get("kafka") == "service_healthy"
    assert _topics_created(kafka_init) == EXPECTED_TOPICS

    script = " ".join(_as_argv(kafka_init.get("command")))
    advertised = _advertised_addresses(compose_services["kafka"])
    for server in re.findall(r"--bootstrap-server\s+(\S+)", script):
        assert _host_port(server) in advertised


def _databases_created_by_init_script() -> set[str]:
    assert POSTGRES_INIT_SQL.is_file(), "deploy/postgres/init-databases.sql is missing"
    sql = POSTGRES_INIT_SQL.read_text(encoding="utf-8")
    return set(re.findall(r"(?im)^\s*CREATE\s+DATABASE\s+\"?(\w+)\"?", sql))


def test_postgres_creates_one_database_per_service(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    postgres = compose_services["postgres"]
    assert postgres["image"].split(":")[0] == "postgres"
    assert _image_tag(postgres["image"]).startswith("16")
    assert postgres.get("healthcheck")
    assert _databases_created_by_init_script() == set(SERVICES)
    targets = {
        (COMPOSE_FILE.parent / source).resolve(): target
        for source, target in _bind_mounts(postgres)
    }
    target = targets.get(POSTGRES_INIT_SQL)
    assert target is not None, "init-databases.sql is not mounted into the postgres container"
    assert target.startswith("/docker-entrypoint-initdb.d/") and target.endswith(".sql")


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined, comments dropped."""
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def _index(instructions: list[tuple[str, str]], keyword: str, pattern: str) -> int:
    for i, (kw, args) in enumerate(instructions):
        if kw == keyword and re.search(pattern, args):
            return i
    raise AssertionError(f"Dockerfile has no {keyword} matching {pattern!r}")


def test_dockerfile_base_image_and_dependency_layer() -> None:
    instructions = _dockerfile_instructions()
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert froms and re.match(r"python:3\.11([.-]|$)", froms[-1]), froms

    install_uv = _index(instructions, "RUN", r"pip install .*\buv==\d")
    copy_lock = _index(instructions, "COPY", r"\buv\.lock\b")
    assert "pyproject.toml" in instructions[copy_lock][1], "copy pyproject.toml with uv.lock"
    sync = _index(instructions, "RUN", r"\buv sync\b")
    assert "--frozen" in instructions[sync][1] and "--no-dev" in instructions[sync][1]
    copy_shared = _index(instructions, "COPY", r"(^|\s)\.?/?shared/?(\s|$)")
    copy_services = _index(instructions, "COPY", r"(^|\s)\.?/?services/?(\s|$)")
    # Dependencies are installed before the code is copied (layer cache).
    assert install_uv < copy_lock < sync < min(copy_shared, copy_services)


def test_dockerfile_runtime() -> None:
    instructions = _dockerfile_instructions()
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "run as a non-root user"
    env = " ".join(args for kw, args in instructions if kw == "ENV")
    assert re.search(r"PATH=/app/\.venv/bin:\$\{?PATH\}?", env), "put /app/.venv/bin on PATH"
    cmd = [args for kw, args in instructions if kw == "CMD"]
    assert cmd, "Dockerfile has no CMD"
    argv = json.loads(cmd[-1])
    assert argv[:2] == ["python", "-m"] and argv[2].removeprefix("services.") in SERVICES


def test_dockerignore_keeps_build_inputs() -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = {
        line.strip().removeprefix("/").removeprefix("**/").rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "!"))
    }
    assert {".venv", ".git"} <= patterns
    needed = {"pyproject.toml", "uv.lock", "shared", "services", "Dockerfile", "*", "**"}
    assert not patterns & needed, f".dockerignore excludes build inputs: {patterns & needed}"


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
        host, _port = _host_port(protocols[protocol]["endpoint"])
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
        and _host_port(exporters[exporter_id]["endpoint"])[0] == "jaeger"
    ]
    assert jaeger_exporters, "no traces pipeline from the otlp receiver to jaeger"
    jaeger = compose_services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert _env_str(jaeger, "COLLECTOR_OTLP_ENABLED") == "true"
    assert ("16686", "16686") in _published_ports(jaeger), "Jaeger UI on port 16686"

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
        for source, target in _bind_mounts(collector)
    }
    target = mounts.get(COLLECTOR_CONFIG)
    assert target is not None, "config.yaml is not mounted into the collector"
    config_args = [arg for arg in _as_argv(collector.get("command")) if "--config" in arg]
    if config_args:
        assert config_args == [f"--config={target}"]
    else:
        assert target == "/etc/otelcol-contrib/config.yaml"


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------


def _scrape_targets(prometheus_config: dict[str, Any]) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for job in prometheus_config["scrape_configs"]:
        name = job["job_name"]
        assert name not in jobs, f"duplicate job {name}"
        targets = [t for static in job.get("static_configs", []) for t in static["targets"]]
        assert job.get("metrics_path", "/metrics") == "/metrics", name
        jobs[name] = targets
    return jobs


def test_prometheus_scrapes_every_service(prometheus_config: dict[str, Any]) -> None:
    jobs = _scrape_targets(prometheus_config)
    for name, port in SERVICE_PORTS.items():
        # The job is named after the service: dashboards filter HTTP metrics by job.
        assert jobs.get(name) == [f"{name}:{port}"], f"job {name} must scrape {name}:{port}"


def test_prometheus_scrapes_collector(
    prometheus_config: dict[str, Any], collector_config: dict[str, Any]
) -> None:
    jobs = _scrape_targets(prometheus_config)
    exporter_ports = {
        _host_port(spec["endpoint"])[1]
        for exporter_id, spec in (collector_config.get("exporters") or {}).items()
        if _component_type(exporter_id) == "prometheus"
    }
    scraped = {
        _host_port(target)[1]
        for targets in jobs.values()
        for target in targets
        if _host_port(target)[0] == "otel-collector"
    }
    assert exporter_ports and exporter_ports <= scraped


def test_prometheus_targets_are_compose_services(
    prometheus_config: dict[str, Any], compose_services: dict[str, dict[str, Any]]
) -> None:
    for job, targets in _scrape_targets(prometheus_config).items():
        for target in targets:
            host, _port = _host_port(target)
            assert host in compose_services or host == "localhost", f"{job}: {target}"


def test_prometheus_container_uses_config(compose_services: dict[str, dict[str, Any]]) -> None:
    prometheus = compose_services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target
        for source, target in _bind_mounts(prometheus)
    }
    assert mounts.get(PROMETHEUS_CONFIG) == "/etc/prometheus/prometheus.yml"


# --------------------------------------------------------------------------
# Grafana provisioning
# --------------------------------------------------------------------------


def test_grafana_container(compose_services: dict[str, dict[str, Any]]) -> None:
    grafana = compose_services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert _env_str(grafana, "GF_AUTH_ANONYMOUS_ENABLED") == "true"
    assert _env_str(grafana, "GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"
    assert ("3000", "3000") in _published_ports(grafana)
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target for source, target in _bind_mounts(grafana)
    }
    for kind in ("datasources", "dashboards"):
        assert mounts.get(GRAFANA_PROVISIONING / kind) == f"/etc/grafana/provisioning/{kind}"
    home = _environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home is not None:
        dashboards_target = mounts.get(GRAFANA_DASHBOARD.parent)
        assert dashboards_target is not None, "deploy/grafana/dashboards is not mounted"
        relative = Path(str(home)).relative_to(dashboards_target)
        assert (GRAFANA_DASHBOARD.parent / relative).is_file(), f"no home dashboard {home}"


def test_grafana_datasources(
    grafana_datasources: list[dict[str, Any]], compose_services: dict[str, dict[str, Any]]
) -> None:
    by_type = {ds["type"]: ds for ds in grafana_datasources}
    assert {"prometheus", "jaeger"} <= set(by_type)
    uids = [ds.get("uid") for ds in grafana_datasources]
    assert all(uids) and len(set(uids)) == len(uids), "every datasource needs a unique uid"

    prometheus_host, prometheus_port = _host_port(by_type["prometheus"]["url"])
    assert prometheus_host == "prometheus" and prometheus_port == 9090
    jaeger_host, jaeger_port = _host_port(by_type["jaeger"]["url"])
    assert jaeger_host == "jaeger" and jaeger_port == 16686
    assert {prometheus_host, jaeger_host} <= set(compose_services)


def test_grafana_dashboard_provider_points_at_mounted_dashboards(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    data = _load_yaml(GRAFANA_DASHBOARD_PROVIDERS)
    assert data.get("apiVersion") == 1
    providers = data["providers"]
    assert providers
    mounts = {
        (COMPOSE_FILE.parent / source).resolve(): target
        for source, target in _bind_mounts(compose_services["grafana"])
    }
    dashboards_target = mounts.get(GRAFANA_DASHBOARD.parent)
    assert dashboards_target is not None, "deploy/grafana/dashboards is not mounted"
    paths = {provider["options"]["path"].rstrip("/") for provider in providers}
    assert all(provider.get("type", "file") == "file" for provider in providers)
    assert dashboards_target.rstrip("/") in paths


# --------------------------------------------------------------------------
# Grafana dashboard
# --------------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All non-row panels, including those nested in collapsed rows."""
    result: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            result.extend(panel.get("panels", []))
        else:
            result.append(panel)
    return result


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [str(t["expr"]) for panel in _panels(dashboard) for t in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            exprs.append(str(query.get("query", "")) if isinstance(query, dict) else str(query))
    return exprs


_PROMQL_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_PROMQL_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_PROMQL_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_PROMQL_RANGE = re.compile(r"\[[^\]]*\]")
_PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_PROMQL_IDENT = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "atan2"}
)


class PromQLUse(NamedTuple):
    series: set[str]  # metric (series) names
    selector_labels: dict[str, set[str]]  # series name -> labels in its {...} matchers
    grouping_labels: set[str]  # labels in by/without/on/ignoring/group_* clauses


def _parse_promql(expr: str) -> PromQLUse:
    """Metric names and labels an expression uses (enough for dashboard queries)."""
    text = _PROMQL_STRING.sub('""', expr)
    # Grafana's label_values(metric, label) / label_values(label).
    text = re.sub(r"\blabel_values\(([^,)]*),[^)]*\)", r"\1", text)
    selector_labels: dict[str, set[str]] = {}
    for match in _PROMQL_SELECTOR.finditer(text):
        labels = set(_PROMQL_MATCHER.findall(match.group(2)))
        if match.group(1):
            selector_labels.setdefault(match.group(1), set()).update(labels)
        elif "__name__" in labels:
            raise AssertionError(f"select metrics by name, not by __name__: {expr}")
    text = _PROMQL_SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _PROMQL_RANGE.sub(" ", text)
    grouping: set[str] = set()
    for match in _PROMQL_GROUPING.finditer(text):
        grouping.update(label.strip() for label in match.group(1).split(",") if label.strip())
    text = _PROMQL_GROUPING.sub(" ", text)
    series = {name for name in _PROMQL_IDENT.findall(text) if name.lower() not in _PROMQL_KEYWORDS}
    return PromQLUse(series | set(selector_labels), selector_labels, grouping)


def test_promql_parser_sees_metrics_and_labels() -> None:
    use = _parse_promql(
        "histogram_quantile(0.99, sum by (service, le) "
        '(rate(event_processing_seconds_bucket{service=~"$service", topic!="x{y}"}'
        "[$__rate_interval])))"
    )
    assert use.series == {"event_processing_seconds_bucket"}
    assert use.selector_labels == {"event_processing_seconds_bucket": {"service", "topic"}}
    assert use.grouping_labels == {"service", "le"}
    assert _parse_promql("sum(outbox_backlog) / ignoring(x) up").series == {
        "outbox_backlog",
        "up",
    }


def test_dashboard_panels_have_datasource_and_targets(
    dashboard: dict[str, Any], grafana_datasources: list[dict[str, Any]]
) -> None:
    assert dashboard.get("uid") and dashboard.get("title")
    panels = _panels(dashboard)
    assert panels, "the dashboard has no panels"
    rows = [panel for panel in dashboard.get("panels", []) if panel.get("type") == "row"]
    ids = [panel.get("id") for panel in rows + panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provisioned = {ds["uid"]: ds["type"] for ds in grafana_datasources}
    for panel in panels:
        title = panel.get("title")
        datasource = panel.get("datasource")
        assert isinstance(datasource, dict), f"panel {title!r} has no datasource"
        assert provisioned.get(datasource.get("uid")) == datasource.get("type"), (
            f"panel {title!r} uses datasource {datasource}, which is not provisioned"
        )
        targets = panel.get("targets")
        assert targets, f"panel {title!r} has no targets"
        for target in targets:
            assert str(target.get("expr", "")).strip(), f"panel {title!r} has an empty query"
            assert target.get("refId"), f"panel {title!r} has a target without refId"
            if "datasource" in target:
                assert target["datasource"].get("uid") == datasource.get("uid")
        grid = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= set(grid), f"panel {title!r} has no gridPos"


def test_dashboard_uses_only_exposed_metrics(dashboard: dict[str, Any]) -> None:
    for expr in _expressions(dashboard):
        use = _parse_promql(expr)
        unknown = sorted(use.series - set(SERIES_TO_METRIC))
        assert not unknown, f"{expr}\nuses metrics not in SERVICE_METRICS: {unknown}"
        allowed_everywhere = set(SCRAPE_LABELS)
        for series, labels in use.selector_labels.items():
            allowed = set(SERIES_TO_METRIC[series].labels) | allowed_everywhere
            if series.endswith("_bucket"):
                allowed.add("le")
            assert labels <= allowed, f"{expr}\n{series} has no labels {labels - allowed}"
        grouping_allowed = allowed_everywhere | {"le"}
        for series in use.series:
            grouping_allowed |= set(SERIES_TO_METRIC[series].labels)
        assert use.grouping_labels <= grouping_allowed, (
            f"{expr}\ngroups by unknown labels {use.grouping_labels - grouping_allowed}"
        )


def test_dashboard_shows_every_metric(dashboard: dict[str, Any]) -> None:
    used = {
        SERIES_TO_METRIC[series].name
        for expr in _expressions(dashboard)
        for series in _parse_promql(expr).series
        if series in SERIES_TO_METRIC
    }
    assert used == set(SERVICE_METRIC_NAMES), (
        f"not on the dashboard: {set(SERVICE_METRIC_NAMES) - used}"
    )


def test_dashboard_service_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    service = variables.get("service")
    assert service is not None, "the dashboard needs a `service` variable"
    if service.get("type") == "custom":
        values = {value.strip() for value in str(service["query"]).split(",")}
        assert values == set(SERVICES)
    # Every query is filtered by the variable.
    for expr in _expressions(dashboard):
        if service.get("type") != "query" or expr != service.get("query"):
            assert "$service" in expr, f"query not filtered by $service: {expr}"
