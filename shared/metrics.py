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
# Every HTTP request but /health, /ready and /metrics (`shared.http_telemetry`); the
# name and buckets are those OpenTelemetry's ASGI instrumentation exported before.
HTTP_SERVER_DURATION = Histogram(
    "http_server_duration_milliseconds",
    "Duration of HTTP requests, from the request's arrival to the end of its response",
    ["http_method", "http_status_code", "http_target"],
    buckets=(0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000),
)
# Requests of a direct route (`shared.direct_routes`): answered past FastAPI's request
# handling ("direct"), or passed to the app ("app": a key, an invalid body...).
DIRECT_ROUTE_REQUESTS = Counter(
    "direct_route_requests", "Requests of a direct route, by who answered", ["route", "by"]
)
