"""`shared.kafka.client_options`: the settings of a managed Kafka reach every client."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from shared.kafka import client_options
from shared.settings import PlatformSettings
from shared.topics import platform_topics, replication_for


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> PlatformSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return PlatformSettings()


def test_plaintext_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    options = client_options(settings(monkeypatch, KAFKA_BOOTSTRAP_SERVERS="a:1,b:2"))
    assert options == {"bootstrap_servers": "a:1,b:2", "security_protocol": "PLAINTEXT"}


def test_sasl_scram_over_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    options = client_options(
        settings(
            monkeypatch,
            KAFKA_SECURITY_PROTOCOL="sasl_plaintext",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
            KAFKA_SASL_USERNAME="matchmaking",
            KAFKA_SASL_PASSWORD="s3cret",
        )
    )
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "matchmaking"
    assert options["sasl_plain_password"] == "s3cret"
    assert "ssl_context" not in options


def _self_signed(tmp_path: Path) -> Path:
    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test-ca", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def test_sasl_ssl_with_a_private_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cafile = _self_signed(tmp_path)
    options = client_options(
        settings(
            monkeypatch,
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_USERNAME="u",
            KAFKA_SASL_PASSWORD="p",
            KAFKA_SSL_CAFILE=str(cafile),
        )
    )
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"  # the default mechanism
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert any(c["subject"] == ((("commonName", "test-ca"),),) for c in context.get_ca_certs())


def test_ssl_without_sasl(monkeypatch: pytest.MonkeyPatch) -> None:
    options = client_options(settings(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL"))
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options


@pytest.mark.parametrize(
    "env",
    [
        {"KAFKA_SECURITY_PROTOCOL": "TLS"},
        {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": ""},
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_MECHANISM": "GSSAPI",
        },
    ],
)
def test_rejects_what_would_fail_later(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    with pytest.raises(ValueError):
        client_options(settings(monkeypatch, **env))


def test_every_client_is_built_with_the_options() -> None:
    # No aiokafka client in the services is built without `client_options`.
    root = Path(__file__).resolve().parents[2]
    for path in [*root.glob("shared/*.py"), *root.glob("services/**/*.py")]:
        text = path.read_text()
        for client in ("AIOKafkaProducer(", "AIOKafkaConsumer(", "AIOKafkaAdminClient("):
            if client in text:
                assert "options" in text, f"{path} builds {client} without client_options"


def test_partitions_in_one_place_and_replication() -> None:
    topics = platform_topics(6, "p.")
    assert topics["p.registration.events"] == 6
    assert topics["p.registration.events.dlq"] == 1
    assert len(topics) == 10
    assert replication_for(1) == (1, 1)
    assert replication_for(3) == (3, 2)
    assert replication_for(5) == (3, 2)
    assert replication_for(3, 2) == (2, 1)
    with pytest.raises(ValueError):
        replication_for(1, 3)


def test_faststream_gets_the_same_security() -> None:
    from faststream.security import BaseSecurity, SASLScram512

    from shared.kafka import faststream_security

    assert faststream_security({"security_protocol": "PLAINTEXT"}) is None
    scram = faststream_security(
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "svc",
            "sasl_plain_password": "secret",
        }
    )
    assert isinstance(scram, SASLScram512) and not scram.use_ssl
    assert isinstance(faststream_security({"security_protocol": "SSL"}), BaseSecurity)


def test_event_topics_keep_their_events() -> None:
    from shared.topics import topic_configs

    assert topic_configs("test.registration.events", 2)["retention.ms"] == "-1"
    assert "retention.ms" not in topic_configs("registration.events.dlq", 2)
    assert topic_configs("matching.events", 1)["min.insync.replicas"] == "1"
