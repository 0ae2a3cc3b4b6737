"""Schemathesis against the five live services (issue 10): no 5xx, no response that
breaks its own schema.

The services run as subprocesses on fresh databases with the data the HANNOVER replay
creates and that of two more events (`access_world`), and Schemathesis (its Python
API) generates requests for every operation of each service's live OpenAPI document,
sent with the platform admin's key: once with event A's real ids in the path (so the
handlers behind the guard are reached) and valid, then invalid, query and body; once
with everything generated.
Bounded (few examples per operation, no deadline) so the whole takes a few minutes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import response_schema_conformance

from scripts.replay_hannover import Urls, replay
from tests.integration.access_world import PLUMBING, World, build_world, five_services, ok
from tests.integration.support import Infra

# The platform may wait for the scheduler lock (up to 240 s) before it starts.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

ADMIN_KEY = "schemathesis-admin-key"
EXAMPLES_WITH_IDS = 12  # per operation and generation mode
EXAMPLES_GENERATED = 3
EXAMPLES_WITH_NUL = 4
CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass(frozen=True)
class Live:
    urls: dict[str, str]
    world: World
    documents: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
async def live(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, scheduler_lock: None
) -> AsyncIterator[Live]:
    log_dir = tmp_path_factory.mktemp("schemathesis")
    async with (
        five_services(infra, log_dir, label="schemathesis", admin_key=ADMIN_KEY) as p,
        httpx.AsyncClient(timeout=30) as http,
    ):
        # The HANNOVER replay's data (an event with its registrations, meetings, agenda,
        # feedback, offices), then the two events of the isolation test with their ids.
        urls = p.urls
        await replay(
            Urls(urls["registration"], urls["matching"], urls["scheduling"], urls["reporting"]),
            ADMIN_KEY,
            log=lambda _: None,
        )
        world = await build_world(http, p.urls, ADMIN_KEY)
        documents = {svc: ok(await http.get(f"{url}/openapi.json")) for svc, url in p.urls.items()}
        yield Live(p.urls, world, documents)


def real_ids(world: World) -> dict[str, str]:
    return {
        "event_id": world.event_a,
        "registration_id": world.south.registration_id,
        "request_id": world.request_id,
        "meeting_id": world.request_id,
        "endpoint_id": world.endpoint_id,
        "item_id": world.item_id,
        "co_organiser_id": world.co_organiser_north_id,
        "token": uuid.uuid4().hex,
    }


def streams(definition: Mapping[str, Any]) -> bool:
    """Whether the operation answers an endless stream (Server-Sent Events).

    Such a response never ends, so a generated request could not be checked; these
    operations are left out here (their refusals are in test_tenant_isolation).
    """
    return any(
        "text/event-stream" in (response.get("content") or {})
        for response in definition.get("responses", {}).values()
    )


def _nul_in_text(value: Any) -> Any:
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, list):
        return [_nul_in_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _nul_in_text(v) for k, v in value.items()}
    return value


def with_nul(case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    """The case with a NUL character at the end of every string of its body.

    PostgreSQL cannot store NUL; a service must refuse it (422), never pass it on (500).
    Generated strings hold one too rarely for a small budget to find such a bug.
    """
    if isinstance(case.body, dict | list | str):
        case.body = _nul_in_text(case.body)
    return case


def fuzz(live: Live) -> tuple[int, list[str]]:
    """Run every operation of every service; (cases sent, failures found)."""
    headers = {"X-API-Key": ADMIN_KEY}
    ids = real_ids(live.world)
    failures: list[str] = []
    sent = 0
    for service, document in live.documents.items():
        base_url = live.urls[service]
        schema = schemathesis.openapi.from_dict(document)
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                failures.append(f"{service}: an operation's schema is invalid: {result.err()}")
                continue
            operation = result.ok()
            if operation.path in PLUMBING or streams(operation.definition.raw):
                continue
            names = {p.name for p in operation.path_parameters}
            real = {n: ids[n] for n in names if n in ids}
            plans: list[tuple[str, Any, int]] = [
                (
                    "valid, real ids",
                    operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
                    EXAMPLES_WITH_IDS,
                ),
                (
                    "invalid, real ids",
                    operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=real),
                    EXAMPLES_WITH_IDS,
                ),
                ("valid, all generated", operation.as_strategy(), EXAMPLES_GENERATED),
            ]
            if operation.body:
                plans.append(
                    (
                        "valid but for a NUL in every text",
                        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real).map(
                            with_nul
                        ),
                        EXAMPLES_WITH_NUL,
                    )
                )
            for plan, strategy, examples in plans:
                count = [0]

                def run(
                    strategy: Any = strategy,
                    examples: int = examples,
                    base_url: str = base_url,
                    count: list[int] = count,
                ) -> None:
                    @settings(
                        max_examples=examples,
                        deadline=None,
                        database=None,
                        derandomize=True,
                        suppress_health_check=list(HealthCheck),
                        phases=[Phase.explicit, Phase.generate],
                    )
                    @given(case=strategy)
                    def one(case: schemathesis.Case[Any]) -> None:
                        count[0] += 1
                        case.call_and_validate(
                            base_url=base_url, headers=headers, checks=CHECKS, timeout=30
                        )

                    one()

                try:
                    run()
                except Unsatisfiable:
                    # Invalid inputs asked of an operation with nothing to make invalid
                    # (no parameters, no body): nothing was sent.
                    if plan.startswith("valid"):
                        raise
                except Exception as failed:
                    failures.append(f"{service} {operation.label} ({plan}):\n{failed}")
                sent += count[0]
    return sent, failures


async def test_no_server_errors_and_responses_match_their_schemas(live: Live) -> None:
    started = time.monotonic()
    sent, failures = await asyncio.to_thread(fuzz, live)
    print(f"schemathesis: {sent} requests in {time.monotonic() - started:.0f}s")
    assert sent >= 300, f"only {sent} requests were generated"
    assert not failures, "\n\n".join(failures)
