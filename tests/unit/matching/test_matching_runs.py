"""Matching's subscription to registration's events applies a burst of registrations of
every kind as one run: the kinds share one batch handler object (the inbox cuts a run
where the handler object changes), access projection included."""

from __future__ import annotations

from services.matching import bootstrap
from shared.contracts.registration import DECISIONS, REGISTERED_BY_TYPE


def test_registrations_of_every_kind_share_one_batch_handler() -> None:
    kinds = [t.ce_type() for t in REGISTERED_BY_TYPE.values()]
    assert len(kinds) > 1
    runs = bootstrap.registration_runs()
    assert len({id(runs[k]) for k in kinds}) == 1
    subscription = bootstrap.build_app().state.subscriptions[0]
    assert "registration.events" in subscription.topics
    assert len({id(subscription.batch_handlers[k]) for k in kinds}) == 1


def test_decisions_of_every_kind_share_one_batch_handler() -> None:
    """A rejection or withdrawal among a burst of approvals does not cut the run (its
    reaction runs inside it: `handlers.on_departures`)."""
    runs = bootstrap.registration_runs()
    assert len({id(runs[t.ce_type()]) for t in DECISIONS}) == 1
