"""The event's phases, through the public APIs only; the same code drives the stub.

With a `Settle` (the real platform) a phase ends when the platform has done what
the phase asks (matching knows every approval, every meeting is placed or
unscheduled, every e-mail is out, ...); against the stub it ends when its last
command is answered. The baseline is the second: the client alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.event.api import Api, CommandFailed, each
from bench.event.workload import Workload, registration_body

BURST_PAUSE_S = 1.0  # between registration bursts, in both runs


class Settle(Protocol):
    """What the driver waits for on the real platform (bench.event.probe)."""

    async def approvals_known(self, event_id: str, count: int) -> None: ...
    async def meetings_settled(self, event_id: str, count: int, after: float) -> None: ...
    async def quiet(self) -> None: ...


@dataclass
class PhaseTime:
    name: str
    commands: int = 0
    failed: int = 0
    sending_s: float = 0.0  # first command sent .. last answered
    wall_s: float = 0.0  # phase start .. the platform done with it


@dataclass
class Run:
    event_id: str = ""
    organiser_key: str = ""
    registrations: list[str] = field(default_factory=list)  # by participant index ("" = failed)
    keys: list[str] = field(default_factory=list)
    requests: dict[tuple[int, int], str] = field(default_factory=dict)  # pair -> request id
    accepted_at: dict[str, float] = field(default_factory=dict)  # request id -> accept sent
    phases: list[PhaseTime] = field(default_factory=list)
    current: str = ""  # the phase under way
    report: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


async def phase(
    run: Run,
    name: str,
    send: Callable[[], Awaitable[list[BaseException]]],
    settle: Callable[[], Awaitable[None]] | None,
    commands: int,
    log: Callable[[str], None] = lambda _: None,
) -> None:
    timing = PhaseTime(name, commands)
    run.current = name
    started = time.perf_counter()
    failures = await send()
    timing.sending_s = time.perf_counter() - started
    if settle is not None:
        await settle()
    timing.wall_s = time.perf_counter() - started
    timing.failed = len(failures)
    run.failures += [str(f) for f in failures[:20]]
    run.phases.append(timing)
    run.current = ""
    log(
        f"phase {name}: {commands} commands ({timing.failed} failed) sent in"
        f" {timing.sending_s:.1f}s, done in {timing.wall_s:.1f}s"
    )


async def drive(
    api: Api,
    work: Workload,
    admin_key: str,
    settle: Settle | None,
    concurrency: int,
    log: Callable[[str], None] = print,
    run: Run | None = None,
    rate: float | None = None,
) -> Run:
    """Every phase in turn; `run` (if given) holds what was done so far should one fail.

    `rate` paces the participants' and the organiser's commands (register, approve,
    request, answer) at that many per second (`api.each`); None sends them as fast as
    `concurrency` connections are answered.
    """
    run = run or Run()
    n = len(work.participants)
    run.registrations, run.keys = [""] * n, [""] * n

    async def create() -> list[BaseException]:
        made = await api.call(
            "create", "organiser", "registration", "POST", "/api/organisers",
            {"name": f"Organiser of {work.event['name']}"}, admin_key,
        )  # fmt: skip
        run.organiser_key = made["api_key"]
        event = await api.call(
            "create", "event", "registration", "POST", "/api/events", work.event,
            run.organiser_key,
        )  # fmt: skip
        run.event_id = event["event_id"]
        return []

    await phase(run, "create", create, settle.quiet if settle else None, 2, log)
    log(f"event {run.event_id}: {n} participants, {len(work.accepted)} meetings to accept")

    async def register_one(i: int) -> None:
        made = await api.call(
            "register", "register", "registration", "POST",
            f"/api/events/{run.event_id}/registrations",
            registration_body(work.participants[i], i),
        )  # fmt: skip
        run.registrations[i], run.keys[i] = made["registration_id"], made["api_key"]

    async def register() -> list[BaseException]:
        failures: list[BaseException] = []
        for k, burst in enumerate(work.bursts):
            if k:
                await asyncio.sleep(BURST_PAUSE_S)
            failures += await each(burst, register_one, concurrency, rate)
        return failures

    await phase(run, "register", register, None, n, log)

    async def approve_one(i: int) -> None:
        if run.registrations[i]:
            await api.call(
                "approve", "approve", "registration", "POST",
                f"/api/registrations/{run.registrations[i]}/approve", None, run.organiser_key,
            )  # fmt: skip

    async def approvals_known() -> None:
        assert settle is not None
        await settle.approvals_known(run.event_id, sum(1 for r in run.registrations if r))

    await phase(
        run,
        "approve",
        lambda: each(range(n), approve_one, concurrency, rate),
        approvals_known if settle else None,
        n,
        log,
    )
    log(f"{sum(1 for r in run.registrations if r)} registered and approved")

    pairs = [*work.accepted, *work.declined]
    accept = set(work.accepted)

    async def request_one(pair: tuple[int, int]) -> None:
        a, b = pair
        if not (run.keys[a] and run.registrations[b]):
            raise CommandFailed(f"request {pair}: a side is not registered")
        asked = await api.call(
            "request", "request", "matching", "POST",
            f"/api/events/{run.event_id}/meeting-requests",
            {"recipient_id": run.registrations[b], "message": "Shall we meet?"}, run.keys[a],
        )  # fmt: skip
        run.requests[pair] = asked["request_id"]

    await phase(
        run, "request", lambda: each(pairs, request_one, concurrency, rate), None, len(pairs), log
    )

    async def answer_one(pair: tuple[int, int]) -> None:
        request_id = run.requests.get(pair)
        if request_id is None:
            return
        verb = "accept" if pair in accept else "decline"
        sent = time.time()
        await api.call(
            "answer", verb, "matching", "POST", f"/api/meeting-requests/{request_id}/{verb}",
            None, run.keys[pair[1]],
        )  # fmt: skip
        if verb == "accept":
            run.accepted_at[request_id] = sent

    await phase(
        run, "answer", lambda: each(pairs, answer_one, concurrency, rate), None, len(pairs), log
    )
    log(f"{len(run.accepted_at)} accepted, {len(run.requests) - len(run.accepted_at)} declined")

    answered_at = time.time()

    async def placed() -> None:
        assert settle is not None
        await settle.meetings_settled(run.event_id, len(run.accepted_at), answered_at)

    await phase(run, "schedule", _nothing, placed if settle else None, 0, log)
    await phase(run, "notify", _nothing, settle.quiet if settle else None, 0, log)
    log("every meeting placed or unscheduled, every e-mail out")

    async def reoptimise() -> list[BaseException]:
        await api.call(
            "reoptimise", "reoptimise", "scheduling", "POST",
            f"/api/events/{run.event_id}/reoptimise", {}, run.organiser_key,
        )  # fmt: skip
        return []

    await phase(run, "reoptimise", reoptimise, settle.quiet if settle else None, 1, log)

    async def publish() -> list[BaseException]:
        await api.call(
            "publish", "publish", "scheduling", "POST",
            f"/api/events/{run.event_id}/publish", None, run.organiser_key,
        )  # fmt: skip
        return []

    await phase(run, "publish", publish, settle.quiet if settle else None, 1, log)

    async def read_report() -> list[BaseException]:
        run.report = await api.call(
            "report", "report", "reporting", "GET", f"/api/events/{run.event_id}/report",
            None, run.organiser_key,
        )  # fmt: skip
        return []

    await phase(run, "report", read_report, None, 1, log)
    return run


async def _nothing() -> list[BaseException]:
    return []
