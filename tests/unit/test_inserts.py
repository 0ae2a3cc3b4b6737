"""`shared.inbox.Insert`: a projection that is one insert per event, from the envelope.
Its live handler runs its statement (an older version read as its upcast payload); a
rebuild plan folds its types from the envelope only when it is their one handler."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from services.reporting import dashboard_projection
from services.reporting.rebuild import PLAN
from shared.contracts import registry
from shared.contracts.matching import MeetingRequested, MeetingRequestedV1
from shared.contracts.notification import NotificationFailed, NotificationSent
from shared.envelope import Envelope
from shared.inserts import Insert
from shared.rebuild import Plan


class _Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, query: str, *args: Any) -> str:
        self.calls.append((query, args))
        return "INSERT 0 1"


def _run(insert: Insert, envelope: Envelope) -> list[tuple[str, tuple[Any, ...]]]:
    conn = _Recording()
    payload = registry().parse(envelope.type, envelope.data)

    async def handle() -> None:
        await insert.handler(cast(asyncpg.Connection, conn), envelope, payload)

    asyncio.run(handle())
    return conn.calls


def _delivery(kind: type[NotificationSent | NotificationFailed], **more: Any) -> Envelope:
    common = {
        "delivery_id": "d-1",
        "event_id": "e-1",
        "recipient_id": "r-1",
        "channel": "email",
        "kind": "meeting.placed",
        "cause_id": "/services/matching#1",
        "attempts": 1,
    }
    return Envelope.wrap(kind.model_validate({**common, **more}), key="e-1")


def test_the_live_handler_runs_the_statement_with_the_envelopes_arguments() -> None:
    sent = _run(dashboard_projection.OUTCOMES, _delivery(NotificationSent, message_id="m"))
    failed = _run(dashboard_projection.OUTCOMES, _delivery(NotificationFailed, reason="bounced"))
    assert [args for _, args in sent] == [("d-1", "e-1", "email", "meeting.placed", "sent")]
    assert [args for _, args in failed] == [("d-1", "e-1", "email", "meeting.placed", "failed")]
    assert {query for query, _ in sent + failed} == {dashboard_projection.OUTCOMES.query}


def test_an_older_version_is_read_as_its_upcast_payload() -> None:
    """`args` reads the current version's fields: an old event reaches it upcast."""
    seen: list[Envelope] = []

    def message(envelope: Envelope) -> tuple[Any, ...]:
        seen.append(envelope)
        return (envelope.data["message"],)

    insert = Insert("t", "INSERT INTO t VALUES ($1)", message)
    old = MeetingRequestedV1.model_validate(
        {
            "request_id": "q-1",
            "event_id": "e-1",
            "requester_id": "a",
            "recipient_id": "b",
            "meeting_type": "Business2Business",
            "message": "hello",
            "expires_at": "2026-01-01T00:00:00+00:00",
        }
    )
    calls = _run(insert, Envelope.wrap(old, key="e-1"))
    assert calls == [("INSERT INTO t VALUES ($1)", ({"text": "hello", "language": None},))]
    assert seen[0].type == MeetingRequested.ce_type()


def test_reporting_folds_its_notification_outcomes_from_the_envelopes() -> None:
    assert set(PLAN.inserts) == {NotificationSent.ce_type(), NotificationFailed.ce_type()}
    for ce_type, insert in PLAN.inserts.items():
        assert PLAN.consumed[ce_type] is insert.handler


def test_a_plan_refuses_an_insert_beside_other_handlers() -> None:
    """Folded from the envelope, a type would skip the other handlers: not allowed."""

    async def other(*_: Any) -> None:
        return None

    insert = Insert("t", "INSERT INTO t VALUES ($1)", lambda e: (e.id,))
    ce_type = f"test.{uuid.uuid4().hex}"
    with pytest.raises(ValueError, match="handlers beside its insert"):
        Plan("x", Path("."), ("t",), None, consumed={ce_type: other}, inserts={ce_type: insert})
    Plan(
        "x", Path("."), ("t",), None, consumed={ce_type: insert.handler}, inserts={ce_type: insert}
    )
