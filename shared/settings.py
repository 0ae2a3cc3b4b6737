"""Settings read from environment variables, with local defaults.

Every service reads the same plumbing settings (Kafka, telemetry, admin key)
plus its own database URL and port. `docker-compose.yml` sets exactly these
variables; a test checks that it does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_DATABASE = "postgresql://postgres:postgres@localhost:5432/{name}"

# The share of root requests and messages traced by default (OTEL_TRACES_SAMPLER_ARG).
DEFAULT_TRACE_RATIO = 0.05

# Service name -> local HTTP port. 8000 is the read side (reporting).
SERVICE_PORTS: dict[str, int] = {
    "registration": 8001,
    "matching": 8002,
    "scheduling": 8003,
    "notification": 8004,
    "reporting": 8000,
}


class PlatformSettings(BaseSettings):
    """Settings shared by every service process."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    kafka_bootstrap_servers: str = "localhost:9092"
    # Client security for a managed Kafka (`shared.kafka.client_options`); the local
    # broker is PLAINTEXT. A CA file trusts a private authority (empty: the system's).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    # Topic creation (`python -m shared.topics create`): partitions of every
    # `<service>.events` topic (the one place they are set), and the replication
    # factor (0: min(3, brokers in the cluster)).
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=0, ge=0)
    # This process among the service's replicas: part of its consumers' static member
    # ids (empty: host name and pid, unique per process). A stable one (a StatefulSet's
    # ordinal, services.sh's replica number) lets a restarted replica rejoin its
    # consumer groups without a rebalance.
    replica_id: str = ""
    platform_admin_key: str = Field(
        default="local-admin-key",
        description="API key of the platform administrator (set a secret one outside local mode).",
    )
    service_host: str = "127.0.0.1"
    # Telemetry: "jsonl" writes spans to a local file (no collector needed),
    # "otlp" sends them to OTEL_EXPORTER_OTLP_ENDPOINT, "none" drops them.
    otel_traces_exporter: str = "jsonl"
    otel_exporter_otlp_endpoint: str = "http://localhost:4318"
    telemetry_jsonl_path: str = "var/telemetry/spans.jsonl"
    # Size at which the span file is moved to `<name>.1` and a new one started.
    telemetry_jsonl_max_mb: int = Field(default=100, ge=1)
    # Which traces are recorded (`shared.telemetry.sampler`), by OpenTelemetry's standard
    # variables: by default a request or message that arrives without a sampled trace
    # context starts a recorded trace with probability OTEL_TRACES_SAMPLER_ARG, and
    # everything it causes, in every service, follows that decision; a caller that sends
    # a sampled `traceparent` is always traced. `parentbased_always_on` records everything.
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = "parentbased_traceidratio"
    otel_traces_sampler_arg: float = Field(default=DEFAULT_TRACE_RATIO, ge=0, le=1)
    # A span per SQL statement (asyncpg's instrumentation) inside the recorded traces:
    # off by default, it cost more than the statements' own client work.
    otel_instrument_sql: bool = False
    # Published outbox rows are deleted by the relay after this many hours (0: kept for
    # good); the events stay in the event store (`shared.outbox`, "purge").
    outbox_retention_hours: float = Field(default=24.0, ge=0)
    # Consumer behaviour: attempts before a message goes to `<topic>.dlq`.
    consumer_max_attempts: int = 3
    # Appended to each consumer group's name, so that a second copy of the
    # platform reads the same topics on its own (the tests run several side by side).
    consumer_group_suffix: str = ""
    # Which consumer runs the subscriptions: "faststream" (`shared.faststream_inbox`)
    # or "aiokafka" (`shared.inbox`); same contract, see README's design notes.
    # aiokafka by default: see README's design notes (a FastStream consumer hung at a cold
    # broker's first start in a CI run); CONSUMER_ENGINE=faststream selects the port.
    consumer_engine: Literal["faststream", "aiokafka"] = "aiokafka"
    topic_prefix: str = Field(
        default="",
        description="Prepended to every topic name; lets a test suite or a second platform"
        " share a broker without seeing each other's events (see shared.topics).",
    )


class RegistrationSettings(PlatformSettings):
    registration_database_url: str = LOCAL_DATABASE.format(name="registration")
    registration_port: int = SERVICE_PORTS["registration"]
    registration_link_secret: str = Field(
        default="local-sign-in-link-secret",
        description="Signs the sign-in links sent by e-mail and keys the rate limit's address"
        " digests (set a secret one in production).",
    )


class MatchingSettings(PlatformSettings):
    matching_database_url: str = LOCAL_DATABASE.format(name="matching")
    matching_port: int = SERVICE_PORTS["matching"]
    # How often unanswered meeting requests are checked for expiry.
    matching_expiry_sweep_seconds: float = Field(default=60.0, gt=0)
    # Sentence vectors: "worker" (the consumer queues, a background task embeds in
    # batches) or "inline" (embedded in the consumer's transaction, the behaviour
    # before the worker; kept to measure against, `bench.backbone --whatif`).
    matching_embedding: Literal["worker", "inline"] = "worker"
    # Participants embedded per model call, and the worker's polling fallback.
    matching_embedding_batch: int = Field(default=64, ge=1, le=1024)
    matching_embedding_poll_seconds: float = Field(default=1.0, gt=0)


class SchedulingSettings(PlatformSettings):
    scheduling_database_url: str = LOCAL_DATABASE.format(name="scheduling")
    scheduling_port: int = SERVICE_PORTS["scheduling"]


class NotificationSettings(PlatformSettings):
    notification_database_url: str = LOCAL_DATABASE.format(name="notification")
    notification_port: int = SERVICE_PORTS["notification"]
    # Contact details are fetched at send time from registration's API (admin key).
    registration_url: str = "http://127.0.0.1:8001"
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_sender: str = "Matchmaking <noreply@matchmaking.local>"
    smtp_timeout_seconds: float = 30.0
    # Where links in messages point (unsubscribe, calendar feed): this service's public URL.
    public_base_url: str = "http://127.0.0.1:8004"
    # The web portal's public URL: sign-in links sent by e-mail open its pages.
    portal_public_url: str = "http://127.0.0.1:8005"
    notification_link_secret: str = Field(
        default="local-link-secret",
        description="Signs unsubscribe and calendar-feed links (set a secret one in production).",
    )
    reminder_lead_minutes: float = 60.0
    # Messages about domain events older than this when consumed (a new consumer
    # group reading the topics' history) are not sent; reminders still are.
    notification_stale_after_hours: float = Field(default=72.0, gt=0)
    digest_hour: int = Field(default=8, ge=0, le=23)  # local hour of the daily digest
    digest_minute: int = Field(default=0, ge=0, le=59)  # and its minute
    # The delivery queue: attempts before a delivery fails for good, and the first
    # retry's delay (doubling after each failed attempt, capped at an hour).
    delivery_max_attempts: int = Field(default=8, ge=1)
    delivery_backoff_seconds: float = Field(default=30.0, gt=0)
    delivery_workers: int = Field(default=4, ge=1)
    # Due deliveries a worker claims and sends in one transaction (a digest row alone).
    delivery_batch_size: int = Field(default=16, ge=1)
    delivery_poll_seconds: float = Field(default=1.0, gt=0)
    # The sender's process's niceness (`sender_process`): on a busy machine the OS gives
    # the consumer and the API their CPU first, the sender what is left.
    sender_nice: int = Field(default=10, ge=0, le=19)
    webhook_timeout_seconds: float = 10.0


class ReportingSettings(PlatformSettings):
    reporting_database_url: str = LOCAL_DATABASE.format(name="reporting")
    reporting_port: int = SERVICE_PORTS["reporting"]
    # Reporting's public URL, for the rating links in feedback invitations; empty:
    # the URL the organiser's request came in on.
    reporting_public_url: str = ""
    reporting_link_secret: str = Field(
        default="local-dashboard-link-secret",
        description="Signs the organiser's dashboard links (set a secret one in production).",
    )
    # The web portal's public URL: when set, feedback invitations link to its rating page
    # (one click, after signing in) instead of the API address.
    portal_public_url: str = ""


class PortalSettings(BaseSettings):
    """The web portal (services/portal): no database, no broker; it calls the services'
    public HTTP APIs. Not in SERVICE_PORTS: it is a front end, not a backbone service."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    service_host: str = "127.0.0.1"
    portal_port: int = 8005
    registration_url: str = "http://127.0.0.1:8001"
    matching_url: str = "http://127.0.0.1:8002"
    scheduling_url: str = "http://127.0.0.1:8003"
    notification_url: str = "http://127.0.0.1:8004"
    reporting_url: str = "http://127.0.0.1:8000"
    # Where browsers reach reporting (dashboard and report links); empty: reporting_url.
    reporting_public_url: str = ""
    portal_session_secret: str = Field(
        default="local-portal-session-secret",
        description="Encrypts and signs the portal's session cookie, which holds the API key"
        " (set a secret one in production).",
    )
    portal_secure_cookies: bool = False  # set behind HTTPS


SETTINGS_BY_SERVICE: dict[str, type[PlatformSettings]] = {
    "registration": RegistrationSettings,
    "matching": MatchingSettings,
    "scheduling": SchedulingSettings,
    "notification": NotificationSettings,
    "reporting": ReportingSettings,
}


def database_url(settings: PlatformSettings, service: str) -> str:
    value: str = getattr(settings, f"{service}_database_url")
    return value


def service_port(settings: PlatformSettings, service: str) -> int:
    value: int = getattr(settings, f"{service}_port")
    return value
