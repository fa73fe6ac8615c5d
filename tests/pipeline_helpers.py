"""Helpers for integration tests that read what the real pipeline wrote to Kafka."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from kafka import TopicPartition
from prometheus_client.samples import Sample

from schemas.topics import DEAD_LETTER
from streams import kafka_clients
from streams.settings import Settings
from streams.tooling.scrape import scrape


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record currently in ``topic`` (all partitions, from the beginning to the end now)."""
    consumer = kafka_clients.consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(r for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)])
        return out
    finally:
        consumer.close()


def topic_size(settings: Settings, topic: str) -> int:
    consumer = kafka_clients.consumer(settings, group_id=None)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        begin = consumer.beginning_offsets(parts)
        end = consumer.end_offsets(parts)
        return sum(end[tp] - begin[tp] for tp in parts)
    finally:
        consumer.close()


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in read_topic(settings, settings.topic(DEAD_LETTER))]


def metric_samples(settings: Settings) -> tuple[Sample, ...] | None:
    """Every sample the worker's /metrics serves; None while the worker does not answer."""
    scraped = scrape(settings.web_port)
    return None if scraped is None else scraped.samples


def metric(settings: Settings, name: str) -> float:
    """Sum of a Prometheus counter (all label sets) from the worker's /metrics."""
    scraped = scrape(settings.web_port)
    return -1.0 if scraped is None else scraped.total(name)


def person(tag: str) -> str:
    return hashlib.sha256(f"person-{tag}".encode()).hexdigest()


def survey(
    sid: str,
    person_ref: str,
    revision: int = 1,
    status: str = "active",
    month: str = "2025-03",
    **overrides: Any,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema_version": 1,
        "survey_id": sid,
        "revision": revision,
        "status": status,
        "submitted_at": f"{month}-25T10:00:00Z",
        "unit_id": "unit-09-001",
        "region_code": "09",
        "municipality_code": "0980",
        "person_ref": person_ref,
        "date_of_death": f"{month}-05",
        "sex": "male",
        "age_years": 77,
        "ses_quintile": None,
        "diagnosis_group": "copd",
        "expected_death": False,
        "place_of_death": "hospital",
        "care_setting": "hospital_ward",
        "palliative_consult": False,
        "measures": {},
    }
    record.update(overrides)
    return record
