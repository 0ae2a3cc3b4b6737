"""Run an `InboxConsumer` into `test_projection` until killed; a helper of `test_crash.py`.

    python -m tests.integration.procs.consumer_proc --dsn DSN --bootstrap HOST:PORT \
        --producer NAME --group GROUP [--instance-id ID] [--batch-size 100] [--delay 0.001]

The handler is `tests.integration.support.apply_counter` for `CounterIncremented`
events of `--producer` on `<producer>.events`; `--delay` sleeps per event inside
the batch's transaction so that a SIGKILL lands mid-batch; `--commit-delay`
sleeps between a batch's database commit and its offset commit, widening the
window in which a kill leaves the database ahead of the committed offsets.
The engine is the platform's (CONSUMER_ENGINE, `shared.settings`): FastStream
(`shared.faststream_inbox`) by default, CONSUMER_ENGINE=aiokafka for `shared.inbox`
(e.g. `CONSUMER_ENGINE=aiokafka pytest tests/integration/test_crash.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord, TopicPartition
from faststream.message import StreamMessage

from shared.contracts.base import EventPayload
from shared.db import create_pool
from shared.envelope import Envelope
from shared.faststream_inbox import FastStreamInboxConsumer
from shared.inbox import InboxConsumer, Subscription
from shared.outbox import create_producer
from shared.settings import PlatformSettings
from tests.integration.support import apply_counter, counter_model, registry_for


class SlowCommitConsumer(InboxConsumer):
    def __init__(self, *, commit_delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._commit_delay = commit_delay

    async def _commit(
        self, batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        await asyncio.sleep(self._commit_delay)
        await super()._commit(batch)


class SlowAckFastStreamConsumer(FastStreamInboxConsumer):
    def __init__(self, *, commit_delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._commit_delay = commit_delay

    async def acknowledge(self, msg: StreamMessage[Any]) -> None:
        await asyncio.sleep(self._commit_delay)
        await super().acknowledge(msg)


async def main(args: argparse.Namespace) -> None:
    model = counter_model(args.producer)

    async def handler(conn: asyncpg.Connection, envelope: Envelope, payload: EventPayload) -> None:
        if args.delay > 0:
            await asyncio.sleep(args.delay)
        await apply_counter(conn, envelope, payload)

    pool = await create_pool(args.dsn)
    dlq = create_producer(args.bootstrap, client_id=f"{args.group}-dlq")
    await dlq.start()
    engine: type[SlowCommitConsumer | SlowAckFastStreamConsumer] = (
        SlowAckFastStreamConsumer
        if PlatformSettings().consumer_engine == "faststream"
        else SlowCommitConsumer
    )
    consumer = engine(
        commit_delay=args.commit_delay,
        name=args.group,
        dsn_pool=pool,
        bootstrap_servers=args.bootstrap,
        subscription=Subscription(
            topics=(model.topic(),),
            handlers={model.ce_type(): handler},
            registry=registry_for(model),
        ),
        dlq_producer=dlq,
        batch_size=args.batch_size,
        instance_id=args.instance_id,
        retry_backoff=0.05,
    )
    await consumer.start()
    print(f"consumer started ({engine.__name__})", flush=True)
    try:
        await consumer.run()
    finally:
        await consumer.stop()
        await dlq.stop()
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--producer", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--instance-id", default=None)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--commit-delay", type=float, default=0.0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(parser.parse_args()))
