"""`make bench-import`: a registration service imports 5,000 rows from one XLSX upload.

The service runs as it does in production (`python -m services.registration`) on a
fresh database and the real broker, under topics of its own (created for the run and
deleted after it, so no other platform or test run sees the 10,000 events). Measured:
the upload of a 5,000-row XLSX (all rows valid, all-or-nothing), the same file again
(every row reported unchanged, nothing created), and a 5,000-row CSV into a second
event. Figures are printed and written to var/bench/import.json.

    .venv/bin/python -m bench.imports [--rows 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from openpyxl import Workbook

from tests.integration.support import REPO_ROOT, fresh_databases, platform_topics

ADMIN_KEY = "bench-import-admin-key"
OUT = Path("var/bench/import.json")
COUNTRIES = ["DE", "FR", "IT", "ES", "PL", "AT", "BE", "NL", "SE", "PT"]
HEADERS = [
    "organisation_type",
    "name",
    "country",
    "sectors",
    "offers",
    "requests",
    "representative_name",
    "representative_email",
]


def rows(n: int, tag: str) -> list[list[str]]:
    return [
        [
            "cluster" if i % 4 else "business",
            f"{tag} organisation {i:05d}",
            COUNTRIES[i % len(COUNTRIES)],
            "ICT; photonics" if i % 2 else "automotive; new materials",
            f"offer {i}",
            "partners for joint projects",
            f"Contact {i}",
            f"contact{i}@bench.example",
        ]
        for i in range(n)
    ]


def xlsx(data: list[list[str]]) -> bytes:
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.append(HEADERS)
    for row in data:
        ws.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv(data: list[list[str]]) -> bytes:
    lines = [",".join(HEADERS), *(",".join(f'"{v}"' for v in row) for row in data)]
    return ("\r\n".join(lines) + "\r\n").encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def event() -> dict[str, Any]:
    first = date.today() + timedelta(days=60)
    return {
        "name": "Import bench",
        "venue": "Hannover",
        "time_zone": "Europe/Berlin",
        "days": [first.isoformat()],
        "sessions": [{"start": "09:00", "end": "17:00"}],
        "slot_minutes": 30,
        "tables": 100,
        "meeting_types": ["Cluster2Cluster", "Business2Cluster", "Business2Business"],
        "registration_deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }


async def topics(bootstrap: str, prefix: str, create: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = {f"{prefix}{t}": n for t, n in platform_topics().items()}
        if create:
            await admin.create_topics([NewTopic(t, n, 1) for t, n in names.items()])
        else:
            await admin.delete_topics(list(names))
    finally:
        await admin.close()


async def upload(
    http: httpx.AsyncClient, event_id: str, key: str, name: str, content: bytes
) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = await http.post(
        f"/api/events/{event_id}/registrations/import",
        headers={"X-API-Key": key},
        files={"file": (name, content)},
    )
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return seconds, answer


async def bench(n: int) -> dict[str, Any]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    admin_dsn = os.environ.get(
        "TEST_DATABASE_ADMIN_URL", "postgresql://postgres:postgres@localhost:5432/postgres"
    )
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-import-{run}."
    port = free_port()
    log = Path("var/bench/import-registration.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    await topics(bootstrap, prefix, create=True)
    try:
        async with fresh_databases(admin_dsn, {"registration": f"bench_import_{run}"}) as dsns:
            env = {
                **os.environ,
                "REGISTRATION_DATABASE_URL": dsns["registration"],
                "REGISTRATION_PORT": str(port),
                "PLATFORM_ADMIN_KEY": ADMIN_KEY,
                "TOPIC_PREFIX": prefix,
                "CONSUMER_GROUP_SUFFIX": f"-bench-import-{run}",
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "OTEL_TRACES_EXPORTER": "none",
            }
            proc = start(env, log)
            try:
                return await measure(f"http://127.0.0.1:{port}", n)
            finally:
                stop(proc)
    finally:
        await topics(bootstrap, prefix, create=False)


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.registration"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def measure(url: str, n: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (await http.get("/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the registration service did not get ready")
            await asyncio.sleep(0.2)
        admin = {"X-API-Key": ADMIN_KEY}
        organiser = (await http.post("/api/organisers", headers=admin, json={"name": "b"})).json()
        key = organiser["api_key"]
        first = (await http.post("/api/events", headers={"X-API-Key": key}, json=event())).json()
        second = (await http.post("/api/events", headers={"X-API-Key": key}, json=event())).json()
        book = xlsx(rows(n, "Xlsx"))
        seconds, answer = await upload(http, first["event_id"], key, "rows.xlsx", book)
        assert len(answer["created"]) == n, answer["refused"][:5]
        again, repeat = await upload(http, first["event_id"], key, "rows.xlsx", book)
        assert not repeat["created"] and len(repeat["unchanged"]) == n
        text = csv(rows(n, "Csv"))
        csv_seconds, from_csv = await upload(http, second["event_id"], key, "rows.csv", text)
        assert len(from_csv["created"]) == n
    return {
        "rows": n,
        "xlsx_bytes": len(book),
        "xlsx_import_seconds": round(seconds, 2),
        "xlsx_rows_per_second": round(n / seconds),
        "reupload_unchanged_seconds": round(again, 2),
        "csv_import_seconds": round(csv_seconds, 2),
        "csv_rows_per_second": round(n / csv_seconds),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    figures = asyncio.run(bench(args.rows))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
