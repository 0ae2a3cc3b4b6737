"""Run a service exactly as `python -m services.<name>` does, on an isolated events topic.

    BENCH_REGISTRATION_TOPIC=bench1234.registration.events python -m bench._service matching

`bench.backbone` starts registration and matching through this wrapper so that
its thousands of registrations go to a topic of its own (created and deleted by
the benchmark) instead of the platform's `registration.events`, which a running
demo's services on this machine consume. (It predates `TOPIC_PREFIX`, which now
does the same for whole platforms; the bench keeps its per-run topic.) The only
change is the topic name: `shared.outbox.topic_of` maps `registration.events`
to the bench topic, and matching's subscription reads that topic instead.
Everything else (settings, runtime, relay, inbox, handlers) is the shipped code.

Measurement (matching only):
  BENCH_COMMITS_FILE         after each batch's transaction has committed, append
                             "<message id>\t<unix time>" per event of the batch: when
                             the event's handler work became visible (the end of the
                             bench's end-to-end latency). One write per batch.

What-if knobs for experiments (unset: the shipped behaviour):
  BENCH_PRODUCER_LINGER_MS   linger.ms of the runtime's producer (shipped: 0)
  BENCH_PROFILE_FILE         cProfile the process (CPU time of its main thread), stats
                             written on SIGTERM
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord

from shared.inbox import InboxConsumer

SHARED_TOPIC = "registration.events"


def message_id(record: ConsumerRecord[bytes, bytes]) -> str:
    """The inbox's id of a record (`source#id` of its CloudEvents headers)."""
    headers = {name: value.decode() for name, value in record.headers}
    return f"{headers.get('ce_source')}#{headers.get('ce_id')}"


def stamping_consumer(path: str) -> type[InboxConsumer]:
    """The shipped `InboxConsumer`, writing each batch's commit time to `path` after it."""

    class CommitStampingConsumer(InboxConsumer):
        async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            await super().process(records)  # returns once the transaction has committed
            committed = time.time()
            lines = "".join(f"{message_id(r)}\t{committed:.6f}\n" for r in records)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)

    return CommitStampingConsumer


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in ("registration", "matching"):
        sys.exit("usage: python -m bench._service registration|matching")
    service = sys.argv[1]
    topic = os.environ.get("BENCH_REGISTRATION_TOPIC")
    if not topic:
        sys.exit("BENCH_REGISTRATION_TOPIC is not set")

    from shared import outbox

    shipped_topic_of = outbox.topic_of

    def topic_of(envelope: Any) -> str:
        name = shipped_topic_of(envelope)
        return topic if name == SHARED_TOPIC else name

    outbox.topic_of = topic_of  # `outbox.add` looks the name up at call time

    linger = os.environ.get("BENCH_PRODUCER_LINGER_MS")
    if linger is not None:
        # What-if knob for the benchmark: the runtime's producer (relay and DLQ)
        # with another linger.ms than shared.outbox.create_producer's 5 ms.
        from shared import runtime

        shipped_create_producer = outbox.create_producer

        def create_producer(bootstrap_servers: str, client_id: str, options: Any = None) -> Any:
            producer = shipped_create_producer(bootstrap_servers, client_id, options)
            # aiokafka keeps linger.ms, in seconds, on its accumulator only.
            producer._message_accumulator._linger_time = int(linger) / 1000
            return producer

        runtime.create_producer = create_producer  # type: ignore[attr-defined]

    bootstrap: Any
    if service == "registration":
        from services.registration import bootstrap
    else:
        from services.matching import bootstrap

        shipped_subscription = bootstrap.Subscription

        def subscription(topics: tuple[str, ...], *args: Any, **kwargs: Any) -> Any:
            renamed = tuple(topic if t == SHARED_TOPIC else t for t in topics)
            return shipped_subscription(renamed, *args, **kwargs)

        bootstrap.Subscription = subscription
        commits = os.environ.get("BENCH_COMMITS_FILE")
        if commits:
            from shared import runtime

            setattr(runtime, "InboxConsumer", stamping_consumer(commits))  # noqa: B010
    profile = os.environ.get("BENCH_PROFILE_FILE")
    if not profile:
        bootstrap.main()
        return
    # BENCH_PROFILE_FILE: cProfile the whole process, stats written on SIGTERM.
    import cProfile
    import signal

    # uvicorn re-raises the SIGTERM it caught once it has shut down; with this
    # no-op as the handler it restores, main() returns and the stats get written.
    signal.signal(signal.SIGTERM, lambda *_: None)
    # The event loop thread's CPU time, not wall time: on a busy machine a process is
    # often preempted right after a write wakes PostgreSQL, and wall time would blame
    # whatever function was running then.
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        bootstrap.main()
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


if __name__ == "__main__":
    main()
