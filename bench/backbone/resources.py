"""Everything a run creates (databases, topics, groups, processes), and its cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.backbone.common import ADMIN_DSN, BOOTSTRAP, PARTITIONS, log, wait_for
from shared.db import create_database


class Resources:
    """Everything the run creates, removed in reverse order by `close()`."""

    def __init__(self, hex_id: str) -> None:
        self.hex = hex_id
        self.admin: AIOKafkaAdminClient | None = None
        self.topics: list[str] = []
        self.groups: list[str] = []
        self.databases: list[str] = []
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.group_wait = 25.0  # seconds to wait for a static member to expire

    async def kafka_admin(self) -> AIOKafkaAdminClient:
        if self.admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=15000)
            await admin.start()
            self.admin = admin
        return self.admin

    async def create_topic(self, name: str, partitions: int = PARTITIONS) -> str:
        admin = await self.kafka_admin()
        self.topics.append(name)
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
        errors = [e for e in response.topic_errors if e[1]]
        if errors:
            raise RuntimeError(f"creating topic {name}: {errors}")
        # Wait until the broker serves the topic's metadata.
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
        await consumer.start()
        try:

            async def ready() -> bool:
                await consumer._client.force_metadata_update()
                return len(consumer.partitions_for_topic(name) or ()) == partitions

            await wait_for(ready, limit=30, interval=0.1, what=f"topic {name}")
        finally:
            await consumer.stop()
        return name

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            self.databases.append(name)
            await conn.execute(create_database(name))
        finally:
            await conn.close()
        return name

    def add_cleanup(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        self.cleanups.append((what, action))

    async def _attempt(self, what: str, action: Callable[[], Awaitable[Any]]) -> None:
        try:
            await asyncio.wait_for(action(), 60)
        except Exception as exc:  # keep cleaning up
            self.problems.append(f"{what}: {exc!r}")
            log.warning("cleanup of %s failed: %r", what, exc)

    async def close(self) -> None:
        for what, action in reversed(self.cleanups):
            await self._attempt(what, action)
        for name, proc in reversed(self.processes):
            await self._attempt(f"process {name}", partial(stop_process, proc))
        if self.databases:

            async def drop() -> None:
                conn = await asyncpg.connect(ADMIN_DSN)
                try:
                    for db in self.databases:
                        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                finally:
                    await conn.close()

            await self._attempt("databases", drop)
        if self.topics or self.groups:
            admin = None
            with contextlib.suppress(Exception):
                admin = await self.kafka_admin()
            if admin is not None:
                if self.groups:
                    await self._attempt(
                        "consumer groups",
                        lambda: delete_groups(admin, self.groups, self.group_wait, self.notes),
                    )
                if self.topics:
                    await self._attempt("topics", lambda: admin.delete_topics(self.topics))
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await self.admin.close()


async def delete_groups(
    admin: AIOKafkaAdminClient, groups: list[str], wait: float, notes: list[str]
) -> None:
    # aiokafka's admin client has no delete_consumer_groups: send DeleteGroups ourselves.
    from aiokafka.protocol.admin import DeleteGroupsRequest

    failed = []
    for group in groups:
        # A static member (matching's consumer has a group.instance.id) stays in
        # its group until its session times out (10 s): retry NON_EMPTY_GROUP (68).
        deadline = time.monotonic() + wait
        while True:
            node = await admin.find_coordinator(group)
            response = await admin._send_request_to_node(node, DeleteGroupsRequest([group]))
            codes = [code for _, code in response.results]
            if all(code in (0, 69) for code in codes):  # 69: no such group
                break
            if 68 in codes and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                continue
            if 68 in codes:
                # Its topic is gone, so once the session expires Kafka drops the
                # group's offsets and then the empty group by itself.
                notes.append(
                    f"consumer group {group} still had its static member; left to"
                    " expire on its own (its topic is deleted)"
                )
            else:
                failed.append((group, codes))
            break
    if failed:
        raise RuntimeError(f"could not delete consumer groups {failed}")


async def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        await asyncio.sleep(0.2)
