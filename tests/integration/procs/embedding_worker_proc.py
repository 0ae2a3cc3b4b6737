"""Run matching's embedding worker until killed; a helper of
`tests/integration/test_embedding_worker.py`.

    python -m tests.integration.procs.embedding_worker_proc --dsn DSN \
        [--batch-size 5] [--model-delay 0.3]

`--model-delay` sleeps inside each model call (in its thread), so that a SIGKILL
lands while a batch is being embedded, before its vectors are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from services.matching.recommend.profiles import TextEncoder, Vectors
from services.matching.recommendations import store
from services.matching.recommendations.worker import Worker
from shared.db import create_pool


def slow(encode: TextEncoder, delay: float) -> TextEncoder:
    def encode_slowly(texts: list[str]) -> Vectors:
        time.sleep(delay)  # in the worker's thread, as the model's own time would be
        return encode(texts)

    return encode_slowly


async def main(args: argparse.Namespace) -> None:
    shipped = store.text_encoder
    store.text_encoder = lambda: slow(shipped(), args.model_delay)
    pool = await create_pool(args.dsn)
    worker = Worker(
        pool, args.dsn, batch_size=args.batch_size, poll_interval=0.2, standby_interval=0.2
    )
    print("embedding worker started", flush=True)
    try:
        await worker.run()
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--model-delay", type=float, default=0.0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(parser.parse_args()))
