"""Fixtures of the integration tests: a fresh database and fresh topics per test.

Where the broker and the server come from is decided once per session by
`infra_source.choose_infra`:
  - KAFKA_BOOTSTRAP_SERVERS / TEST_DATABASE_ADMIN_URL (a superuser DSN used to create
    and drop the per-test databases) name existing servers: those are used;
  - otherwise the local ones, localhost:9092 and
    postgresql://postgres:postgres@localhost:5432/postgres, that `make test` starts
    with `bash deploy/local/infra.sh up`;
  - if those do not answer and a Docker engine does, Kafka and PostgreSQL are started
    for the session with testcontainers (`infra_source.containers`);
  - TEST_INFRA=environment|local|testcontainers forces one of these.
Unreachable servers fail the tests; ALLOW_SKIP_INTEGRATION=1 skips them instead.

The service processes the tests start run under TOPIC_PREFIX=`test.`
(`support.TEST_TOPIC_PREFIX`): the `infra` fixture creates those topics
(`shared.topics`, prefixed) once per session if they are missing, with the
replication `python -m shared.topics create` uses (min(3, brokers)).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared import topics as shared_topics
from shared.db import create_pool, migrate
from tests.integration.infra_source import (
    InfraSource,
    choose_infra,
    containers,
    docker_engine_answers,
    named_infra,
)
from tests.integration.support import (
    FreshDatabase,
    FreshTopics,
    Infra,
    Processes,
    fresh_databases,
    platform_topics,
    sole_scheduler,
    topic_under_test,
)

TEST_MIGRATIONS = Path(__file__).parent / "migrations"
EVENT_PARTITIONS = 3


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return dsn


async def _check_postgres(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception as exc:
        return f"PostgreSQL at {_redact(dsn)} is unreachable: {exc!r}"
    await conn.close()
    return None


async def _check_kafka(bootstrap_servers: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await asyncio.wait_for(admin.describe_cluster(), 10)
    except Exception as exc:
        return f"Kafka at {bootstrap_servers} is unreachable: {exc!r}"
    finally:
        await admin.close()
    return None


async def _problems(infra: Infra) -> list[str]:
    found = await asyncio.gather(
        _check_postgres(infra.admin_dsn), _check_kafka(infra.bootstrap_servers)
    )
    return [p for p in found if p]


@pytest.fixture(scope="session")
async def infra() -> AsyncIterator[Infra]:
    """The real broker and server, chosen and checked once; fail (or skip) if either is missing."""
    env = dict(os.environ)
    local = named_infra({})

    async def local_answers() -> bool:
        return not await _problems(local)

    async def docker_answers() -> bool:
        return await asyncio.to_thread(docker_engine_answers)

    source = await choose_infra(env, local_answers=local_answers, docker_answers=docker_answers)
    with ExitStack() as stack:
        if source is InfraSource.TESTCONTAINERS:
            found = await asyncio.to_thread(stack.enter_context, containers())
        else:
            found = named_infra(env) if source is InfraSource.ENVIRONMENT else local
        problems = await _problems(found)
        if problems:
            message = (
                f"integration tests need the real Kafka broker and PostgreSQL server ({source}): "
                + "; ".join(problems)
                + ". Start them with `bash deploy/local/infra.sh up`, or point"
                " KAFKA_BOOTSTRAP_SERVERS / TEST_DATABASE_ADMIN_URL at running ones, or run"
                " a Docker engine (TEST_INFRA=testcontainers)."
                " Set ALLOW_SKIP_INTEGRATION=1 to skip these tests instead of failing."
            )
            if os.environ.get("ALLOW_SKIP_INTEGRATION") == "1":
                pytest.skip(message)
            pytest.fail(message, pytrace=False)
        await _create_test_topics(found.bootstrap_servers)
        try:
            yield found
        finally:
            await asyncio.to_thread(stack.close)


async def _create_test_topics(bootstrap_servers: str) -> None:
    """The platform's topics under the tests' prefix, with the same partitions; idempotent."""
    wanted = {topic_under_test(name): n for name, n in platform_topics().items()}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        # A concurrent test run may create some meanwhile: that is fine.
        await shared_topics.create(admin, wanted, within=60)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def kafka_admin(infra: Infra) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@pytest.fixture
async def database(infra: Infra) -> AsyncIterator[FreshDatabase]:
    """A fresh database `test_<uuid>` with the plumbing and `test_projection` migrated."""
    name = f"test_{uuid.uuid4().hex}"
    async with fresh_databases(infra.admin_dsn, {name: name}) as dsns:
        dsn = dsns[name]
        pool = await create_pool(dsn)
        try:
            await migrate(pool, TEST_MIGRATIONS)
            yield FreshDatabase(name=name, dsn=dsn, pool=pool)
        finally:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()


@pytest.fixture(scope="module")
async def scheduler_lock(infra: Infra) -> AsyncIterator[None]:
    """For fixtures that run a scheduling service or play its part (see `sole_scheduler`).

    A fixture that lists it holds the lock before its consumer groups start at the
    topics' end and until its services have stopped (to the end of the module).
    """
    async with sole_scheduler(infra.bootstrap_servers):
        yield


@pytest.fixture
async def topics(infra: Infra, kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[FreshTopics]:
    """`t<hex>.events` (3 partitions) and `t<hex>.events.dlq`, deleted afterwards."""
    producer = f"t{uuid.uuid4().hex[:16]}"
    made = FreshTopics(
        producer=producer,
        events=f"{producer}.events",
        dlq=f"{producer}.events.dlq",
        partitions=EVENT_PARTITIONS,
    )
    # Replicated like the platform's topics on a cluster (1 on a single broker).
    brokers = len((await kafka_admin.describe_cluster())["brokers"])
    factor, min_isr = shared_topics.replication_for(brokers)
    configs = {"min.insync.replicas": str(min_isr)}
    response = await kafka_admin.create_topics(
        [
            NewTopic(made.events, EVENT_PARTITIONS, factor, topic_configs=configs),
            NewTopic(made.dlq, 1, factor, topic_configs=configs),
        ]
    )
    errors = [(t[0], t[1]) for t in response.topic_errors if t[1] != 0]
    assert not errors, f"could not create topics: {errors}"
    await _wait_for_leaders(kafka_admin, [made.events, made.dlq])
    try:
        yield made
    finally:
        await kafka_admin.delete_topics([made.events, made.dlq])


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(200):
        described = await admin.describe_topics(names)
        ready = [
            t
            for t in described
            if t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
        ]
        if len(ready) == len(names):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"topics {names} have no leaders after 10s")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.kill_all()
