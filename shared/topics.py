"""Topic names: each service's canonical `<service>.events`, and the namespace before them.

`TOPIC_PREFIX` (`PlatformSettings.topic_prefix`) is prepended to every topic name
a service reads or writes on Kafka, so that a test suite or a second platform can
share a broker without seeing each other's events. Contracts, outbox rows and the
AsyncAPI documents keep the canonical names; only the Kafka clients (the runtime's
consumers, the outbox relay, reporting's dead-letter reader) see prefixed ones. A
dead-letter topic is `<record topic>.dlq`, so it carries the prefix of the topic
its record came from.

The platform's topics are listed here and nowhere else. Their partitions are one
setting, `KAFKA_PARTITIONS` (a dead-letter topic has one: it is read only by
reporting, in no particular order); `python -m shared.topics create` creates the
missing ones on any cluster (the settings' bootstrap servers and security), with
`KAFKA_REPLICATION_FACTOR` (default min(3, brokers)) and `min.insync.replicas`
2 when there are three replicas or more. deploy/local/infra.sh runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

SERVICES = ("registration", "matching", "scheduling", "notification", "reporting")
DLQ_PARTITIONS = 1
# CreateTopics error codes that mean "someone else made it": fine.
TOPIC_ALREADY_EXISTS = 36

log = logging.getLogger(__name__)


def prefixed(prefix: str, name: str) -> str:
    """The topic `name` (canonical, e.g. `registration.events`) under `prefix`."""
    return f"{prefix}{name}"


def prefixed_all(prefix: str, names: Iterable[str]) -> tuple[str, ...]:
    return tuple(prefixed(prefix, name) for name in names)


def platform_topics(partitions: int, prefix: str = "") -> dict[str, int]:
    """Every platform topic (under `prefix`) -> its partitions."""
    events = {prefixed(prefix, f"{s}.events"): partitions for s in SERVICES}
    dlqs = {f"{name}.dlq": DLQ_PARTITIONS for name in events}
    return {**events, **dlqs}


def replication_for(brokers: int, wanted: int = 0) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`.

    `wanted` 0 means min(3, brokers). With three replicas or more a write needs two
    of them (acks=all), so one broker may fail without losing an acknowledged event
    and without stopping writes.
    """
    factor = wanted or min(3, brokers)
    if factor > brokers:
        raise ValueError(f"replication factor {factor} > {brokers} broker(s) in the cluster")
    return factor, 2 if factor >= 3 else 1


def topic_configs(name: str, min_isr: int) -> dict[str, str]:
    """A topic's settings. The services' event topics keep their events for ever: they
    are what projections are rebuilt from (`shared.rebuild`); dead-letter topics keep
    Kafka's default retention."""
    configs = {"min.insync.replicas": str(min_isr)}
    if name.endswith(".events"):
        configs["retention.ms"] = "-1"
    return configs


async def create(
    admin: AIOKafkaAdminClient,
    wanted: Mapping[str, int],
    *,
    replication_factor: int = 0,
    within: float = 120.0,
) -> list[str]:
    """Create the missing topics of `wanted` and wait until every partition has a
    leader and the group coordinator answers; return the topics created."""
    deadline = time.monotonic() + within
    last: Exception | None = None
    created: list[str] = []
    while time.monotonic() < deadline:
        try:
            cluster = await admin.describe_cluster()
            brokers = len(cluster["brokers"])
            if not brokers:
                raise RuntimeError("no broker registered yet")
            factor, min_isr = replication_for(brokers, replication_factor)
            missing = sorted(set(wanted) - set(await admin.list_topics()))
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(t, wanted[t], factor, topic_configs=topic_configs(t, min_isr))
                        for t in missing
                    ]
                )
                fine = (0, TOPIC_ALREADY_EXISTS)
                errors = [(t[0], t[1]) for t in response.topic_errors if t[1] not in fine]
                if errors:
                    raise RuntimeError(f"CreateTopics failed: {errors}")
                created += missing
            await _wait_for_leaders(admin, sorted(wanted))
            # Makes the cluster create __consumer_offsets now, not at the first join.
            await admin.find_coordinator("matchmaking-topics-check")
            return created
        except ValueError:
            raise
        except Exception as exc:  # the cluster is still starting: try again
            last = exc
            await asyncio.sleep(0.5)
    raise TimeoutError(f"Kafka not ready after {within:.0f}s: {last!r}")


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: Sequence[str]) -> None:
    described = await admin.describe_topics(list(names))
    bad = [
        t["topic"]
        for t in described
        if t["error_code"] != 0
        or not t["partitions"]
        or any(p["leader"] < 0 for p in t["partitions"])
    ]
    if bad:
        raise RuntimeError(f"partitions without a leader: {bad}")


async def describe(admin: AIOKafkaAdminClient, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Topic -> partitions, replication factor and in-sync replicas (smallest ISR)."""
    out: dict[str, dict[str, Any]] = {}
    for t in await admin.describe_topics(list(names)):
        parts = t["partitions"]
        out[t["topic"]] = {
            "partitions": len(parts),
            "replicas": min((len(p["replicas"]) for p in parts), default=0),
            "min_isr_now": min((len(p["isr"]) for p in parts), default=0),
        }
    return out


async def _main(argv: Sequence[str]) -> int:
    # Imported here: settings import nothing from this module, but keep the CLI apart.
    from shared.kafka import client_options
    from shared.settings import PlatformSettings

    parser = argparse.ArgumentParser(prog="python -m shared.topics")
    parser.add_argument("command", choices=["create", "describe"])
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--prefix", default=None, help="default: TOPIC_PREFIX")
    args = parser.parse_args(argv)
    settings = PlatformSettings()
    prefix = settings.topic_prefix if args.prefix is None else args.prefix
    wanted = platform_topics(settings.kafka_partitions, prefix)
    admin = AIOKafkaAdminClient(
        **client_options(settings), client_id="matchmaking-topics", request_timeout_ms=5000
    )
    started = time.monotonic()
    deadline = started + args.timeout
    while True:
        try:
            await admin.start()
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                where = settings.kafka_bootstrap_servers
                print(f"kafka {where} unreachable: {exc!r}", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
    try:
        if args.command == "describe":
            for name, facts in (await describe(admin, sorted(wanted))).items():
                print(name, *(f"{k}={v}" for k, v in facts.items()))
            return 0
        left = max(deadline - time.monotonic(), 1.0)
        made = await create(
            admin, wanted, replication_factor=settings.kafka_replication_factor, within=left
        )
        brokers = len((await admin.describe_cluster())["brokers"])
        factor, min_isr = replication_for(brokers, settings.kafka_replication_factor)
        print(
            f"kafka {settings.kafka_bootstrap_servers} ready ({brokers} broker(s)):"
            f" {len(wanted)} topic(s) checked, partitions {settings.kafka_partitions},"
            f" replication {factor}, min.insync.replicas {min_isr};"
            f" created: {' '.join(made) or 'none'}"
        )
        return 0
    except (TimeoutError, ValueError) as exc:
        print(f"kafka {settings.kafka_bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    finally:
        await admin.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
