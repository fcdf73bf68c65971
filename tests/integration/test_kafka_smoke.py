"""A real round trip through the Kafka broker with kafka-python."""

from __future__ import annotations

import uuid

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic


def test_a_message_goes_through_the_broker(kafka_servers: str) -> None:
    topic = "smoke-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=kafka_servers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_servers)
    try:
        producer.send(topic, key=b"s1", value=b"hello").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_servers,
        group_id="smoke-" + uuid.uuid4().hex[:8],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30_000,
    )
    try:
        received = next(iter(consumer))
    finally:
        consumer.close()
    assert (received.key, received.value) == (b"s1", b"hello")
