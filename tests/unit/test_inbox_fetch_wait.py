"""The inbox consumer's fetches are held by the broker for at most FETCH_MAX_WAIT_MS
when its partitions have nothing new: catching up, a fetch of the drained partitions
alone (others' records still buffered) otherwise stalled the consumer for aiokafka's
500 ms default several times per backlog (bench/README, "Catch-up, fifth round")."""

from __future__ import annotations

from typing import Any, cast

from shared.contracts import registry
from shared.inbox import FETCH_MAX_WAIT_MS, InboxConsumer, Subscription


async def test_the_broker_holds_an_inbox_fetch_for_at_most_a_tenth_of_a_second() -> None:
    consumer = InboxConsumer(
        name="test-fetch-wait",
        dsn_pool=cast(Any, None),  # not used before start
        bootstrap_servers="localhost:9092",
        subscription=Subscription(("things.events",), {}, registry()),
        dlq_producer=cast(Any, None),
    )
    assert FETCH_MAX_WAIT_MS <= 100
    assert consumer._consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
