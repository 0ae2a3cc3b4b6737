"""make bench-event's parts that need no platform: the workloads, the stub, the table."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from bench.backbone.load import RawHttpClient
from bench.event import report, stub
from bench.event.api import Api, each
from bench.event.cli import state_size
from bench.event.cpu import part_of, roots
from bench.event.driver import drive
from bench.event.workload import Workload, split_bursts, workload
from scripts.mail_catcher import index_line, printed


@pytest.mark.parametrize(
    ("size", "participants", "accepted", "tables", "slots"),
    [
        ("hannover", 31, 63, 25, 28),
        ("bremen", 700, 2500, 100, 32),
        ("bioeurope", 3500, 18000, 600, 32),
    ],
)
def test_each_size_has_the_issues_figures(
    size: str, participants: int, accepted: int, tables: int, slots: int
) -> None:
    work = workload(size, "t")
    assert len(work.participants) == participants
    assert len(work.accepted) == accepted
    assert work.event["tables"] == tables
    hours = sum(
        int(s["end"][:2]) + int(s["end"][3:]) / 60 - int(s["start"][:2]) - int(s["start"][3:]) / 60
        for s in work.event["sessions"]
    )
    assert len(work.event["days"]) * hours * 2 == slots  # 30-minute slots
    # Every participant registers once, in bursts; the declined requests are other pairs.
    assert [i for b in work.bursts for i in b] == list(range(participants))
    assert len(work.declined) == max(1, accepted // 8)
    met = {frozenset(p) for p in work.accepted}
    assert len(met) == accepted
    assert not met & {frozenset(p) for p in work.declined}
    assert all(a != b for a, b in [*work.accepted, *work.declined])
    assert work.commands["answer"] == accepted + len(work.declined)


def test_generated_sizes_keep_the_remote_share_of_their_instances() -> None:
    work = workload("bioeurope", "t")
    remote = {i for i, p in enumerate(work.participants) if p.remote}
    assert 0.05 < len(remote) / len(work.participants) < 0.11  # the instance's 8 %
    # Nobody remote is in an on-site meeting of the instance: every remote side is real.
    assert remote


def test_the_hannover_event_lies_ahead_so_participants_register_themselves() -> None:
    work = workload("hannover", "t")
    assert work.event["days"][0] > "2026"
    assert work.event["registration_deadline"] > "2026"
    assert {p.organisation_type for p in work.participants} == {"cluster", "business"}


def test_bursts_split_by_share_and_the_last_takes_the_rest() -> None:
    assert split_bursts(10) == [range(0, 1), range(1, 3), range(3, 10)]
    assert split_bursts(1) == [range(0, 1)]
    assert split_bursts(0) == []


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown size"):
        workload("copenhagen", "t")


async def test_the_driver_sends_every_command_to_the_stub() -> None:
    """The baseline: the driver against the do-nothing server, every command answered."""
    server = await asyncio.get_running_loop().create_server(stub.StubProtocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    work = workload("hannover", "t")
    api = Api(
        dict.fromkeys(
            ("registration", "matching", "scheduling", "notification", "reporting"),
            f"http://127.0.0.1:{port}",
        ),
        8,
    )
    try:
        run = await drive(api, work, "admin", None, 8, lambda _: None)
    finally:
        await api.close()
        server.close()
    expected = sum(work.commands.values()) + 1  # and the report read
    assert len(api.commands) == expected
    assert all(c.status == 201 and c.error is None for c in api.commands)
    assert len(run.accepted_at) == len(work.accepted)
    assert [p.name for p in run.phases][:5] == [
        "create",
        "register",
        "approve",
        "request",
        "answer",
    ]


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    closed_once = False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal closed_once
        await reader.readuntil(b"\r\n\r\n")
        writer.write(stub.answer())
        await writer.drain()
        if not closed_once:  # like uvicorn's keep-alive timeout
            closed_once = True
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = RawHttpClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 1)
    try:
        assert (await client.request("GET", "/x"))[0] == 201
        await asyncio.sleep(0.05)
        assert (await client.request("GET", "/y", headers={"x-api-key": "k"}))[0] == 201
    finally:
        await client.close()
        server.close()


async def test_each_collects_failures_without_stopping() -> None:
    from bench.event.api import CommandFailed

    seen: list[int] = []

    async def work(i: int) -> None:
        seen.append(i)
        if i % 2:
            raise CommandFailed(str(i))

    failures = await each(range(6), work, 2)
    assert sorted(seen) == list(range(6))
    assert sorted(str(f) for f in failures) == ["1", "3", "5"]


async def test_each_at_a_rate_starts_the_ith_item_no_sooner_than_i_over_rate() -> None:
    started: list[float] = []
    t0 = time.perf_counter()

    async def work(i: int) -> None:
        started.append(time.perf_counter() - t0)

    await each(range(5), work, 32, rate=50.0)
    assert len(started) == 5
    # An open loop: the item i waits for i / 50 s, whatever the concurrency allows.
    assert all(at >= i / 50.0 - 0.002 for i, at in enumerate(started))
    assert started[-1] >= 0.078


def result(**changes: object) -> dict[str, object]:
    phases = [
        {"name": "register", "commands": 700, "failed": 0, "sending_s": 10.0, "wall_s": 12.0},
        {"name": "schedule", "commands": 0, "failed": 0, "sending_s": 0.0, "wall_s": 3.0},
    ]
    commands = [{"phase": "register", "sent": 0.0, "answered": 0.05}] * 700
    base = {
        "started": "2026-12-04T20:00:00+00:00",
        "workload": {"size": "bremen", "participants": 700, "accepted": 2500, "declined": 312},
        "phases": report.phase_rows(phases, commands),
        "baseline": {"wall_s": 5.0, "phases": report.phase_rows(phases, commands)},
        "wall_s": 15.0,
        "latency_end": "commit",
        "latency": {
            "eu.matchmaking.registration.BusinessRegistered.v1": {
                "matching/matching": {"count": 700, "p50_ms": 12.0, "p95_ms": 40.0, "p99_ms": 90.0},
                "reporting/reporting": {
                    "count": 700,
                    "p50_ms": 8.0,
                    "p95_ms": 20.0,
                    "p99_ms": 30.0,
                    "split": {
                        "wait": {"p50_ms": 6.0, "p95_ms": 15.0, "p99_ms": 22.0},
                        "transaction": {"p50_ms": 2.0, "p95_ms": 5.0, "p99_ms": 8.0},
                    },
                },
                "last consumer": {"count": 700, "p50_ms": 13.0, "p95_ms": 41.0, "p99_ms": 91.0},
            }
        },
        "emails": {
            "deliveries": {"sent": 10},
            "caught": 10,
            "lost": 0,
            "doubled": 0,
            "unsent": 0,
            "later": 2,
            "accept_to_placed_email": {
                "count": 5,
                "p50_ms": 400.0,
                "p95_ms": 800.0,
                "p99_ms": 900.0,
            },
        },
        "cpu": {"machine_busy_pct": 90.0, "cpu_s": {"matching": 7.0, "kafka": 1.5}},
        "machine": {"cores": 2, "loadavg_at_start": [1.0, 1.0, 1.0]},
        "counts": {},
        "not_converged": [],
    }
    base.update(changes)
    return base


def test_the_table_shows_phases_rate_ratio_latencies_cpu_and_convergence() -> None:
    text = report.render(result())
    assert "| register | 700 | 0 | 10.0 | 12.0 | 70.0 | 50 / 50 | 10.0 |" in text
    assert "**3.0x**" in text  # 15 s / 5 s
    assert (
        "| registration.BusinessRegistered.v1 | 700 | 12 / 40 / 90 | 8 / 20 / 30 | 13 / 41 / 91 |"
        in text
    )
    assert "| matching | 7.0 | 10.00 |" in text  # 7 s over 700 commands
    assert "p50 / p95 / p99 400 / 800 / 900 ms" in text
    assert text.rstrip().endswith("Converged: **yes**")
    assert "Converged: **no**: e-mails doubled: 1" in report.render(
        result(not_converged=["e-mails doubled: 1"])
    )


def test_each_flows_slowest_consumer_is_split_into_wait_and_transaction() -> None:
    latency = result()["latency"]
    assert isinstance(latency, dict)
    flow = latency["eu.matchmaking.registration.BusinessRegistered.v1"]
    flow["matching/matching"]["split"] = {
        "wait": {"p50_ms": 10.0, "p95_ms": 30.0, "p99_ms": 70.0},
        "transaction": {"p50_ms": 2.0, "p95_ms": 10.0, "p99_ms": 20.0},
    }
    text = report.render(result(latency=latency))
    # matching's p99 (90) is the slowest: reporting's split is not the one shown.
    assert (
        "| registration.BusinessRegistered.v1 | matching/matching | 10 / 30 / 70 | 2 / 10 / 20 |"
        in text
    )
    assert "| reporting/reporting | 6 / 15 / 22" not in text
    # Without commit timestamps there is no split, and no table.
    assert "slowest consumer" not in report.render(
        result(latency={"x": {"a/a": {"count": 1, "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0}}})
    )


def test_a_run_without_the_baseline_says_so_instead_of_a_ratio() -> None:
    text = report.render(result(baseline={"wall_s": 0.0, "phases": []}))
    assert "No baseline run (`--no-baseline`)." in text
    assert "x**" not in text


def test_the_table_is_not_mistaken_for_the_backbone_benchs() -> None:
    """tests/unit/test_bench_readme.py checks tables headed `step` and `phase`."""
    from tests.unit.test_bench_readme import tables

    heads = {t[0][0] for t in tables(report.render(result()))}
    assert not heads & {"step", "phase"}


def test_convergence_names_what_differs() -> None:
    counts = {
        "approved participants": {"registration": 700, "matching": 699},
        "accepted meetings": {"matching": 2500, "scheduling": 2500},
        "scheduling status": {"placed": 2400, "unscheduled": 99, "pending": 1},
    }
    emails = {"lost": 0, "doubled": 2, "unsent": 0}
    wrong = report.converged(counts, emails, {"approved": 700, "accepted": 2500, "failed": 0})
    assert wrong == [
        "approved participants: expected 700, got {'matching': 699}",
        "scheduling placed or unscheduled 2499 of 2500:"
        " {'placed': 2400, 'unscheduled': 99, 'pending': 1}",
        "e-mails doubled: 2",
    ]
    counts["approved participants"]["matching"] = 700
    counts["scheduling status"] = {"placed": 2400, "unscheduled": 100}
    assert (
        report.converged(counts, {**emails, "doubled": 0}, {"approved": 700, "accepted": 2500})
        == []
    )


def test_the_catcher_indexes_arrival_message_id_and_kind() -> None:
    message = (
        b"From: a@example.org\r\nTo: b@example.org\r\nMessage-ID: <abc@matchmaking.local>\r\n"
        b"X-Matchmaking-Kind: meeting.placed\r\n\r\nbody\r\n"
    )
    line = json.loads(index_line(1700000000.123456, message, ["b@example.org"]))
    assert line == {
        "received": 1700000000.123456,
        "message_id": "<abc@matchmaking.local>",
        "kind": "meeting.placed",
        "to": ["b@example.org"],
    }


def test_the_catcher_prints_a_message_as_aiosmtpds_debugging_does() -> None:
    """One write per message, the same text as `Debugging`'s line-by-line printing."""
    import asyncio
    import io
    from types import SimpleNamespace

    from aiosmtpd.handlers import Debugging

    message = b"Message-ID: <m@x>\r\nSubject: Caf\xc3\xa9\r\n\r\nline one\r\n\r\nline three\r\n"
    for options in ([], ["SMTPUTF8"]):
        stream = io.StringIO()
        session = SimpleNamespace(peer=("127.0.0.1", 4242))
        envelope = SimpleNamespace(content=message, mail_options=options, rcpt_options=[])
        asyncio.run(Debugging(stream).handle_DATA(None, session, envelope))  # type: ignore[arg-type]
        assert printed(session.peer, options, message) == stream.getvalue()


def test_cpu_parts_follow_ancestry(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "matching.pid").write_text("100\n")
    (run / "matching.child.pid").write_text("101\n")
    (run / "mail.pid").write_text("300\n")
    (tmp_path / "postgres" / "data").mkdir(parents=True)
    (tmp_path / "postgres" / "data" / "postmaster.pid").write_text("200\n/data\n")
    tops = roots(tmp_path, run)
    assert tops == {100: "matching", 300: "mail catcher", 200: "postgresql"}
    ppid = {101: 100, 102: 101, 201: 200, 400: 1}
    assert part_of(102, tops, ppid) == "matching"  # a worker the service started
    assert part_of(201, tops, ppid) == "postgresql"  # a backend
    assert part_of(400, tops, ppid) is None
    assert part_of(os.getpid(), tops, {}) is None


def test_a_workload_counts_its_commands() -> None:
    work = Workload("x", {}, [], [(0, 1)], [(1, 2), (2, 0)], [])
    assert work.commands == {
        "create": 2, "register": 0, "approve": 0, "request": 3, "answer": 3,
        "reoptimise": 1, "publish": 1,
    }  # fmt: skip


def test_only_the_platforms_consumer_groups_count_for_lag() -> None:
    from bench.event.probe import platform_group

    assert platform_group("matching", "")
    assert platform_group("matching-1", "")
    assert platform_group("reporting-dead-letters", "")
    assert platform_group("notification-b2", "-b2")
    assert not platform_group("notification", "-b2")
    assert not platform_group("test.notification.abc", "")
    assert not platform_group("matching-bench1234-x", "")


def test_hannover_declines_only_meetings_the_event_offers() -> None:
    """The seed's event has no Business2Business meetings: a declined request between two
    businesses would be refused (422) and the run would not converge, whatever the tag."""
    for tag in (f"t{i}" for i in range(40)):
        work = workload("hannover", tag)
        for a, b in work.declined:
            kinds = (work.participants[a].organisation_type, work.participants[b].organisation_type)
            assert "cluster" in kinds, (tag, a, b)


def test_the_state_before_a_run_counts_postgres_and_every_kafka_nodes_logs(
    tmp_path: Path,
) -> None:
    (tmp_path / "postgres" / "data" / "base").mkdir(parents=True)
    (tmp_path / "postgres" / "data" / "base" / "1").write_bytes(b"x" * 3_000_000)
    for node in ("kafka", "kafka-2"):
        (tmp_path / node / "data").mkdir(parents=True)
        (tmp_path / node / "data" / "log").write_bytes(b"x" * 1_000_000)
        (tmp_path / node / "jars").mkdir()
        (tmp_path / node / "jars" / "kafka.jar").write_bytes(b"x" * 5_000_000)  # not state
    with (tmp_path / "kafka" / "data" / "sparse.index").open("wb") as sparse:
        sparse.truncate(10_000_000)  # preallocated, no blocks: not counted
    held = state_size(tmp_path)
    assert held == {"postgres_gb": 0.0, "kafka_gb": 0.0}  # rounded to 10 MB
    held_mb = {k: v * 1000 for k, v in state_size(tmp_path, digits=4).items()}
    assert round(held_mb["postgres_gb"]) == 3 and round(held_mb["kafka_gb"]) == 2
