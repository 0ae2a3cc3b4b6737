"""Helpers shared by the integration tests and their subprocess helpers (`procs/`).

Nothing here talks to a fake: the payload model, the projection handler, the
Kafka readers and the polling helper all run against the real broker and server.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeAlias
from urllib.parse import urlsplit

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from shared import topics as shared_topics
from shared.contracts.base import EventPayload
from shared.contracts.registry import PayloadRegistry
from shared.db import create_database as create_database_statement
from shared.db import migrate
from shared.envelope import Envelope
from shared.settings import PlatformSettings

Record: TypeAlias = ConsumerRecord[bytes, bytes]
REPO_ROOT = Path(__file__).resolve().parents[2]

# Every service process the integration tests start runs with TOPIC_PREFIX set to
# this (`shared.topics`), so it reads and writes `test.registration.events` and so on,
# never the platform's own topics: a running demo and the tests do not see each
# other's events, and the tests leave no history in the platform's topics.
TEST_TOPIC_PREFIX = "test."


def topic_under_test(name: str) -> str:
    """The test services' name of the platform topic `name`: `test.registration.events`."""
    return f"{TEST_TOPIC_PREFIX}{name}"


def topics_under_test(names: Sequence[str]) -> list[str]:
    return [topic_under_test(name) for name in names]


def platform_topics() -> dict[str, int]:
    """The platform's topics -> partitions (`shared.topics`, KAFKA_PARTITIONS), as
    `python -m shared.topics create` makes them for infra.sh."""
    return shared_topics.platform_topics(PlatformSettings().kafka_partitions)


class CounterIncremented(EventPayload):
    """The test event: `amount` added to the counter `counter`.

    `stream`/`n` record which event-store stream and version an event was
    appended as, so a reader of the topic can check per-stream order; `poison`
    makes the test handlers raise.
    """

    event_name: ClassVar[str] = "CounterIncremented"

    counter: str
    amount: int = 1
    stream: str = ""
    n: int = 0
    poison: bool = False


def counter_model(producer: str) -> type[CounterIncremented]:
    """`CounterIncremented` as published by `producer` (so on topic `<producer>.events`)."""
    model = type(
        "CounterIncremented",
        (CounterIncremented,),
        {"producer": producer, "__module__": __name__},
    )
    return model


def registry_for(model: type[EventPayload]) -> PayloadRegistry:
    return PayloadRegistry([model])


async def apply_counter(
    conn: asyncpg.Connection, envelope: Envelope, payload: EventPayload
) -> None:
    """The projection handler: add the event's amount to its counter's row."""
    assert isinstance(payload, CounterIncremented)
    await conn.execute(
        "INSERT INTO test_projection (key, count, last_event) VALUES ($1, $2, $3)"
        " ON CONFLICT (key) DO UPDATE"
        " SET count = test_projection.count + EXCLUDED.count, last_event = EXCLUDED.last_event",
        payload.counter,
        payload.amount,
        envelope.id,
    )


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    limit: float = 60.0,
    interval: float = 0.05,
    what: str = "condition",
) -> float:
    """Poll `predicate` (plain or async) until it holds; fail after `limit` seconds.

    Returns how long it took.
    """
    started = time.monotonic()
    deadline = started + limit
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def send_envelope(
    producer: AIOKafkaProducer, topic: str, envelope: Envelope
) -> RecordMetadata:
    """Produce one envelope in CloudEvents binary mode and wait for the ack."""
    metadata: RecordMetadata = await producer.send_and_wait(
        topic,
        value=envelope.kafka_value(),
        key=envelope.key.encode(),
        headers=envelope.kafka_headers(),
    )
    return metadata


class EndOffsets:
    """A long-lived client asking the broker for the end offsets of `topic`."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False
        )
        self._topic = topic
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> EndOffsets:
        await self._consumer.start()
        self._partitions = await _partitions(self._consumer, self._topic)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def by_partition(self) -> dict[int, int]:
        """The next offset to be written, per partition."""
        ends = await self._consumer.end_offsets(self._partitions)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def total(self) -> int:
        return sum((await self.by_partition()).values())


async def read_topic(bootstrap_servers: str, topic: str, *, limit: float = 30.0) -> list[Record]:
    """Every record of `topic` from the beginning up to its current end.

    Reads without a consumer group (manual assignment), so nothing is committed.
    Returns the records ordered by (partition, offset).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        deadline = time.monotonic() + limit
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} records so far")
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for rs in batch.values():
                records.extend(rs)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        await consumer.stop()


async def start_groups_at_end(bootstrap_servers: str, groups: Mapping[str, Sequence[str]]) -> None:
    """Commit, for each consumer group, the current end offsets of its topics.

    A service started afterwards with that (fresh) group reads only what is
    written from now on, instead of replaying the test topics' history from
    the beginning, which grows with every test run and gets slower as handlers
    get heavier. Give the topics as the services read them (`topic_under_test`).
    """
    for group, topics in groups.items():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [tp for topic in topics for tp in await _partitions(consumer, topic)]
            consumer.assign(partitions)
            await consumer.commit(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = consumer.partitions_for_topic(topic)
    if not found:
        # Not in the cached metadata yet: ask the broker.
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
    if not found:
        raise AssertionError(f"topic {topic} does not exist")
    return [TopicPartition(topic, p) for p in sorted(found)]


async def committed_offsets(admin: AIOKafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """The offsets the consumer group `group` has committed on `topic`, by partition."""
    offsets = await admin.list_consumer_group_offsets(group)
    return {
        tp.partition: om.offset
        for tp, om in offsets.items()
        if tp.topic == topic and om.offset >= 0
    }


def headers_of(record: Record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def value_of(record: Record) -> dict[str, Any]:
    data = json.loads(record.value or b"null")
    assert isinstance(data, dict)
    return data


def duplicates(ids: Sequence[str]) -> int:
    return len(ids) - len(set(ids))


async def projection(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    rows = await conn.fetch("SELECT key, count FROM test_projection")
    return {r["key"]: r["count"] for r in rows}


@dataclass(frozen=True)
class Infra:
    bootstrap_servers: str
    admin_dsn: str


@dataclass(frozen=True)
class FreshDatabase:
    name: str
    dsn: str
    pool: asyncpg.Pool


@dataclass(frozen=True)
class FreshTopics:
    producer: str  # the unique producer name: envelopes from `/services/<producer>`
    events: str  # `<producer>.events`, where `shared.outbox.topic_of` sends them
    dlq: str  # `<producer>.events.dlq`
    partitions: int


class Processes:
    """Subprocesses a test starts; any still alive at the end are SIGKILLed."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, module: str, *args: str, name: str) -> subprocess.Popen[bytes]:
        """Run `python -m <module> <args>` from the repository root; output to a log file."""
        log_path = self._log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._started.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self._log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @staticmethod
    async def kill(proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGKILL)
        return await asyncio.to_thread(proc.wait)

    def kill_all(self) -> None:
        for proc in self._started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


# -- one scheduler per broker ---------------------------------------------------------

# Locks held by this process, by path: (open lock file, holders).
_SCHEDULER_LOCKS: dict[Path, tuple[TextIO, int]] = {}


def _scheduler_lock_path(bootstrap_servers: str) -> Path:
    digest = hashlib.sha256(bootstrap_servers.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"matchmaking-scheduler-{digest}.lock"


@asynccontextmanager
async def sole_scheduler(bootstrap_servers: str, *, limit: float = 240) -> AsyncIterator[None]:
    """Be the only scheduler of the test topics on this broker while the block runs.

    The test topics (`test.*`, TEST_TOPIC_PREFIX) are shared by every test run on a
    broker (a platform outside the tests, such as a demo, has topics of its own and
    is no concern), and a scheduling service does not only read them: it places
    every meeting accepted on `test.matching.events`, whoever published the
    acceptance, and publishes its own SlotAssigned. A test
    that stands in for scheduling (publishing the SlotAssigned itself) would get
    those placements as extra moves; two scheduling services would each place the
    other's meetings. So a test that runs a scheduling service, or plays its part
    for accepted meetings, holds this lock (a file lock, so it holds across test
    runs on one machine; re-entrant within a process).
    """
    path = _scheduler_lock_path(bootstrap_servers)
    held, holders = _SCHEDULER_LOCKS.get(path, (None, 0))
    if held is None:
        held = path.open("a")
        deadline = time.monotonic() + limit
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    held.close()
                    raise AssertionError(
                        f"another test run kept the scheduler lock {path} for {limit:.0f}s"
                    ) from None
                await asyncio.sleep(0.5)
    _SCHEDULER_LOCKS[path] = (held, holders + 1)
    try:
        yield
    finally:
        held, holders = _SCHEDULER_LOCKS.pop(path)
        if holders > 1:
            _SCHEDULER_LOCKS[path] = (held, holders - 1)
        else:
            held.close()  # closing the file releases the lock


@asynccontextmanager
async def running_services(
    env: Mapping[str, str], urls: Mapping[str, str], log_dir: Path, *, limit: float = 60
) -> AsyncIterator[None]:
    """Run `python -m services.<name>` for each of `urls` until all answer /ready.

    They run under TEST_TOPIC_PREFIX. Stops them (SIGTERM, then SIGKILL after 15 s)
    on the way out.
    """
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO_ROOT,
            env={**env, "TOPIC_PREFIX": TEST_TOPIC_PREFIX},
            stdout=(log_dir / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name in urls
    }
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + limit
            for name, url in urls.items():
                while True:
                    assert procs[name].poll() is None, (log_dir / f"{name}.log").read_text()
                    try:
                        if (await http.get(f"{url}/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, f"{name} not ready"
                    await asyncio.sleep(0.2)
        yield
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- a platform of service processes on fresh databases ---------------------------------


def consumer_groups(services: Iterable[str]) -> dict[str, list[str]]:
    """The consumer groups the services run (before CONSUMER_GROUP_SUFFIX) -> their topics.

    Canonical topic names, as the services subscribe to them. A service's first
    subscription is the group `<service>`, a second one `<service>-1`
    (`shared.runtime`); reporting's dead-letter reader has a group of its own
    (`services.reporting.deadletters.group_of`).
    """
    # Imported here: the subprocess helpers (`procs/`) import this module and need none of it.
    from services.notification.bootstrap import TOPICS as NOTIFICATION_TOPICS
    from services.reporting import deadletters, projection

    by_service: dict[str, dict[str, list[str]]] = {
        "registration": {"registration": ["matching.events"]},
        "matching": {"matching": ["registration.events"], "matching-1": ["matching.events"]},
        "scheduling": {"scheduling": ["registration.events", "matching.events"]},
        "notification": {"notification": list(NOTIFICATION_TOPICS)},
        "reporting": {
            "reporting": list(projection.TOPICS),
            "reporting-dead-letters": list(deadletters.TOPICS),
        },
    }
    return {group: topics for svc in services for group, topics in by_service[svc].items()}


async def start_service_groups_at_end(
    bootstrap_servers: str, groups: Mapping[str, Sequence[str]], suffix: str
) -> None:
    """`start_groups_at_end` for services run with CONSUMER_GROUP_SUFFIX `suffix`.

    `groups` as `consumer_groups` gives them: names before the suffix, canonical topics.
    """
    await start_groups_at_end(
        bootstrap_servers,
        {f"{group}{suffix}": topics_under_test(topics) for group, topics in groups.items()},
    )


def database_dsn(admin_dsn: str, name: str) -> str:
    """The DSN of database `name` on the server `admin_dsn` points at."""
    return urlsplit(admin_dsn)._replace(path=f"/{name}").geturl()


async def _admin(admin_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(admin_dsn: str, name: str) -> str:
    """Create the (empty) database `name`; its DSN."""
    await _admin(admin_dsn, create_database_statement(name))
    return database_dsn(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    # FORCE: a killed subprocess or a stuck test may leave sessions behind.
    await _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def schema_pool(dsn: str, schema: str, migrations: Path) -> asyncpg.Pool:
    """A one-connection pool on a new schema `schema` of `dsn`, migrated: projections
    built side by side in one database (one by one and batched, two orders...)."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=1, server_settings={"search_path": schema}
    )
    assert pool is not None
    try:
        await migrate(pool, migrations)
    except BaseException:
        await pool.close()
        raise
    return pool


@asynccontextmanager
async def fresh_databases(
    admin_dsn: str, names: Mapping[str, str]
) -> AsyncIterator[dict[str, str]]:
    """Create the databases `names` (key -> database name); yield key -> DSN; drop them after."""
    dsns: dict[str, str] = {}
    try:
        for key, name in names.items():
            dsns[key] = await create_database(admin_dsn, name)
        yield dsns
    finally:
        for name in names.values():
            await drop_database(admin_dsn, name)


@dataclass(frozen=True)
class RunningPlatform:
    urls: dict[str, str]  # service -> http://127.0.0.1:<port>
    dsns: dict[str, str]  # service -> its fresh database
    bootstrap_servers: str
    spans: Path  # where the services write their spans (JSON lines) if told to
    group_suffix: str = ""  # the services' CONSUMER_GROUP_SUFFIX


@asynccontextmanager
async def service_platform(
    infra: Infra,
    services: Mapping[str, int],
    log_dir: Path,
    *,
    label: str,
    admin_key: str,
    env: Mapping[str, str] | None = None,
    spans: bool = False,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> AsyncIterator[RunningPlatform]:
    """Run `services` (name -> port) as subprocesses on fresh databases while the block runs.

    The databases (`<label>_<service>_<run>`) and the consumer groups (suffix
    `-<label>-<run>`) are new to this run; the groups, `groups` (canonical names ->
    canonical topics; by default `consumer_groups(services)`), start at the test
    topics' end, so the services read only what is written from now on. The
    services run under TEST_TOPIC_PREFIX (`running_services`) with the admin key
    `admin_key`, the spans of every trace written to `<log_dir>/spans.jsonl` if `spans`
    (else none), notification pointed at registration and at its own URL, and `env` on top.
    The databases are dropped afterwards, also when anything fails.
    """
    run = uuid.uuid4().hex[:10]
    suffix = f"-{label}-{run}"
    urls = {svc: f"http://127.0.0.1:{port}" for svc, port in services.items()}
    names = {svc: f"{label.replace('-', '_')}_{svc[:5]}_{run}" for svc in services}
    spans_at = log_dir / "spans.jsonl"
    wiring = {"PUBLIC_BASE_URL": urls["notification"]} if "notification" in urls else {}
    if "notification" in urls and "registration" in urls:
        wiring["REGISTRATION_URL"] = urls["registration"]
    async with fresh_databases(infra.admin_dsn, names) as dsns:
        full_env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "PLATFORM_ADMIN_KEY": admin_key,
            "CONSUMER_GROUP_SUFFIX": suffix,
            "OTEL_TRACES_EXPORTER": "none",
            **(
                {
                    "OTEL_TRACES_EXPORTER": "jsonl",
                    "TELEMETRY_JSONL_PATH": str(spans_at),
                    # Every trace, not the default share: the tests read whole traces.
                    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
                }
                if spans
                else {}
            ),
            **wiring,
            **(env or {}),
            **{f"{svc.upper()}_DATABASE_URL": dsn for svc, dsn in dsns.items()},
            **{f"{svc.upper()}_PORT": str(port) for svc, port in services.items()},
        }
        chosen = consumer_groups(services) if groups is None else groups
        await start_service_groups_at_end(infra.bootstrap_servers, chosen, suffix)
        async with running_services(full_env, urls, log_dir):
            yield RunningPlatform(urls, dsns, infra.bootstrap_servers, spans_at, suffix)
