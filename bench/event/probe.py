"""What the bench reads from the platform's own records (never writes): when a phase is
done, the latencies, and whether the projections converged.

Latency from a command to a consumer's commit: the command's event row
(`events.recorded_at`, `now()` of the command's transaction) to the commit of the
consumer transaction that inserted the event's inbox row
(`pg_xact_commit_timestamp(inbox.xmin)`, PostgreSQL's `track_commit_timestamp`,
which deploy/local/infra.sh turns on). Where that is off, the inbox claim
(`inbox.processed_at`, `now()` of the consumer's transaction, before its handlers
ran) stands in, and the result says so. Both clocks are the one PostgreSQL server's.
With commit timestamps, each consumer's latency is also split at its transaction's
start (`processed_at`): the wait before it (the consumer busy with earlier batches, the
fetch) and the transaction itself (`split`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from bench.backbone.common import summary_ms
from bench.event.api import SERVICES

LOCAL = "postgresql://postgres:postgres@localhost:5432/{name}"
LAST = "last consumer"  # per event, the latest of its consumers' commits
SETTLE_LIMIT_S = float(os.environ.get("BENCH_EVENT_SETTLE_LIMIT", "3600"))


def database_url(service: str) -> str:
    url = os.environ.get(f"{service.upper()}_DATABASE_URL") or LOCAL.format(name=service)
    return url.replace("postgresql+asyncpg://", "postgresql://")


def platform_group(group: str, suffix: str) -> bool:
    """Whether a consumer group is one of the platform's services' (under `suffix`)."""
    names = "|".join(SERVICES)
    return re.fullmatch(rf"({names})(-\d+|-dead-letters)?{re.escape(suffix)}", group) is not None


class Probe:
    """Connections to the five services' databases and to Kafka, for reading only."""

    def __init__(self, bootstrap: str, mail_index: Path) -> None:
        self.bootstrap = bootstrap
        self.mail_index = mail_index
        self.db: dict[str, asyncpg.Connection] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self.commit_timestamps = False
        prefix = os.environ.get("TOPIC_PREFIX", "")
        self.topics = {f"{prefix}{service}.events" for service in SERVICES}
        self.group_suffix = os.environ.get("CONSUMER_GROUP_SUFFIX", "")

    async def open(self) -> None:
        for service in SERVICES:
            self.db[service] = await asyncpg.connect(database_url(service))
        setting = await self.db["registration"].fetchval("SHOW track_commit_timestamp")
        self.commit_timestamps = setting == "on"
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self._admin.start()
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self._offsets.start()

    async def close(self) -> None:
        for conn in self.db.values():
            await conn.close()
        if self._admin:
            await self._admin.close()
        if self._offsets:
            await self._offsets.stop()

    # -- settling (the driver's waits) --------------------------------------------------

    async def _until(self, what: str, check: Any, interval: float = 0.25) -> None:
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {SETTLE_LIMIT_S:.0f}s waiting for {what}")
            await asyncio.sleep(interval)

    async def approvals_known(self, event_id: str, count: int) -> None:
        sql = "SELECT count(*) FROM participants WHERE event_id = $1 AND status = 'approved'"

        async def known() -> bool:
            got: int = await self.db["matching"].fetchval(sql, event_id)
            return got >= count

        await self._until("matching to know every approval", known)

    async def meetings_settled(self, event_id: str, count: int, after: float) -> None:
        sql = (
            "SELECT count(*) FROM meetings WHERE event_id = $1"
            " AND status IN ('placed', 'unscheduled')"
        )

        async def settled() -> bool:
            got: int = await self.db["scheduling"].fetchval(sql, event_id)
            return got >= count

        await self._until("scheduling to place or report every meeting", settled)

    async def lag(self) -> int:
        """Records of the platform's topics its consumer groups have not consumed yet.

        Only this platform's groups (`<service>[-n|-dead-letters]<CONSUMER_GROUP_SUFFIX>`)
        on its topics (`<TOPIC_PREFIX><service>.events`): a shared broker also holds
        test suites' groups, some left behind with a lag that never drains."""
        assert self._admin and self._offsets
        total = 0
        for group, *_ in await self._admin.list_consumer_groups():
            if not platform_group(group, self.group_suffix):
                continue
            committed = await self._admin.list_consumer_group_offsets(group)
            parts = [
                tp for tp in committed if committed[tp].offset >= 0 and tp.topic in self.topics
            ]
            if not parts:
                continue
            ends = await self._offsets.end_offsets(parts)
            total += sum(max(0, ends[tp] - committed[tp].offset) for tp in parts)
        return total

    async def backlog(self) -> int:
        """Unpublished outbox rows, unconsumed records and deliveries due but not sent."""
        waiting = 0
        for service, conn in self.db.items():
            waiting += await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if service == "notification":
                waiting += await conn.fetchval(
                    "SELECT count(*) FROM deliveries WHERE status = 'pending'"
                    " AND next_attempt_at <= now()"
                )
        return waiting + await self.lag()

    async def quiet(self) -> None:
        """Until nothing is waiting anywhere, twice in a row half a second apart."""
        calm = 0

        async def settled() -> bool:
            nonlocal calm
            calm = calm + 1 if await self.backlog() == 0 else 0
            return calm >= 2

        await self._until("the platform to go quiet", settled, 0.5)

    # -- measurement --------------------------------------------------------------------

    async def consumer_latencies(self, since: float) -> dict[str, dict[str, dict[str, Any]]]:
        """flow (event type) -> consumer ("service/name", and `LAST`) -> latency summary (ms),
        each consumer's with its `split` (see the module's docstring) where it is known."""
        recorded: dict[str, tuple[str, float]] = {}
        for conn in self.db.values():
            for row in await conn.fetch(
                "SELECT event_id::text AS id, event_type,"
                " extract(epoch FROM recorded_at)::float8 AS at"
                " FROM events WHERE recorded_at >= to_timestamp($1)",
                since,
            ):
                recorded[row["id"]] = (row["event_type"], row["at"])
        stamp = "pg_xact_commit_timestamp(xmin)" if self.commit_timestamps else "NULL::timestamptz"
        samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        waits: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        last: dict[str, dict[str, float]] = defaultdict(dict)  # flow -> event id -> latest
        for service, conn in self.db.items():
            for row in await conn.fetch(
                "SELECT consumer, split_part(message_id, '#', 2) AS id,"
                f" extract(epoch FROM coalesce({stamp}, processed_at))::float8 AS at,"
                " extract(epoch FROM processed_at)::float8 AS began"
                " FROM inbox WHERE processed_at >= to_timestamp($1)",
                since,
            ):
                source = recorded.get(row["id"])
                if source:
                    flow, at = source
                    consumer = f"{service}/{row['consumer']}"
                    samples[flow][consumer].append(row["at"] - at)
                    waits[flow][consumer].append(row["began"] - at)
                    seen = last[flow].get(row["id"], 0.0)
                    last[flow][row["id"]] = max(seen, row["at"] - at)
        return {
            flow: {
                **{
                    consumer: {
                        **summary_ms(values),
                        **(
                            {"split": _split(values, waits[flow][consumer])}
                            if self.commit_timestamps
                            else {}
                        ),
                    }
                    for consumer, values in sorted(by.items())
                },
                LAST: summary_ms(list(last[flow].values())),
            }
            for flow, by in sorted(samples.items())
        }

    def mail(self, since: float) -> list[dict[str, Any]]:
        found = []
        with contextlib.suppress(FileNotFoundError), open(self.mail_index) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry["received"] >= since:
                        found.append(entry)
        return found

    async def emails(
        self, event_id: str, since: float, accepted_at: dict[str, float]
    ) -> dict[str, Any]:
        """Deliveries against the catcher: lost, doubled, and accept -> "meeting placed"."""
        deliveries = await self.db["notification"].fetch(
            "SELECT meeting_id, message_id, template, status,"
            " status = 'pending' AND next_attempt_at > now() AS later FROM deliveries"
            " WHERE event_id = $1 AND channel = 'email'",
            event_id,
        )
        caught = Counter(m["message_id"] for m in self.mail(since))
        first: dict[str, float] = {}
        for m in self.mail(since):
            first.setdefault(m["message_id"], m["received"])
        by_status = Counter(d["status"] for d in deliveries)
        sent = [d for d in deliveries if d["status"] == "sent"]
        ours = {d["message_id"] for d in deliveries}
        placed_latency = [
            first[d["message_id"]] - accepted_at[d["meeting_id"]]
            for d in sent
            if d["template"] == "meeting.placed"
            and d["meeting_id"] in accepted_at
            and d["message_id"] in first
        ]
        return {
            "deliveries": dict(by_status),
            "by_kind": dict(Counter(d["template"] for d in sent)),
            "caught": sum(caught[m] for m in ours),
            "lost": sum(1 for d in sent if caught[d["message_id"]] == 0),
            "doubled": sum(1 for m in ours if caught[m] > 1),
            # due and not sent (reminders and digests wait for their time: "later")
            "unsent": sum(
                1 for d in deliveries if d["status"] in ("pending", "failed") and not d["later"]
            ),
            "later": sum(1 for d in deliveries if d["later"]),
            "accept_to_placed_email": summary_ms(placed_latency),
        }

    async def counts(self, event_id: str) -> dict[str, dict[str, int]]:
        """What each service's projections hold for the event."""

        async def one(service: str, sql: str) -> int:
            value: int = await self.db[service].fetchval(sql, event_id)
            return value

        approved = {
            "registration": "SELECT count(*) FROM registrations WHERE event_id = $1"
            " AND status = 'approved'",
            "matching": "SELECT count(*) FROM participants WHERE event_id = $1"
            " AND status = 'approved'",
            "scheduling": "SELECT count(*) FROM attendees WHERE event_id = $1 AND approved",
            "notification": "SELECT count(*) FROM recipients WHERE event_id = $1"
            " AND status = 'approved'",
            "reporting": "SELECT count(*) FROM registrations WHERE event_id = $1"
            " AND status = 'approved'",
        }
        meetings = {
            "matching": "SELECT count(*) FROM meeting_requests WHERE event_id = $1"
            " AND status = 'accepted'",
            "scheduling": "SELECT count(*) FROM meetings WHERE event_id = $1"
            " AND status <> 'cancelled'",
            "notification": "SELECT count(*) FROM meetings WHERE event_id = $1 AND NOT cancelled",
            "reporting": "SELECT count(*) FROM meetings WHERE event_id = $1 AND NOT cancelled",
        }
        sched = await self.db["scheduling"].fetch(
            "SELECT status, count(*) AS n FROM meetings WHERE event_id = $1 GROUP BY status",
            event_id,
        )
        return {
            "approved participants": {s: await one(s, q) for s, q in approved.items()},
            "accepted meetings": {s: await one(s, q) for s, q in meetings.items()},
            "declined requests": {
                "matching": await one(
                    "matching",
                    "SELECT count(*) FROM meeting_requests WHERE event_id = $1"
                    " AND status = 'declined'",
                )
            },
            "scheduling status": {r["status"]: r["n"] for r in sched},
        }


def _split(totals: list[float], waits: list[float]) -> dict[str, dict[str, float | None]]:
    """Each event's wait before its consumer's transaction began, and that transaction."""
    return {
        "wait": summary_ms(waits),
        "transaction": summary_ms([t - w for t, w in zip(totals, waits, strict=True)]),
    }
