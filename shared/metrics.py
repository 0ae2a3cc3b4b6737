"""Prometheus metrics every service exposes at /metrics (names used by deploy/grafana)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter(
    "events_processed", "Consumed events applied", ["service", "topic", "event_type"]
)
EVENT_PROCESSING_SECONDS = Histogram(
    "event_processing_seconds",
    "Time from a consumed batch's fetch to its commit, per event",
    ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENT_PROCESSING_ERRORS = Counter(
    "event_processing_errors", "Handler failures (each attempt)", ["service", "topic"]
)
CONSUMER_LAG = Gauge(
    "consumer_lag", "Records behind the partition's end", ["service", "topic", "partition"]
)
DEAD_LETTERS = Counter("dead_letters", "Messages sent to a dead-letter topic", ["service", "topic"])
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISHED = Counter("outbox_published", "Outbox rows published to Kafka", ["service"])
