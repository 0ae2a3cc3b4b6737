"""Run an `OutboxRelay` until killed; a helper of `tests/integration/test_crash.py`.

    python -m tests.integration.procs.relay_proc --dsn DSN --bootstrap HOST:PORT \
        --service NAME [--batch-size 50] [--send-delay 0.001] [--ack-delay 0.3]

`--send-delay` sleeps before each record is handed to the producer, stretching a
batch out so that a SIGKILL lands between "some of the batch is on Kafka" and
"the batch is marked published"; `--ack-delay` hands each acknowledgement to the
relay that much later, so that the whole batch stays on Kafka and unmarked for it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from shared.outbox import OutboxRelay, create_producer


async def main(args: argparse.Namespace) -> None:
    producer = create_producer(args.bootstrap, client_id=f"relay-proc-{args.service}")
    if args.send_delay > 0:
        send = producer.send

        async def slow_send(*a: Any, **kw: Any) -> Any:
            await asyncio.sleep(args.send_delay)
            return await send(*a, **kw)

        producer.send = slow_send
    if args.ack_delay > 0:
        send_now = producer.send

        async def late_ack(*a: Any, **kw: Any) -> Any:
            delivered = await send_now(*a, **kw)

            async def acknowledged() -> Any:
                result = await delivered
                await asyncio.sleep(args.ack_delay)
                return result

            return asyncio.ensure_future(acknowledged())

        producer.send = late_ack
    await producer.start()
    relay = OutboxRelay(
        args.dsn,
        producer,
        args.service,
        batch_size=args.batch_size,
        poll_interval=0.2,
        standby_interval=0.2,
    )
    print("relay started", flush=True)
    try:
        await relay.run()
    finally:
        await producer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--send-delay", type=float, default=0.0)
    parser.add_argument("--ack-delay", type=float, default=0.0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(parser.parse_args()))
