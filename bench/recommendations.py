"""Recommendations: embedding cost, ranking from scratch, incremental updates, recall@10.

    .venv/bin/python -m bench.recommendations [--participants 5000] [--embed-workers 2]
                                              [--no-db] [--quick]

One run, one table (and var/bench/recommendations.json), with the machine's load
before and after so figures can be compared within the run:

  1. model        install size of the weights package, load time of the numpy encoder;
  2. embedding    every request and offer of N synthetic participants (seeded,
                  1-3 of each, 6-15 words), in `--embed-workers` processes with one
                  BLAS thread each; one profile's latency in this process;
  3. ranking      all N top-K lists from scratch from the vectors (K=20 kept, 10 shown;
                  also K=10), all meeting types allowed (the most pairs to score);
  4. incremental  participant N+1 approved: its list, and the lists it enters
                  (pure path: Ranker build + plan + apply), checked equal to from
                  scratch; then the participant held by most lists withdraws;
  5. database     the same through the real handlers (projection + recommendations)
                  on a fresh database `bench_<hex>` holding the N participants, their
                  vectors and lists: Registered (queues the texts), Approved before
                  the vectors landed, the embedding worker's round (embeds, stores,
                  brings it into the lists), Approved again, Withdrawn;
                  each in its own transaction, as the inbox consumer runs them; warm
                  (the process kept the event's participants) and cold (it loads them);
  6. quality      recall@10 (and @1) of TF-IDF vs the sentence model, text signal alone
                  and full score, on two sets in tests/unit/matching_recommend/data/:
                  matching_labelled.json (50 pairs; the weights were tuned on it) and
                  matching_heldout.json (40 pairs written apart: other subjects,
                  sectors and wording; every attribute but the texts random).

Needs PostgreSQL on localhost:5432 for step 5 (`BENCH_DATABASE_ADMIN_URL`), or --no-db.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import numpy as np

from bench.recommendation_profiles import synthetic
from bench.recommendation_quality import step_quality
from services.matching import projection, recommendations
from services.matching.recommend import incremental, minilm
from services.matching.recommend.profiles import Participant, Profile, embed, to_bytes
from services.matching.recommend.scoring import K, Ranker
from services.matching.recommend.topk import Entry
from shared.contracts.base import EventPayload
from shared.contracts.registration import (
    REGISTERED_BY_TYPE,
    Attendance,
    BrokerageEventCreated,
    MeetingType,
    OrganisationProfile,
    OrganisationType,
    RegistrationApproved,
    RegistrationWithdrawn,
    Session,
)
from shared.db import create_database, create_pool, migrate
from shared.envelope import Envelope
from shared.inbox import combine

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "var" / "bench" / "recommendations.json"
MIGRATIONS = REPO / "services" / "matching" / "migrations"
ADMIN_DSN = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres:postgres@localhost:5432/postgres"
)
EVENT = "bench-event"
ALL_TYPES = [t.value for t in MeetingType]

# -- measuring --------------------------------------------------------------------


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Figures:
    rows: list[tuple[str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, label: str, value: Any, shown: str) -> None:
        self.data[key] = value
        self.rows.append((label, shown))
        print(f"  {label:<58} {shown}", flush=True)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds (this process) of the block."""
    out: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield out
    out["wall"] = time.perf_counter() - wall
    out["cpu"] = time.process_time() - cpu


def _worker_init() -> None:
    minilm.encoder()


def _worker_encode(texts: list[str]) -> bytes:
    return to_bytes(minilm.encoder().encode(texts))


def embed_parallel(profiles: Sequence[Profile], workers: int) -> list[Participant]:
    """`embed`, with the texts spread over `workers` processes."""
    if workers <= 1:
        return embed(profiles, minilm.encoder().encode)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:

        def encode(texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
            chunk = max(1, len(texts) // (workers * 8))
            parts = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
            raw = list(pool.map(_worker_encode, parts))
            return np.concatenate(
                [np.frombuffer(r, dtype="<f4").reshape(-1, minilm.DIMENSION) for r in raw]
            )

        return embed(profiles, encode)


# -- steps ------------------------------------------------------------------------


def step_model(f: Figures) -> None:
    directory = minilm.model_dir()
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    f.add("model_files_mb", "model: weights package installed", size / 1e6, f"{size / 1e6:.0f} MB")
    with timed() as t:
        minilm.SentenceEncoder(directory)
    f.add(
        "model_load_s", "model: load (safetensors → numpy, vocab)", t["wall"], f"{t['wall']:.2f} s"
    )
    minilm.encoder()


def step_embedding(f: Figures, profiles: list[Profile], workers: int) -> list[Participant]:
    texts = [t for p in profiles for t in (*p.requests, *p.offers)]
    tokens = sum(len(minilm.encoder().tokenizer.encode(t, minilm.MAX_TOKENS)) for t in texts)
    with timed() as t:
        participants = embed_parallel(profiles, workers)
    rate = len(texts) / t["wall"]
    f.add(
        "embed_all_s",
        f"embedding: {len(profiles)} profiles, {len(texts)} texts, {tokens} tokens",
        t["wall"],
        f"{t['wall']:.1f} s ({rate:.0f} texts/s, {workers} processes)",
    )
    encode = minilm.encoder().encode
    latencies = []
    for p in profiles[:30]:
        with timed() as one:
            embed([p], encode)
        latencies.append(one["wall"])
    median = statistics.median(latencies)
    f.add(
        "embed_one_ms",
        "embedding: one profile (median of 30), this process",
        median * 1e3,
        f"{median * 1e3:.1f} ms",
    )
    return participants


def step_ranking(f: Figures, participants: list[Participant]) -> dict[str, Any]:
    with timed() as build:
        ranker = Ranker(participants, ALL_TYPES)
    with timed() as rank:
        lists = ranker.all_lists(K)
    total = build["wall"] + rank["wall"]
    f.add(
        "ranker_build_s",
        "ranking: arrays of the event (Ranker)",
        build["wall"],
        f"{build['wall']:.2f} s",
    )
    f.add(
        "rank_all_s",
        f"ranking: all {len(participants)} lists from scratch, K={K}",
        rank["wall"],
        f"{rank['wall']:.2f} s (cpu {rank['cpu']:.2f} s)",
    )
    f.add("rank_total_s", "ranking: total (build + lists)", total, f"{total:.2f} s")
    with timed() as ten:
        ranker.all_lists(10)
    f.add(
        "rank_all_k10_s",
        "ranking: all lists from scratch, K=10",
        ten["wall"],
        f"{ten['wall']:.2f} s",
    )
    return lists


def step_incremental(
    f: Figures, participants: list[Participant], lists: dict[str, Any], newcomer: Profile
) -> None:
    encode = minilm.encoder().encode
    with timed() as e:
        new = embed([newcomer], encode)[0]
    with timed() as build:
        ranker = Ranker([*participants, new], ALL_TYPES)
    with timed() as p:
        change = incremental.plan(
            ranker, new.id, incremental.holders_of(lists, new.id), incremental.floors_of(lists)
        )
        incremental.apply(lists, change)
    total = e["wall"] + build["wall"] + p["wall"]
    f.add(
        "inc_join_embed_ms",
        "incremental (pure): embed participant N+1",
        e["wall"] * 1e3,
        f"{e['wall'] * 1e3:.1f} ms",
    )
    f.add(
        "inc_join_build_ms",
        "incremental (pure): Ranker of N+1",
        build["wall"] * 1e3,
        f"{build['wall'] * 1e3:.1f} ms",
    )
    f.add(
        "inc_join_plan_ms",
        f"incremental (pure): plan + apply ({change.touched} lists changed)",
        p["wall"] * 1e3,
        f"{p['wall'] * 1e3:.1f} ms",
    )
    f.add(
        "inc_join_total_ms", "incremental (pure): join total", total * 1e3, f"{total * 1e3:.0f} ms"
    )
    same = lists == ranker.all_lists(K)
    f.add("inc_join_equal", "incremental (pure): lists == from scratch", same, str(same))
    counts: dict[str, int] = {}
    for entries in lists.values():
        for entry in entries:
            counts[entry.partner] = counts.get(entry.partner, 0) + 1
    star = max(counts, key=lambda k: (counts[k], k))
    remaining = [q for q in [*participants, new] if q.id != star]
    with timed() as leave:
        ranker = Ranker(remaining, ALL_TYPES)
        change = incremental.plan(
            ranker, star, incremental.holders_of(lists, star), incremental.floors_of(lists)
        )
        incremental.apply(lists, change)
    f.add(
        "inc_leave_ms",
        f"incremental (pure): most-held participant leaves ({counts[star]} lists)",
        leave["wall"] * 1e3,
        f"{leave['wall'] * 1e3:.0f} ms",
    )
    same = lists == ranker.all_lists(K)
    f.add("inc_leave_equal", "incremental (pure): lists == from scratch", same, str(same))


# -- the database path ---------------------------------------------------------------

HANDLERS = combine(projection.HANDLERS, recommendations.HANDLERS)


def _payload_profile(p: Profile) -> OrganisationProfile:
    return OrganisationProfile(
        organisation_type=OrganisationType(p.organisation_type),
        name=p.name,
        country=p.country,
        sectors=list(p.sectors),
        technologies=list(p.technologies),
        value_chain_position=p.value_chain_position,
        markets=list(p.markets),
        offers=list(p.offers),
        requests=list(p.requests),
        attendance=Attendance.ON_SITE,
        availability=[],
        representatives_encrypted="sealed",
        representative_count=1,
    )


async def _apply(pool: asyncpg.Pool, event: EventPayload) -> float:
    envelope = Envelope.wrap(event, key=EVENT)
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await HANDLERS[event.ce_type()](conn, envelope, event)
    return time.perf_counter() - started


async def _seed(pool: asyncpg.Pool, participants: list[Participant]) -> None:
    await _apply(
        pool,
        BrokerageEventCreated(
            event_id=EVENT,
            organiser_id="bench",
            name="bench",
            venue="bench",
            time_zone="Europe/Berlin",
            days=[date(2030, 1, 1)],
            sessions=[Session(start=clock(9), end=clock(17))],
            slot_minutes=30,
            tables=100,
            meeting_types=list(MeetingType),
            registration_deadline=datetime(2029, 12, 1, tzinfo=UTC),
        ),
    )
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "participants",
            columns=[
                "registration_id",
                "event_id",
                "organisation_type",
                "name",
                "country",
                "sectors",
                "technologies",
                "value_chain_position",
                "markets",
                "offers",
                "requests",
                "attendance",
                "status",
            ],
            records=[
                (
                    q.id,
                    EVENT,
                    q.profile.organisation_type,
                    q.profile.name,
                    q.profile.country,
                    list(q.profile.sectors),
                    list(q.profile.technologies),
                    q.profile.value_chain_position,
                    list(q.profile.markets),
                    list(q.profile.offers),
                    list(q.profile.requests),
                    "on_site",
                    "approved",
                )
                for q in participants
            ],
        )
        await recommendations.store_vectors(conn, EVENT, participants)


async def step_database(f: Figures, participants: list[Participant], newcomer: Profile) -> None:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
    await admin.execute(create_database(name))
    await admin.close()
    pool = await create_pool(urlsplit(ADMIN_DSN)._replace(path=f"/{name}").geturl())
    try:
        await migrate(pool, MIGRATIONS)
        await _seed(pool, participants)
        with timed() as t:
            async with pool.acquire() as conn, conn.transaction():
                n = await recommendations.rebuild_event(conn, EVENT)
        f.add(
            "db_rebuild_s",
            f"database: rebuild all {n} lists (load, rank, write)",
            t["wall"],
            f"{t['wall']:.2f} s",
        )
        rid = newcomer.registration_id
        model = REGISTERED_BY_TYPE[OrganisationType(newcomer.organisation_type)]
        registered = model(
            registration_id=rid,
            event_id=EVENT,
            profile=_payload_profile(newcomer),
            api_key_digest="bench",
        )
        reg = await _apply(pool, registered)
        f.add(
            "db_registered_ms",
            "database: Registered N+1 (projection + queued for embedding)",
            reg * 1e3,
            f"{reg * 1e3:.0f} ms",
        )
        approve = RegistrationApproved(registration_id=rid, event_id=EVENT)
        # Approved before its vectors landed: in no list yet (pending). The worker's
        # round embeds it, stores the vectors and brings it into the lists.
        await _apply(pool, approve)
        with timed() as t:
            await recommendations.drain(pool)
        f.add(
            "db_worker_landed_ms",
            "database: worker round for approved N+1 (embed, store, enter lists)",
            t["wall"] * 1e3,
            f"{t['wall'] * 1e3:.0f} ms",
        )
        withdraw = RegistrationWithdrawn(registration_id=rid, event_id=EVENT)
        await _apply(pool, withdraw)
        warm, cold = [], []
        for _ in range(3):  # approve and withdraw again: samples, warm and cold
            warm.append(await _apply(pool, approve))
            await _apply(pool, withdraw)
        restarted, warm_ups = [], []
        for _ in range(2):
            recommendations.states.clear()  # as after a restart: the event is loaded first
            cold.append(await _apply(pool, approve))
            await _apply(pool, withdraw)
        for _ in range(2):
            recommendations.states.clear()  # a restart, with the service's warm-up
            with timed() as w:
                await recommendations.warm_up(pool)
            warm_ups.append(w["wall"])
            restarted.append(await _apply(pool, approve))
            await _apply(pool, withdraw)
        await _apply(pool, approve)
        for label, samples, note in (
            ("", warm, ""),
            ("_cold", cold, " (first change after a restart, no warm-up)"),
            ("_restart", restarted, " (first change after a restart with warm-up)"),
        ):
            median = statistics.median(samples)
            every = ", ".join(f"{x * 1e3:.0f}" for x in samples)
            f.add(
                f"db_approved{label}_ms",
                "database: Approved N+1 → lists updated" + note,
                median * 1e3,
                f"{median * 1e3:.0f} ms (median of {every})",
            )
        f.add(
            "warm_up_s",
            "database: the service's warm-up at start (model + event preload)",
            max(warm_ups),
            f"{max(warm_ups):.2f} s",
        )
        async with pool.acquire() as conn:
            ranker = await recommendations.load_ranker(conn, EVENT)
        stored = await _stored(pool)
        same = stored == ranker.all_lists(K)
        f.add("db_equal", "database: stored lists == from scratch", same, str(same))
        star = await pool.fetchval(
            "SELECT p FROM recommendation_lists, unnest(partner_ids) p"
            " GROUP BY p ORDER BY count(*) DESC, p LIMIT 1"
        )
        held = await pool.fetchval(
            "SELECT count(*) FROM recommendation_lists WHERE partner_ids @> ARRAY[$1]", star
        )
        gone = await _apply(pool, RegistrationWithdrawn(registration_id=star, event_id=EVENT))
        f.add(
            "db_withdrawn_ms",
            f"database: most-held participant withdraws ({held} lists)",
            gone * 1e3,
            f"{gone * 1e3:.0f} ms",
        )
        async with pool.acquire() as conn:
            ranker = await recommendations.load_ranker(conn, EVENT)
        same = await _stored(pool) == ranker.all_lists(K)
        f.add("db_equal_after_leave", "database: stored lists == from scratch", same, str(same))
    finally:
        await pool.close()
        admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _stored(pool: asyncpg.Pool) -> dict[str, Any]:
    rows = await pool.fetch("SELECT registration_id, partner_ids, scores FROM recommendation_lists")
    return {
        r["registration_id"]: [
            Entry.of(p, s) for p, s in zip(r["partner_ids"], r["scores"], strict=True)
        ]
        for r in rows
    }


# -- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--participants", type=int, default=5000)
    parser.add_argument("--embed-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-db", action="store_true", help="skip the database step")
    parser.add_argument("--quick", action="store_true", help="500 participants")
    args = parser.parse_args(argv)
    n = 500 if args.quick else args.participants
    f = Figures()
    f.data["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": load(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    print(
        f"recommendations bench: {n} participants, {os.cpu_count()} CPUs, load {load():.2f},"
        f" OPENBLAS_NUM_THREADS={f.data['machine']['openblas_threads']}"
    )
    profiles = synthetic(n + 1)
    newcomer = profiles.pop()
    step_model(f)
    participants = step_embedding(f, profiles, args.embed_workers)
    lists = step_ranking(f, participants)
    embed_s, rank_s = f.data["embed_all_s"], f.data["rank_total_s"]
    f.add(
        "scratch_total_s",
        "from scratch: embedding + ranking",
        embed_s + rank_s,
        f"{embed_s + rank_s:.1f} s (ranking alone {rank_s:.2f} s)",
    )
    step_incremental(f, participants, lists, newcomer)
    if not args.no_db:
        asyncio.run(step_database(f, participants, newcomer))
    step_quality(f)  # bench.recommendation_quality
    f.data["machine"]["load_after"] = load()
    print(f"load before {f.data['machine']['load_before']:.2f}, after {load():.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(f.data, indent=1, default=str))
    print(f"figures in {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
