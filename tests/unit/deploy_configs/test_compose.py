"""docker-compose.yml: its services, the application services' settings, Kafka and PostgreSQL."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.settings import SERVICE_PORTS, SETTINGS_BY_SERVICE
from tests.integration.support import platform_topics
from tests.unit.deploy_configs.files import (
    COMPOSE_FILE,
    DOCKERFILE,
    EXPECTED_TOPICS,
    INFRA_SERVICES,
    POSTGRES_INIT_SQL,
    REPO_ROOT,
    SERVICES,
    as_argv,
    bind_mounts,
    depends_on,
    env_str,
    environment,
    healthcheck_text,
    host_port,
    image_tag,
    interpolate,
    published_ports,
)

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
        and image_tag(service["image"]) in ("", "latest")
    ]
    assert not unpinned, f"images without a version tag: {unpinned}"


# Keys a compose service may have (those this file uses and a few common ones): a
# service nested by mistake inside a shared fragment (`x-app-service`) shows up here.
COMPOSE_SERVICE_KEYS = {
    "build", "command", "container_name", "depends_on", "entrypoint", "environment",
    "healthcheck", "hostname", "image", "labels", "ports", "restart", "user", "volumes",
    "working_dir",
}  # fmt: skip


def test_compose_services_have_only_service_keys(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    strays = {name: sorted(set(s) - COMPOSE_SERVICE_KEYS) for name, s in compose_services.items()}
    assert not {name: keys for name, keys in strays.items() if keys}
    assert compose_services["portal"]["command"] == ["python", "-m", "services.portal"]
    for name in SERVICES:
        assert "otel-collector" in depends_on(compose_services[name]), name


def test_compose_runs_the_local_stacks_versions(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    """Kafka: the jars deploy/local/kafka.sh runs; PostgreSQL: the major infra.sh needs."""
    pom = (REPO_ROOT / "deploy" / "local" / "kafka" / "pom.xml").read_text()
    kafka = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    infra = (REPO_ROOT / "deploy" / "local" / "infra.sh").read_text()
    postgres = re.search(r"^PG_MIN_MAJOR=(\d+)$", infra, re.MULTILINE)
    assert kafka and postgres
    assert image_tag(compose_services["kafka"]["image"]) == kafka.group(1)
    assert image_tag(compose_services["kafka-init"]["image"]) == kafka.group(1)
    assert image_tag(compose_services["postgres"]["image"]) == postgres.group(1)


def test_compose_notification_delivers_to_the_mail_catcher(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    env = compose_services["notification"]["environment"]
    assert (
        str(env["SMTP_HOST"]).endswith(":-mailpit}")
        and str(env["SMTP_PORT"]) == "${SMTP_PORT:-1025}"
    )
    assert compose_services["mailpit"]["image"].startswith("axllent/mailpit:v")


def test_compose_dependencies_are_satisfiable(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    for name, service in compose_services.items():
        for dependency, condition in depends_on(service).items():
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
        for source, _target in bind_mounts(service):
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
        for host, _container in published_ports(service):
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
        for key, value in environment(service).items():
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
# docker-compose.yml: the application services
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
    argv = as_argv(compose_services[name].get("command"))
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
    assert published_ports(service) == [(str(port), str(port))]
    assert env_str(service, f"{name.upper()}_PORT") == str(port)


@pytest.mark.parametrize("name", SERVICES)
def test_service_environment_matches_settings(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    settings_cls = SETTINGS_BY_SERVICE[name]
    known = {field.upper() for field in settings_cls.model_fields}
    env = environment(compose_services[name])

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
    assert env_str(compose_services[name], "SERVICE_HOST") == "0.0.0.0"

    # The values must also be valid for the settings class (types, e.g. ports).
    values = {key.lower(): interpolate(str(value)) for key, value in env.items()}
    settings = settings_cls.model_validate(values)
    assert getattr(settings, f"{name}_port") == SERVICE_PORTS[name]


@pytest.mark.parametrize("name", SERVICES)
def test_service_database_url(compose_services: dict[str, dict[str, Any]], name: str) -> None:
    url = urlsplit(env_str(compose_services[name], f"{name.upper()}_DATABASE_URL"))
    assert url.scheme in ("postgresql", "postgres")
    assert url.hostname == "postgres" and url.hostname in compose_services
    assert (url.port or 5432) == 5432
    assert url.path == f"/{name}"
    assert name in _databases_created_by_init_script()


@pytest.mark.parametrize("name", SERVICES)
def test_service_kafka_bootstrap_is_advertised(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    bootstrap = env_str(compose_services[name], "KAFKA_BOOTSTRAP_SERVERS")
    advertised = _advertised_addresses(compose_services["kafka"])
    for server in bootstrap.split(","):
        assert host_port(server.strip()) in advertised, (
            f"{name} bootstraps from {server}, which the broker does not advertise"
        )


@pytest.mark.parametrize("name", SERVICES)
def test_service_telemetry_goes_to_collector(
    compose_services: dict[str, dict[str, Any]],
    collector_config: dict[str, Any],
    name: str,
) -> None:
    service = compose_services[name]
    assert env_str(service, "OTEL_TRACES_EXPORTER") == "otlp"
    endpoint = env_str(service, "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert endpoint.startswith("http://")
    host, port = host_port(endpoint)
    assert host == "otel-collector" and host in compose_services
    http_endpoint = collector_config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert port == host_port(http_endpoint)[1], "endpoint is not the collector's OTLP/HTTP port"
    # The admin key comes from the caller's environment, with a local default.
    assert str(environment(service)["PLATFORM_ADMIN_KEY"]).startswith("${PLATFORM_ADMIN_KEY")


@pytest.mark.parametrize("name", SERVICES)
def test_service_healthcheck_and_dependencies(
    compose_services: dict[str, dict[str, Any]], name: str
) -> None:
    service = compose_services[name]
    assert f":{SERVICE_PORTS[name]}/ready" in healthcheck_text(service)
    deps = depends_on(service)
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
    advertised = _listener_map(env_str(kafka, "KAFKA_ADVERTISED_LISTENERS"))
    return {host_port(address) for address in advertised.values()}


def test_kafka_is_official_image_in_kraft_mode(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    kafka = compose_services["kafka"]
    image = kafka["image"]
    assert image.startswith("apache/kafka:"), image
    assert re.fullmatch(r"3\.9\.\d+|4\.\d+\.\d+", image_tag(image)), image

    env = environment(kafka)
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
    listeners = _listener_map(env_str(kafka, "KAFKA_LISTENERS"))
    advertised = _listener_map(env_str(kafka, "KAFKA_ADVERTISED_LISTENERS"))
    protocol_names = {
        item.split(":")[0].strip()
        for item in env_str(kafka, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP").split(",")
    }
    controller = env_str(kafka, "KAFKA_CONTROLLER_LISTENER_NAMES")
    assert set(advertised) <= set(listeners)
    assert set(listeners) <= protocol_names
    assert controller in listeners and controller not in advertised
    inter_broker = environment(kafka).get("KAFKA_INTER_BROKER_LISTENER_NAME")
    if inter_broker is not None:
        assert inter_broker in advertised
    # Other containers reach the broker as kafka:<port>.
    assert any(host == "kafka" for host, _port in _advertised_addresses(kafka))
    # Every advertised listener's port is reachable: either it is the
    # in-network listener or a published port maps onto the listener.
    published = dict(published_ports(kafka))
    for name, address in advertised.items():
        host, port = host_port(address)
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
    script = "\n".join(as_argv(kafka_init.get("command")))
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
    assert depends_on(kafka_init).get("kafka") == "service_healthy"
    assert _topics_created(kafka_init) == EXPECTED_TOPICS

    script = " ".join(as_argv(kafka_init.get("command")))
    advertised = _advertised_addresses(compose_services["kafka"])
    for server in re.findall(r"--bootstrap-server\s+(\S+)", script):
        assert host_port(server) in advertised


def test_topic_list_is_the_compose_one() -> None:
    # shared.topics: what `python -m shared.topics create` (infra.sh) creates, and the
    # integration tests under their prefix.
    assert platform_topics() == EXPECTED_TOPICS


def _databases_created_by_init_script() -> set[str]:
    assert POSTGRES_INIT_SQL.is_file(), "deploy/postgres/init-databases.sql is missing"
    sql = POSTGRES_INIT_SQL.read_text(encoding="utf-8")
    return set(re.findall(r"(?im)^\s*CREATE\s+DATABASE\s+\"?(\w+)\"?", sql))


def test_postgres_creates_one_database_per_service(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    postgres = compose_services["postgres"]
    assert postgres["image"].split(":")[0] == "postgres"
    assert postgres.get("healthcheck")
    assert _databases_created_by_init_script() == set(SERVICES)
    targets = {
        (COMPOSE_FILE.parent / source).resolve(): target for source, target in bind_mounts(postgres)
    }
    target = targets.get(POSTGRES_INIT_SQL)
    assert target is not None, "init-databases.sql is not mounted into the postgres container"
    assert target.startswith("/docker-entrypoint-initdb.d/") and target.endswith(".sql")
