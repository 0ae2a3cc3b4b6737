"""Where the integration tests find Kafka and PostgreSQL (`infra_source.choose_infra`)."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

import pytest

from tests.integration.infra_source import (
    DEFAULT_ADMIN_DSN,
    DEFAULT_BOOTSTRAP_SERVERS,
    InfraSource,
    choose_infra,
    named_infra,
)


class Probe:
    """A probe answering `answer`, counting its calls."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> Awaitable[bool]:
        self.calls += 1

        async def answered() -> bool:
            return self.answer

        return answered()


async def choose(
    env: Mapping[str, str], *, local: bool, docker: bool
) -> tuple[InfraSource, Probe, Probe]:
    local_probe, docker_probe = Probe(local), Probe(docker)
    source = await choose_infra(env, local_answers=local_probe, docker_answers=docker_probe)
    return source, local_probe, docker_probe


@pytest.mark.parametrize(
    "env",
    [
        {"KAFKA_BOOTSTRAP_SERVERS": "localhost:10092"},
        {"TEST_DATABASE_ADMIN_URL": "postgresql://postgres:postgres@localhost:6432/postgres"},
    ],
)
async def test_servers_named_in_the_environment_are_used_without_probing(
    env: dict[str, str],
) -> None:
    source, local, docker = await choose(env, local=True, docker=True)
    assert source is InfraSource.ENVIRONMENT
    assert (local.calls, docker.calls) == (0, 0)


async def test_the_local_servers_when_they_answer_even_with_a_docker_engine() -> None:
    source, _, docker = await choose({}, local=True, docker=True)
    assert source is InfraSource.LOCAL
    assert docker.calls == 0


async def test_testcontainers_when_only_a_docker_engine_answers() -> None:
    source, local, docker = await choose({}, local=False, docker=True)
    assert source is InfraSource.TESTCONTAINERS
    assert (local.calls, docker.calls) == (1, 1)


async def test_nothing_answers_the_local_servers_are_chosen_to_fail_with_advice() -> None:
    source, _, _ = await choose({}, local=False, docker=False)
    assert source is InfraSource.LOCAL


@pytest.mark.parametrize("forced", list(InfraSource))
async def test_test_infra_forces_the_choice(forced: InfraSource) -> None:
    env = {"TEST_INFRA": forced.value, "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"}
    source, local, docker = await choose(env, local=False, docker=False)
    assert source is forced
    assert (local.calls, docker.calls) == (0, 0)


async def test_an_unknown_test_infra_is_an_error_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="environment, local, testcontainers"):
        await choose({"TEST_INFRA": "docker"}, local=True, docker=True)


def test_named_infra_falls_back_to_the_local_defaults() -> None:
    assert named_infra({}) == named_infra({"KAFKA_BOOTSTRAP_SERVERS": ""})
    assert named_infra({}).bootstrap_servers == DEFAULT_BOOTSTRAP_SERVERS
    assert named_infra({}).admin_dsn == DEFAULT_ADMIN_DSN
    named = named_infra({"KAFKA_BOOTSTRAP_SERVERS": "localhost:10092"})
    assert named.bootstrap_servers == "localhost:10092"
