"""Kafka client options shared by every producer, consumer and admin client.

A managed Kafka wants SASL and TLS; the local broker wants neither. The settings
(`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
`KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CAFILE`, `KAFKA_SSL_CERTFILE`, `KAFKA_SSL_KEYFILE`)
are read from the environment like every other (`shared.settings`) and turned
into aiokafka's keyword arguments here, in one place, so no client is built
without them.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

# How long a client waits for one broker's answer before it gives up on that broker,
# refreshes metadata and retries elsewhere. The clients' 40 s default made a paused
# (not dead) partition leader stall producers and fetches for the whole pause, although
# the controller fences it after 9 s (broker.session.timeout.ms) and moves its
# leaders; with 10 s the clients follow soon after (tests/chaos, docs/cluster.md).
REQUEST_TIMEOUT_MS = 10_000

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurity(Protocol):
    """What `client_options` reads: `PlatformSettings` has all of it."""

    kafka_bootstrap_servers: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str
    kafka_ssl_cafile: str
    kafka_ssl_certfile: str
    kafka_ssl_keyfile: str


def client_options(settings: KafkaSecurity) -> dict[str, Any]:
    """`bootstrap_servers` and the security keyword arguments of any aiokafka client."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL must be one of {PROTOCOLS}, not {protocol!r}")
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism.upper()
        if mechanism not in MECHANISMS:
            raise ValueError(f"KAFKA_SASL_MECHANISM must be one of {MECHANISMS}, not {mechanism!r}")
        if not settings.kafka_sasl_username:
            raise ValueError(f"KAFKA_SASL_USERNAME is required with {protocol}")
        options.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    if protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(settings)
    return options


def _ssl_context(settings: KafkaSecurity) -> ssl.SSLContext:
    # No CA file: the system's trust store (a managed Kafka with a public certificate).
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile or None,
        certfile=settings.kafka_ssl_certfile or None,
        keyfile=settings.kafka_ssl_keyfile or None,
    )
    return context


def faststream_security(options: Mapping[str, Any]) -> BaseSecurity | None:
    """The same security settings as `client_options`, in FastStream's terms."""
    protocol = options.get("security_protocol", "PLAINTEXT")
    context = options.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    user, password = options["sasl_plain_username"], options["sasl_plain_password"]
    use_ssl = protocol == "SASL_SSL"
    kinds: dict[str, type[SASLPlaintext] | type[SASLScram256] | type[SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    return kinds[options["sasl_mechanism"]](user, password, ssl_context=context, use_ssl=use_ssl)
