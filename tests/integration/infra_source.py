"""Where the integration tests find Kafka and PostgreSQL: the servers the environment
names, the local ones `deploy/local/infra.sh` provisions, or containers in a Docker
engine (`choose_infra`, used by `conftest.py`'s session fixture)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum

from tests.integration.support import Infra

# Servers named by these are used as they are (an unreachable one fails the tests).
INFRA_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "TEST_DATABASE_ADMIN_URL")
DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"
DEFAULT_ADMIN_DSN = "postgresql://postgres:postgres@localhost:5432/postgres"
# The containers' images: Kafka 3.9 (Confluent's 7.9 build, which testcontainers'
# KafkaContainer runs) in KRaft mode, and the PostgreSQL of docker-compose.yml.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
POSTGRES_IMAGE = "postgres:15"


class InfraSource(StrEnum):
    """Where the integration tests find Kafka and PostgreSQL."""

    ENVIRONMENT = "environment"  # the servers INFRA_VARIABLES name
    LOCAL = "local"  # localhost:9092 and :5432, as deploy/local/infra.sh provisions them
    TESTCONTAINERS = "testcontainers"  # started for the session in a Docker engine


async def choose_infra(
    env: Mapping[str, str],
    *,
    local_answers: Callable[[], Awaitable[bool]],
    docker_answers: Callable[[], Awaitable[bool]],
) -> InfraSource:
    """The one place that decides where the broker and the server come from.

    TEST_INFRA (`environment`, `local` or `testcontainers`) forces the choice. Otherwise
    servers named in the environment (INFRA_VARIABLES) are used, never replaced; with
    none named, the local servers when they answer (`make test` starts them first),
    else containers when a Docker engine answers, else the local servers again (the
    `infra` fixture then fails, saying how to start them). The probes run only when
    the decision needs them.
    """
    forced = env.get("TEST_INFRA", "").strip()
    if forced:
        try:
            return InfraSource(forced)
        except ValueError:
            choices = ", ".join(source.value for source in InfraSource)
            raise ValueError(f"TEST_INFRA={forced!r}: expected one of {choices}") from None
    if any(env.get(name) for name in INFRA_VARIABLES):
        return InfraSource.ENVIRONMENT
    if await local_answers():
        return InfraSource.LOCAL
    if await docker_answers():
        return InfraSource.TESTCONTAINERS
    return InfraSource.LOCAL


def named_infra(env: Mapping[str, str]) -> Infra:
    """The servers of the environment, or the local defaults."""
    return Infra(
        bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP_SERVERS,
        admin_dsn=env.get("TEST_DATABASE_ADMIN_URL") or DEFAULT_ADMIN_DSN,
    )


def docker_engine_answers() -> bool:
    """True if a Docker engine answers a ping (DOCKER_HOST or the default socket)."""
    import docker  # testcontainers' dependency

    try:
        client = docker.from_env(timeout=5)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@contextmanager
def containers() -> Iterator[Infra]:
    """Kafka and PostgreSQL in containers (testcontainers' modules) while the block runs."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    kafka = (
        KafkaContainer(KAFKA_IMAGE)
        .with_kraft()
        # as deploy/local/infra.sh configures its broker
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    postgres = PostgresContainer(
        POSTGRES_IMAGE, username="postgres", password="postgres", dbname="postgres", driver=None
    ).with_command("postgres -c max_connections=300")
    with kafka, postgres:
        yield Infra(
            bootstrap_servers=kafka.get_bootstrap_server(),
            admin_dsn=postgres.get_connection_url(),
        )
