"""Step 5: registration and matching as processes; HTTP command -> event committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.backbone.common import (
    BOOTSTRAP,
    OUT_DIR,
    REPO,
    VENV_PYTHON,
    CpuWindow,
    dsn_for,
    free_port,
    summary_ms,
    wait_for,
)
from bench.backbone.load import LoadClient, fire
from bench.backbone.resources import Resources


def histogram_from_metrics(text: str, name: str, labels: dict[str, str]) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram, from /metrics text."""
    buckets: dict[float, float] = {}
    pattern = re.compile(rf"^{name}_bucket\{{(.*)\}} (\S+)$")
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            le = math.inf if found["le"] == "+Inf" else float(found["le"])
            buckets[le] = buckets.get(le, 0.0) + float(m.group(2))
    return buckets


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile."""
    total = buckets.get(math.inf, 0)
    if not total:
        return None
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return math.inf


LAUNCHER = Path(__file__).with_name("launch.py")


def start_service(
    res: Resources,
    service: str,
    env: dict[str, str],
    wrapped: bool,
    log_dir: Path,
    name: str,
    tree: Path = REPO,
) -> subprocess.Popen[bytes]:
    """Run `service` from the source tree `tree` (this checkout, or a `--compare`
    revision), through `launch.py` (which counts its SQL statements)."""
    module = [str(LAUNCHER), service] if wrapped else ["-m", f"services.{service}"]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(log_dir / f"{name}.log", "wb")
    proc = subprocess.Popen(
        [str(VENV_PYTHON), *module],
        cwd=tree,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    res.processes.append((name, proc))
    return proc


REGISTRATION_ROWS = (
    "SELECT substr(e.stream_id, 14) AS registration_id, e.event_id::text AS ce_id,"
    " extract(epoch FROM e.recorded_at)::float8 AS recorded,"
    " extract(epoch FROM o.published_at)::float8 AS published"
    " FROM events e JOIN outbox o ON o.event_id = e.event_id::text"
    " WHERE e.stream_id = ANY($1::text[]) AND e.version = 1"
)


@dataclass
class Platform:
    """The two services under test, their databases and what step 5 needs to drive them."""

    urls: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]]
    reg_conn: asyncpg.Connection
    match_conn: asyncpg.Connection
    group: str
    topic: str
    event_id: str
    ready_s: float
    first_event_s: float
    profiles: dict[str, Path]
    commits: Path  # matching's commit stamps ("message id<TAB>unix time" lines, bench._service)
    statements: dict[int, Path]  # registration pid -> its statement counts (launch.py)
    spans: Path  # the services' exported spans (their default exporter, jsonl)
    registration_db: str


async def start_platform(
    res: Resources,
    label: str,
    isolated: bool,
    profile: str | None,
    extra_env: dict[str, str],
    registration_instances: int = 1,
    tree: Path = REPO,
) -> Platform:
    """Start registration (K instances) and matching on fresh databases, named after `label`,
    from the source tree `tree`, with the services' default telemetry settings (spans
    exported to `<label>-spans.jsonl`, removed with the run's other files)."""
    suffix = f"-bench{res.hex}-{label}"
    reg_db = await res.create_database(f"bench_{res.hex}_{label}_registration")
    match_db = await res.create_database(f"bench_{res.hex}_{label}_matching")
    topic = "registration.events"
    matching_topic = ""
    if isolated:
        topic = await res.create_topic(f"bench{res.hex}.{label}.registration.events")
        await res.create_topic(f"{topic}.dlq", 1)
        # Both services also read `matching.events`; the platform's topic holds every
        # other run's events, which a fresh consumer group would replay during the phase.
        matching_topic = await res.create_topic(f"bench{res.hex}.{label}.matching.events")
        await res.create_topic(f"{matching_topic}.dlq", 1)
    admin_key = f"bench-admin-{uuid.uuid4().hex}"
    # Extra registration instances share its database; one relay holds the lock.
    ports = {"registration": free_port(), "matching": free_port()}
    for k in range(2, registration_instances + 1):
        ports[f"registration-{k}"] = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "REGISTRATION_PORT": str(ports["registration"]),
        "MATCHING_PORT": str(ports["matching"]),
        "REGISTRATION_DATABASE_URL": dsn_for(reg_db),
        "MATCHING_DATABASE_URL": dsn_for(match_db),
        "PLATFORM_ADMIN_KEY": admin_key,
        "SERVICE_HOST": "127.0.0.1",
        "CONSUMER_GROUP_SUFFIX": suffix,  # ignored if shared.settings lacks it
        "BENCH_REGISTRATION_TOPIC": topic,
        "BENCH_MATCHING_TOPIC": matching_topic,  # launch.py renames `matching.events`
        "PYTHONUNBUFFERED": "1",
    }
    spans = OUT_DIR / "logs" / f"{label}-spans.jsonl"
    spans.parent.mkdir(parents=True, exist_ok=True)
    spans.unlink(missing_ok=True)
    env["TELEMETRY_JSONL_PATH"] = str(spans)
    env.pop("BENCH_PROFILE_FILE", None)
    env.update(extra_env)
    commits = OUT_DIR / "logs" / f"{label}-matching-commits.tsv"
    commits.unlink(missing_ok=True)
    group = f"matching{suffix}"
    res.groups.append(group)
    procs, profiles, counts = {}, {}, {}
    for service, port in ports.items():
        module = service.split("-")[0]
        service_env = env
        if service.startswith("registration"):
            counts[service] = OUT_DIR / "logs" / f"{label}-{service}-statements.json"
            counts[service].unlink(missing_ok=True)
            service_env = {
                **env,
                "REGISTRATION_PORT": str(port),
                "BENCH_STATEMENTS_FILE": str(counts[service]),
            }
        if profile == service:
            profiles[service] = OUT_DIR / f"{service}.prof"
            profiles[service].unlink(missing_ok=True)
            service_env = {**service_env, "BENCH_PROFILE_FILE": str(profiles[service])}
        if module == "matching":
            service_env = {**service_env, "BENCH_COMMITS_FILE": str(commits)}
        # Always through bench._service: matching's commit stamps need it (with
        # --shared-topic it renames nothing).
        procs[service] = start_service(
            res, module, service_env, True, OUT_DIR / "logs", f"{label}-{service}", tree
        )
    urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=5) as probe:
        for service, url in urls.items():

            async def ready(service: str = service, url: str = url) -> bool:
                if procs[service].poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with {procs[service].returncode};"
                        f" see var/bench/logs/{label}-{service}.log"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    return (await probe.get(f"{url}/ready")).status_code == 200
                return False

            await wait_for(ready, limit=90, interval=0.1, what=f"{service} /ready")
        ready_s = time.perf_counter() - started

        match_conn = await asyncpg.connect(dsn_for(match_db))
        res.add_cleanup("matching probe", match_conn.close)
        reg_conn = await asyncpg.connect(dsn_for(reg_db))
        res.add_cleanup("registration probe", reg_conn.close)

        base = urls["registration"]
        r = await probe.post(
            f"{base}/api/organisers",
            json={"name": f"Bench organiser {res.hex}"},
            headers={"X-API-Key": admin_key},
        )
        r.raise_for_status()
        organiser_key = r.json()["api_key"]
        first_day = date.today() + timedelta(days=60)
        r = await probe.post(
            f"{base}/api/events",
            headers={"X-API-Key": organiser_key},
            json={
                "name": f"Bench brokerage event {res.hex}",
                "venue": "Benchmark hall",
                "time_zone": "Europe/Berlin",
                "days": [first_day.isoformat(), (first_day + timedelta(days=1)).isoformat()],
                "sessions": [
                    {"start": "09:00", "end": "12:00"},
                    {"start": "13:00", "end": "17:00"},
                ],
                "slot_minutes": 30,
                "tables": 100,
                "meeting_types": ["Business2Business", "Cluster2Cluster"],
                "registration_deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
        )
        r.raise_for_status()
        event_id = r.json()["event_id"]

    async def matching_knows_event() -> bool:
        return bool(
            await match_conn.fetchval(
                "SELECT count(*) FROM brokerage_events WHERE event_id = $1", event_id
            )
        )

    first_event_s = await wait_for(
        matching_knows_event, limit=60, interval=0.01, what="matching to learn the brokerage event"
    )
    return Platform(
        urls,
        procs,
        reg_conn,
        match_conn,
        group,
        topic,
        event_id,
        ready_s,
        first_event_s,
        profiles,
        commits,
        {procs[service].pid: path for service, path in counts.items()},
        spans,
        reg_db,
    )


def _seq(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["seq"])
    except (OSError, ValueError, KeyError):
        return 0


async def statement_counts(p: Platform) -> dict[str, list[int]]:
    """The registration processes' SQL so far, summed: statement -> [round trips,
    statements] (`launch.py` writes them on SIGUSR1)."""
    total: dict[str, list[int]] = {}
    for pid, path in p.statements.items():
        before = _seq(path)
        os.kill(pid, signal.SIGUSR1)

        async def written(path: Path = path, before: int = before) -> bool:
            return _seq(path) > before

        await wait_for(written, limit=10, interval=0.02, what=f"statement counts of pid {pid}")
        for query, (trips, statements) in json.loads(path.read_text())["counts"].items():
            entry = total.setdefault(query, [0, 0])
            entry[0] += trips
            entry[1] += statements
    return total


def per_command(
    before: dict[str, list[int]], after: dict[str, list[int]], commands: int
) -> dict[str, Any]:
    """Round trips and statements per command between two `statement_counts`."""
    diff = {
        q: [n[0] - before.get(q, [0, 0])[0], n[1] - before.get(q, [0, 0])[1]]
        for q, n in after.items()
    }
    diff = {q: n for q, n in diff.items() if n[0] > 0}
    return {
        "round_trips": round(sum(n[0] for n in diff.values()) / commands, 2),
        "statements": round(sum(n[1] for n in diff.values()) / commands, 2),
        "by_statement": {
            q: [round(n[0] / commands, 3), round(n[1] / commands, 3)]
            for q, n in sorted(diff.items(), key=lambda kv: -kv[1][0])
        },
    }


# PostgreSQL's own count of the registration database's transactions and rows. Backends
# report their statistics at most once a second (an idle one within ten), so these are
# read after the drain and are approximate.
DATABASE_STATS = (
    "SELECT xact_commit + xact_rollback AS transactions, tup_inserted + tup_updated"
    " + tup_deleted AS rows_written FROM pg_stat_database WHERE datname = $1"
)


def spans_by_service(path: Path) -> dict[str, int]:
    """How many spans each service has exported to the jsonl file so far."""
    counts: dict[str, int] = {}
    if not path.exists():
        return counts
    with open(path, "rb") as f:
        for line in f:
            found = re.search(rb'"service":"([^"]*)"', line)
            name = found.group(1).decode() if found else "?"
            counts[name] = counts.get(name, 0) + 1
    return counts


def read_commits(path: Path) -> dict[str, float]:
    """When matching committed each event's batch: message id -> unix time (the first
    commit, should a redelivery be claimed again; the inbox skips it then)."""
    out: dict[str, float] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        message_id, _, at = line.partition("\t")
        if at:
            out[message_id] = min(float(at), out.get(message_id, math.inf))
    return out


async def step_end_to_end(
    res: Resources,
    p: Platform,
    rate: float,
    duration: float,
    warmup: float,
    offset: int,
    client_kind: str,
) -> dict[str, Any]:
    client = LoadClient(
        client_kind, [url for name, url in p.urls.items() if name.startswith("registration")]
    )
    try:
        return await _phase(res, p, rate, duration, warmup, offset, client)
    finally:
        await client.close()


async def _phase(
    res: Resources,
    p: Platform,
    rate: float,
    duration: float,
    warmup: float,
    offset: int,
    client: LoadClient,
) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as scrape:
        path = f"/api/events/{p.event_id}/registrations"
        warm_count = int(rate * warmup)
        if warm_count:
            warm = await fire(client, path, warm_count, rate, res.hex, offset)
            if all(s.status != 201 for s in warm):
                raise RuntimeError(f"every warm-up registration failed, e.g. {warm[0].error}")
            await asyncio.sleep(1.0)

        metrics_before = (await scrape.get(f"{p.urls['matching']}/metrics")).text
        statements_before = await statement_counts(p)
        spans_before = spans_by_service(p.spans)
        database_before = await p.reg_conn.fetchrow(DATABASE_STATS, p.registration_db)
        cpu = CpuWindow(
            labels={proc.pid: f"{name.split('-')[0]} service" for name, proc in p.procs.items()}
        )
        cpu.start()
        count = int(rate * duration)
        client_cpu = time.process_time()
        sent = await fire(client, path, count, rate, res.hex, offset + warm_count)
        client_cpu = time.process_time() - client_cpu
        answered_all = time.time()
        ok = [s for s in sent if s.status == 201 and s.registration_id]
        streams = [f"registration-{s.registration_id}" for s in ok]
        by_reg = {
            r["registration_id"]: r for r in await p.reg_conn.fetch(REGISTRATION_ROWS, streams)
        }
        message_ids = [
            f"/services/registration#{by_reg[s.registration_id]['ce_id']}"
            for s in ok
            if s.registration_id in by_reg
        ]

        async def all_consumed() -> bool:
            got = await p.match_conn.fetchval(
                "SELECT count(*) FROM inbox WHERE consumer = $1 AND message_id = ANY($2::text[])",
                p.group,
                message_ids,
            )
            return int(got) >= len(message_ids)

        async def all_committed() -> bool:
            if not await all_consumed():
                return False
            stamped = read_commits(p.commits)
            return all(m in stamped for m in message_ids)

        drain = await wait_for(
            all_committed, limit=180, interval=0.05, what="matching to commit every registration"
        )
        ids = [s.registration_id for s in ok]

        async def all_embedded() -> bool:
            # The embedding worker stores the vectors after the commit (inline: in it).
            got = await p.match_conn.fetchval(
                "SELECT count(*) FROM participant_vectors WHERE registration_id = ANY($1::text[])",
                ids,
            )
            return int(got) >= len(ids)

        embedded = drain + await wait_for(
            all_embedded, limit=180, interval=0.05, what="matching to store every vector"
        )
        cpu_used = cpu.stop()  # after the vectors: the embedding's CPU is counted either way
        statements_after = await statement_counts(p)
        metrics_after = (await scrape.get(f"{p.urls['matching']}/metrics")).text
        await asyncio.sleep(1.5)  # see DATABASE_STATS; the span exporters' delay is 0.5 s
        spans_after = spans_by_service(p.spans)
        database_after = await p.reg_conn.fetchrow(DATABASE_STATS, p.registration_db)
    # published_at is set by the relay round after the one that sent the row: read it again now.
    by_reg = {r["registration_id"]: r for r in await p.reg_conn.fetch(REGISTRATION_ROWS, streams)}
    consumed = {
        r["message_id"]: r["processed"]
        for r in await p.match_conn.fetch(
            "SELECT message_id, extract(epoch FROM processed_at)::float8 AS processed"
            " FROM inbox WHERE consumer = $1 AND message_id = ANY($2::text[])",
            p.group,
            message_ids,
        )
    }
    committed = read_commits(p.commits)
    vectors = {
        r["registration_id"]: r["embedded"]
        for r in await p.match_conn.fetch(
            "SELECT registration_id, extract(epoch FROM embedded_at)::float8 AS embedded"
            " FROM participant_vectors WHERE registration_id = ANY($1::text[])",
            [s.registration_id for s in ok],
        )
    }
    participants = await p.match_conn.fetchval(
        "SELECT count(*) FROM participants WHERE registration_id = ANY($1::text[])",
        [s.registration_id for s in ok],
    )

    http: list[float] = []
    ingress: list[float] = []
    to_published: list[float] = []
    to_claim: list[float] = []  # matching's inbox claim: its transaction's start
    claim_to_commit: list[float] = []  # the handlers and the commit
    e2e: list[float] = []  # send -> matching's transaction committed
    to_vectors: list[float] = []  # send -> its vectors stored (the worker's transaction)
    committed_to_vectors: list[float] = []
    resp_to_committed: list[float] = []
    pub_to_committed: list[float] = []
    for s in ok:
        row = by_reg.get(s.registration_id or "")
        if row is None:
            continue
        message_id = f"/services/registration#{row['ce_id']}"
        processed = consumed.get(message_id)
        done = committed.get(message_id)
        http.append(s.answered - s.sent)
        ingress.append(row["recorded"] - s.sent)
        if row["published"] is not None:
            to_published.append(row["published"] - s.sent)
        if processed is not None:
            to_claim.append(processed - s.sent)
        landed = vectors.get(s.registration_id or "")
        if landed is not None:
            to_vectors.append(landed - s.sent)
            if done is not None:
                committed_to_vectors.append(landed - done)
        if done is not None:
            e2e.append(done - s.sent)
            resp_to_committed.append(done - s.answered)
            if processed is not None:
                claim_to_commit.append(done - processed)
            if row["published"] is not None:
                pub_to_committed.append(done - row["published"])
    sends = [s.sent for s in sent]
    lags = [s.sent - s.scheduled for s in sent]
    window = max(sends) - min(sends)
    errors: dict[str, int] = {}
    for s in sent:
        if s.status != 201:
            key = f"{s.status} {(s.error or '')[:80]}"
            errors[key] = errors.get(key, 0) + 1

    labels = {"service": p.group}
    before = histogram_from_metrics(metrics_before, "event_processing_seconds", labels)
    after = histogram_from_metrics(metrics_after, "event_processing_seconds", labels)
    diff = {le: value - before.get(le, 0.0) for le, value in after.items()}
    return {
        "target_rate": rate,
        "client": client.kind,
        "client_cpu_ms_per_command": round(1000 * client_cpu / count, 2),
        "warmup_commands": warm_count,
        "commands": count,
        "ok": len(ok),
        "errors": errors,
        "achieved_send_rate": round((count - 1) / window, 1) if window > 0 else None,
        "completed_rate": round(len(ok) / (answered_all - min(sends)), 1),
        "send_schedule_lag": summary_ms(lags),
        "http_latency": summary_ms(http),
        "send_to_command_txn_start": summary_ms(ingress),
        "send_to_published_acked": summary_ms(to_published),
        "send_to_inbox_claim": summary_ms(to_claim),
        "inbox_claim_to_commit": summary_ms(claim_to_commit),
        "send_to_committed": summary_ms(e2e),
        "http_response_to_committed": summary_ms(resp_to_committed),
        "published_to_committed": summary_ms(pub_to_committed),
        "send_to_vectors": summary_ms(to_vectors),
        "committed_to_vectors": summary_ms(committed_to_vectors),
        "vectors_stored": len(vectors),
        "vectors_drain_after_last_response_s": round(embedded, 2),
        "matching_batch_fetch_to_commit": {
            "batches": int(diff.get(math.inf, 0)),
            "p50_le_s": bucket_quantile(diff, 0.5),
            "p99_le_s": bucket_quantile(diff, 0.99),
        },
        "participants_projected": participants,
        "drain_after_last_response_s": round(drain, 2),
        "cpu": cpu_used,
        "registration_sql_per_command": per_command(statements_before, statements_after, count),
        "spans_exported_per_command": {
            service: round((n - spans_before.get(service, 0)) / count, 2)
            for service, n in spans_after.items()
        },
        "registration_database_per_command": {
            k: round((database_after[k] - database_before[k]) / count, 2)
            for k in ("transactions", "rows_written")
        },
        "cpu_ms_per_command": {
            k: round(1000 * v / count, 2)
            for k, v in cpu_used["cpu_s"].items()
            if not k.startswith("other")
        },
    }
