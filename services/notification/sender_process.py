"""The sender (`sender.Sender`) in a process of its own, started and supervised by the
service (`shared.worker_process`).

In the service's process the sender shared the event loop with the consumer: at a
steady rate of accepts the loop was busy about 90 % of the time, the sender (contacts,
rendering, SMTP exchanges) 43 % of it, and each round trip of the consumer's transaction
waited for the sender's step that held the loop. Apart, each has a loop of its own and
the OS shares the cores between them; niced (`SENDER_NICE`), the sender gets what the
consumer, the API and the servers leave. Measured (bench-event bremen at 40/s, a busy
machine): apart at the same priority, the consumer's latency did not change; niced, its
latency for accepts fell to about half, the e-mails later (within 1 s at load 4-6, over
it on a much busier machine: bench/README, notify8).

Nothing about the delivery guarantees changes: the rows, their claims and their
outcomes are the same transactions on the same database. The child dies with the
service (SIGKILL included): a transaction it had open rolls back and its rows are due
again, as when the sender died with the process before. Its outcomes counter
(`queue.OUTCOMES`) is exported on the service's /metrics; its end makes the service
unready.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx

from services.notification import queue
from services.notification.sender import Sender
from shared import logs, telemetry
from shared.db import create_pool
from shared.runtime import ServiceRuntime
from shared.settings import NotificationSettings
from shared.worker_process import WorkerProcess, child_main, exported_by

NAME = "notification"
# The sender's own metrics: counted in the child, exported by the service.
METRICS = (queue.OUTCOMES,)


async def run(runtime: ServiceRuntime) -> None:
    """The service's background task: the sender's process, until it ends (then the
    task raises, and /ready says so) or the service stops (then it is stopped)."""
    settings = runtime.settings
    assert isinstance(settings, NotificationSettings)
    worker = WorkerProcess(
        __name__, (settings, runtime.dsn), {f.name for m in METRICS for f in m.describe()}
    )
    runtime.metric_sources.append(worker.refresh)
    runtime.readiness_checks["sender"] = lambda: worker.started
    try:
        with exported_by(worker, METRICS):
            await worker.run()
    finally:
        runtime.metric_sources.remove(worker.refresh)
        runtime.readiness_checks.pop("sender", None)


async def _send(payload: tuple[NotificationSettings, str], ready: Callable[[], None]) -> None:
    settings, dsn = payload
    telemetry.configure(NAME, settings)
    # The workers' connections, the digest lookups' and one to spare.
    pool = await create_pool(dsn, max_size=settings.delivery_workers + 2)
    # Its workers claim what is due as they start: nothing queued from now on waits for
    # a NOTIFY that came before the listener.
    ready()
    try:
        async with httpx.AsyncClient(timeout=settings.webhook_timeout_seconds) as http:
            await Sender(pool, dsn, settings, http).run()
    finally:
        await pool.close()
        telemetry.shutdown()


def _configure(payload: tuple[NotificationSettings, str]) -> None:
    logs.configure(NAME)
    os.nice(payload[0].sender_nice)


if __name__ == "__main__":
    child_main(_send, _configure)
