"""Settings read from environment variables, with local defaults.

Every service reads the same plumbing settings (Kafka, telemetry, admin key)
plus its own database URL and port. `docker-compose.yml` sets exactly these
variables; a test checks that it does.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_DATABASE = "postgresql://postgres:postgres@localhost:5432/{name}"

# Service name -> local HTTP port. 8000 is kept for the read side / dashboard.
SERVICE_PORTS: dict[str, int] = {
    "registration": 8001,
    "matching": 8002,
    "scheduling": 8003,
    "notification": 8004,
}


class PlatformSettings(BaseSettings):
    """Settings shared by every service process."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    kafka_bootstrap_servers: str = "localhost:9092"
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
    # Consumer behaviour: attempts before a message goes to `<topic>.dlq`.
    consumer_max_attempts: int = 3
    # Appended to each consumer group's name, so that a second copy of the
    # platform (a test run beside a running demo) reads the topics on its own.
    consumer_group_suffix: str = ""


class RegistrationSettings(PlatformSettings):
    registration_database_url: str = LOCAL_DATABASE.format(name="registration")
    registration_port: int = SERVICE_PORTS["registration"]


class MatchingSettings(PlatformSettings):
    matching_database_url: str = LOCAL_DATABASE.format(name="matching")
    matching_port: int = SERVICE_PORTS["matching"]


class SchedulingSettings(PlatformSettings):
    scheduling_database_url: str = LOCAL_DATABASE.format(name="scheduling")
    scheduling_port: int = SERVICE_PORTS["scheduling"]


class NotificationSettings(PlatformSettings):
    notification_database_url: str = LOCAL_DATABASE.format(name="notification")
    notification_port: int = SERVICE_PORTS["notification"]


SETTINGS_BY_SERVICE: dict[str, type[PlatformSettings]] = {
    "registration": RegistrationSettings,
    "matching": MatchingSettings,
    "scheduling": SchedulingSettings,
    "notification": NotificationSettings,
}


def database_url(settings: PlatformSettings, service: str) -> str:
    value: str = getattr(settings, f"{service}_database_url")
    return value


def service_port(settings: PlatformSettings, service: str) -> int:
    value: int = getattr(settings, f"{service}_port")
    return value
