"""Handlers that read the envelope only (`shared.inbox.envelope_only`): the rebuild skips
validating the payload of an event that only such handlers see."""

from __future__ import annotations

import asyncpg

from services.reporting import history, projection
from shared.contracts.base import EventPayload
from shared.contracts.notification import NotificationQueued, NotificationSent
from shared.envelope import Envelope
from shared.inbox import combine, envelope_only, reads_payload


async def _reads(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
    del conn, envelope, event


@envelope_only
async def _keeps(conn: asyncpg.Connection, envelope: Envelope, event: EventPayload) -> None:
    del conn, envelope, event


def test_combine_keeps_the_mark_only_when_every_handler_has_it() -> None:
    assert reads_payload(_reads) and not reads_payload(_keeps)
    both = combine({"a": _keeps, "b": _keeps}, {"a": _keeps, "b": _reads})
    assert not reads_payload(both["a"])
    assert reads_payload(both["b"])


def test_reporting_validates_what_its_projections_read() -> None:
    from services.reporting.rebuild import PLAN

    assert all(not reads_payload(h) for h in history.HANDLERS.values())
    # History's rows come from every consumed envelope, with its live handler's statement.
    assert PLAN.every_record is not None and PLAN.every_record.query == history.REMEMBER
    assert NotificationQueued.ce_type() not in PLAN.consumed  # history only
    assert reads_payload(PLAN.consumed[NotificationSent.ce_type()])  # the dashboard's outcomes
    assert all(reads_payload(PLAN.consumed[t]) for t in projection.HANDLERS)
