"""`python -m bench.backbone`: the run of the steps, and its command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import backbone
from bench.backbone import common
from bench.backbone.common import OUT_DIR, REPO, log, machine_info
from bench.backbone.end_to_end import start_platform, step_end_to_end
from bench.backbone.pipeline import (
    prepare_pipeline,
    step_inbox,
    step_raw_consume,
    step_raw_produce,
    step_relay,
)
from bench.backbone.report import WHATIFS, print_profile, render
from bench.backbone.resources import Resources, stop_process
from shared import telemetry
from shared.settings import PlatformSettings


async def run(args: argparse.Namespace) -> dict[str, Any]:
    hex_id = uuid.uuid4().hex[:10]
    common.RUN_DB_TAG = f"bench_{hex_id}"
    res = Resources(hex_id)
    if args.quick:
        res.group_wait = 0.0
    steps = {int(x) for x in args.steps.split(",")}
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": hex_id,
        "machine": machine_info(),
        "config": {
            "events": args.events,
            "inbox_batch_size": args.inbox_batch,
            "relay_batch_size": args.relay_batch,
            "phases": args.phases,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "registration_instances": args.registration_instances,
            "whatif": args.whatif,
            "compare": args.compare,
            "service_env": args.service_env,
            "isolated_topic": not args.shared_topic,
            "steps": sorted(steps),
            "telemetry": "off (no tracer provider)"
            if args.no_telemetry
            else "steps 3-4: as services with OTEL_TRACES_EXPORTER=none (spans made, not"
            " exported); step 5: the services' defaults (spans exported to a jsonl file)",
            "profile": args.profile,
        },
        "steps": {},
    }
    out = results["steps"]
    if not args.no_telemetry:
        telemetry.configure(f"bench-{hex_id}", PlatformSettings(otel_traces_exporter="none"))
    in_process = ("relay", "inbox", "client")
    profiler = cProfile.Profile() if args.profile in in_process else None
    service_profiles: list[str] = []
    phases = []
    for spec in args.phases.split(","):
        rate, _, client_kind = spec.partition(":")
        phases.append((float(rate), client_kind or "httpx"))
    try:
        n = args.events
        if 1 in steps or 2 in steps:
            log.info("1: raw produce of %d records", n)
            out["raw_produce"], raw_topic = await step_raw_produce(res, n)
            if 2 in steps:
                log.info("2: raw consume")
                out["raw_consume"] = await step_raw_consume(raw_topic, n)
        if steps & {3, 4}:
            log.info("3: pre-writing %d outbox rows", n)
            db, out["outbox_prewrite"] = await prepare_pipeline(res, n)
            log.info("3: outbox relay")
            if profiler and args.profile == "relay":
                profiler.enable()
            out["outbox_relay"] = await step_relay(res, db, n, args.relay_batch)
            if profiler:
                profiler.disable()
            if 4 in steps:
                # Each engine in turn reads the same topic with its own group.
                for engine in args.engines.split(","):
                    suffix = "" if engine == "aiokafka" else f"_{engine}"
                    log.info("4: inbox consumer (%s), batch_size %d", engine, args.inbox_batch)
                    if profiler and args.profile == "inbox":
                        profiler.enable()
                    out[f"inbox{suffix}"] = await step_inbox(
                        res, db, n, args.inbox_batch, batched=False, engine=engine
                    )
                    if profiler:
                        profiler.disable()
                    if not args.no_batch_handlers:
                        log.info("4b: inbox consumer (%s) with batch handlers", engine)
                        out[f"inbox_batch_handlers{suffix}"] = await step_inbox(
                            res, db, n, args.inbox_batch, batched=True, engine=engine
                        )
        if 5 in steps:
            # The shipped configuration with every phase, then each what-if on
            # fresh services with its 150/s (or lowest-rate) phase only.
            shipped_env = dict(kv.split("=", 1) for kv in args.service_env)
            configs: list[tuple[str, dict[str, str], list[tuple[float, str]], Path]] = [
                ("main", shipped_env, phases, REPO)
            ]
            low = sorted(phases, key=lambda p: (p[0], p[1] != "raw"))[:1]
            if args.whatif_phases == "all":
                low = phases
            for name in filter(None, args.whatif.split(",")):
                configs.append((name, WHATIFS[name][1], low, REPO))
            for rev in filter(None, args.compare.split(",")):
                label, tree = await checkout(res, rev)
                # A revision named twice (main,HEAD,main: alternating pairs) gets a
                # label of its own each time: the label names its databases and topics.
                taken = sum(1 for c in configs if c[0] == label or c[0].startswith(f"{label}_"))
                configs.append((f"{label}_{taken + 1}" if taken else label, shipped_env, low, tree))
            out["end_to_end"] = []
            offset = 0
            for old_log in (OUT_DIR / "logs").glob("*.log"):  # the previous run's
                old_log.unlink()
            for label, extra_env, config_phases, tree in configs:
                log.info("5 [%s]: starting registration and matching %s", label, extra_env or "")
                platform_ = await start_platform(
                    res,
                    label,
                    not args.shared_topic,
                    args.profile if label == "main" else None,
                    extra_env,
                    args.registration_instances,
                    tree,
                )
                e2e: dict[str, Any] = {
                    "config": label,
                    "description": WHATIFS[label][0]
                    if label in WHATIFS
                    else ("as shipped" if tree == REPO else f"services from {tree.name}")
                    + (f" with {' '.join(args.service_env)}" if args.service_env else ""),
                    "service_env": extra_env,
                    "isolated_topic": not args.shared_topic,
                    "topic": platform_.topic,
                    "consumer_group": platform_.group,
                    "registration_instances": args.registration_instances,
                    "whatif": args.whatif,
                    "services_ready_seconds": round(platform_.ready_s, 2),
                    "first_event_to_matching_seconds": round(platform_.first_event_s, 3),
                    "phases": [],
                }
                out["end_to_end"].append(e2e)
                if profiler and args.profile == "client" and label == "main":
                    profiler.enable()
                for rate, client_kind in config_phases:
                    log.info(
                        "5 [%s]: %g commands/s for %gs (after %gs warm-up), %s client",
                        label,
                        rate,
                        args.duration,
                        args.warmup,
                        client_kind,
                    )
                    phase = await step_end_to_end(
                        res, platform_, rate, args.duration, args.warmup, offset, client_kind
                    )
                    offset += phase["commands"] + phase["warmup_commands"]
                    e2e["phases"].append(phase)
                if profiler:
                    profiler.disable()
                for proc in platform_.procs.values():  # a profiled service writes its stats
                    await stop_process(proc)
                for service, path in platform_.profiles.items():
                    if path.exists():
                        service_profiles.append(print_profile(path, f"{service} service"))
                        results.setdefault("profile_files", []).append(str(path.relative_to(REPO)))
    except asyncio.CancelledError:
        results["error"] = "interrupted"
        log.warning("interrupted", exc_info=True)
        raise
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        log.exception("benchmark step failed; cleaning up")
    finally:
        log.info("cleaning up")
        await asyncio.shield(res.close())
        results["cleanup_problems"] = res.problems
        results["cleanup_notes"] = res.notes
        results["created"] = {
            "topics": res.topics,
            "databases": res.databases,
            "consumer_groups": res.groups,
            "processes": [name for name, _ in res.processes],
        }
        if profiler is not None:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path = OUT_DIR / f"{args.profile}.prof"
            profiler.dump_stats(str(path))
            results["profile_files"] = [str(path.relative_to(REPO))]
            print(print_profile(path, f"bench process during {args.profile}"))
        for text in service_profiles:
            print(text)
    return results


async def checkout(res: Resources, rev: str) -> tuple[str, Path]:
    """A temporary worktree of this repository at `rev` (removed at cleanup), to run
    the services of another revision beside this one's."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix=f"bench-{sha[:8]}-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(tree), sha],
        capture_output=True,
        check=True,
    )

    async def remove() -> None:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(tree, ignore_errors=True)

    res.add_cleanup(f"worktree {tree}", remove)
    return f"at_{sha[:8]}", tree


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backbone", description=(backbone.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=None, help="N for steps 1-4 (default 20000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test (~15 s): N=2000, two 2-s phases at 150/s, no what-if",
    )
    parser.add_argument(
        "--engines",
        default="aiokafka,faststream",
        help="step 4: consumer engines to measure one after another (default"
        " aiokafka,faststream: shared.inbox, shared.faststream_inbox)",
    )
    parser.add_argument("--steps", default="1,2,3,4,5", help="which steps to run, e.g. 3,4")
    parser.add_argument(
        "--inbox-batch",
        type=int,
        default=2000,
        help="InboxConsumer batch_size in step 4 (its default is 500)",
    )
    parser.add_argument(
        "--relay-batch",
        type=int,
        default=1000,
        help="OutboxRelay batch_size in step 3 (its default is 1000)",
    )
    parser.add_argument(
        "--phases",
        default=None,
        help="step 5 load phases, RATE:CLIENT comma-separated, run one after the"
        " other on the same services; CLIENT is httpx (httpx.AsyncClient) or raw"
        " (a minimal keep-alive HTTP/1.1 client using ~10x less CPU)"
        " (default 500:httpx,150:httpx,500:raw,150:raw; --quick: 150:httpx,150:raw)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of commands per step-5 phase (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of warm-up commands in step 5, not measured (default 2)",
    )
    parser.add_argument(
        "--whatif",
        default=None,
        help="step 5: after the shipped configuration, run the lowest-rate phase"
        f" again on fresh services changed by each of: {', '.join(WHATIFS)}"
        " (comma-separated; default linger5; --quick: none; '' for none)",
    )
    parser.add_argument(
        "--whatif-phases",
        choices=("low", "all"),
        default="low",
        help="step 5: run each what-if at the lowest-rate phase only (default) or at"
        " every phase (before/after at each rate in one run)",
    )
    parser.add_argument(
        "--compare",
        default="",
        metavar="REV[,REV...]",
        help="step 5: after the shipped configuration (and the what-ifs), run the"
        " lowest-rate phase on services from each git revision REV (a temporary"
        " worktree, removed afterwards), e.g. main,HEAD~1: before/after in one run",
    )
    parser.add_argument(
        "--registration-instances",
        type=int,
        default=1,
        help="step 5: run K registration processes on one database, commands"
        " spread round-robin (what horizontal scaling buys on this machine)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="step 5: extra environment for both services, e.g."
        " OTEL_SDK_DISABLED=true (repeatable)",
    )
    parser.add_argument(
        "--shared-topic",
        action="store_true",
        help="step 5: run the services unchanged on the shared "
        "registration.events topic (pollutes it for other consumers)",
    )
    parser.add_argument(
        "--no-batch-handlers", action="store_true", help="skip step 4b (batch handlers)"
    )
    parser.add_argument(
        "--no-telemetry",
        action="store_true",
        help="steps 3-4 without a tracer provider (spans become no-ops)",
    )
    parser.add_argument(
        "--profile",
        choices=("relay", "inbox", "client", "registration", "matching"),
        help="cProfile step 3 (relay), 4 (inbox), step 5's load generator (client)"
        " or a service process; inflates the profiled part; stats to var/bench/",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=OUT_DIR / "backbone.json",
        help="where to write the results (default var/bench/backbone.json)",
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 2000 if args.quick else 20000
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.phases is None:
        args.phases = "150:httpx,150:raw" if args.quick else "500:httpx,150:httpx,500:raw,150:raw"
    if args.whatif is None:
        args.whatif = "" if args.quick else "linger5"
    unknown = [w for w in args.whatif.split(",") if w and w not in WHATIFS]
    if unknown:
        parser.error(f"unknown --whatif {unknown}; choose from {', '.join(WHATIFS)}")
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 2.0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request

    loop = asyncio.new_event_loop()
    task = loop.create_task(run(args))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    results: dict[str, Any] | None = None
    code = 0
    try:
        results = loop.run_until_complete(task)
    except (KeyboardInterrupt, asyncio.CancelledError):
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    if results is not None:
        print(render(results))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
        code = 1 if results.get("error") else 0
    return code


if __name__ == "__main__":
    sys.exit(main())
