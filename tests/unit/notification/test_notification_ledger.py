"""Every event notification records changes its tables through one handler (`ledger.OWN`),
and the rebuild replays and compares what the service's tables hold."""

from __future__ import annotations

from services.notification import bootstrap, ledger, projection
from services.notification.rebuild import PLAN
from shared.contracts.notification import NOTIFICATION_EVENTS


def test_each_notification_event_has_one_projection_handler() -> None:
    assert set(ledger.OWN.types) == set(NOTIFICATION_EVENTS)


def test_the_rebuild_replays_the_consumed_projections_and_leaves_the_reactions_out() -> None:
    assert PLAN.topics == bootstrap.TOPICS and PLAN.consumer == bootstrap.NAME
    expected = set(projection.HANDLERS) | set(projection.MEETING_HANDLERS)
    assert expected <= set(PLAN.consumed)
    assert "webhook_endpoints" in PLAN.tables  # events since, with URL and secret sealed
    assert {"deliveries", "preferences", "meetings", "recipients"} <= set(PLAN.tables)
