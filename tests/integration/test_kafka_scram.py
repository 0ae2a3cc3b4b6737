"""The clients' security settings (`shared.kafka.client_options`) against a real broker
with SASL/SCRAM-SHA-512: the local cluster started with KAFKA_SCRAM=1 (deploy/local/
kafka.sh, every node's port + 50). Skipped, saying why, when no such listener is set up.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from shared.kafka import client_options
from shared.settings import PlatformSettings

pytestmark = pytest.mark.integration


def scram_settings(password: str) -> PlatformSettings:
    if os.environ.get("KAFKA_SCRAM") != "1":
        pytest.skip("needs a local cluster started with KAFKA_SCRAM=1 (deploy/local/kafka.sh)")
    ports = re.findall(r"localhost:(\d+)", os.environ.get("KAFKA_BOOTSTRAP_SERVERS", ""))
    assert ports, "KAFKA_SCRAM=1 needs KAFKA_BOOTSTRAP_SERVERS of local brokers"
    return PlatformSettings(
        kafka_bootstrap_servers=",".join(f"localhost:{int(p) + 50}" for p in ports),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=os.environ.get("KAFKA_SCRAM_USER", "matchmaking"),
        kafka_sasl_password=password,
    )


async def test_produce_and_consume_with_scram() -> None:
    settings = scram_settings(os.environ.get("KAFKA_SCRAM_PASSWORD", "matchmaking-local-secret"))
    options = client_options(settings)
    topic = f"scram-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        producer = AIOKafkaProducer(**options, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"over SCRAM")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, **options, auto_offset_reset="earliest")
        await consumer.start()
        try:
            record = await consumer.getone()
            assert record.value == b"over SCRAM"
        finally:
            await consumer.stop()
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def test_a_wrong_password_is_refused() -> None:
    options = client_options(scram_settings("not-the-password"))
    producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()
