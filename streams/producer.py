"""Producing JSON records to the catalogue's topics with kafka-python."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from streams.kafka_admin import KafkaUnavailable, require_reachable, unreachable_message
from streams.settings import Settings
from streams.topics import TopicSpec


def make_producer(settings: Settings) -> KafkaProducer:
    require_reachable(settings)
    try:
        return KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            client_id="palliwatch-producer",
            acks="all",
            linger_ms=10,
            batch_size=256 * 1024,
            max_request_size=2 * 1024 * 1024,
            retries=10,
        )
    except (KafkaError, OSError) as e:
        raise KafkaUnavailable(unreachable_message(settings)) from e


def record_key(topic: TopicSpec, record: dict[str, Any]) -> bytes:
    """The catalogue's key for a contract record."""
    return topic.key_for(record)


def send_records(
    producer: KafkaProducer,
    settings: Settings,
    topic: TopicSpec,
    records: Iterable[dict[str, Any]],
    on_sent: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Send records with their catalogue keys; flush; return how many were sent."""
    n = 0
    name = settings.topic(topic)
    for record in records:
        producer.send(name, key=record_key(topic, record), value=orjson.dumps(record))
        n += 1
        if on_sent is not None:
            on_sent(record)
    producer.flush()
    return n
