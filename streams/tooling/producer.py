"""Producing JSON records to the catalogue's topics with kafka-python."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from kafka import KafkaProducer

from schemas.topics import TopicSpec
from streams import kafka_clients
from streams.kafka_clients import KafkaUnavailable
from streams.settings import Settings


def make_producer(settings: Settings) -> KafkaProducer:
    """The CLI's and the simulator's producer (idempotent, acks=all: streams/kafka_clients.py)."""
    return kafka_clients.producer(settings)


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
    failures: list[BaseException] = []
    for record in records:
        send = producer.send(name, key=record_key(topic, record), value=orjson.dumps(record))
        send.add_errback(failures.append)
        n += 1
        if on_sent is not None:
            on_sent(record)
    producer.flush()
    raise_failed(failures, settings, name)
    return n


def raise_failed(failures: list[BaseException], settings: Settings, topic: str) -> None:
    """A send the broker refused (after the producer's retries) is never silently dropped."""
    if failures:
        raise KafkaUnavailable(
            f"{len(failures)} records not written: "
            + kafka_clients.explain(failures[0], settings, topic)
        )
