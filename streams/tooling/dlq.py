"""Reading and replaying the dead-letter topic.

`list` is read-only. `replay --reason R` re-submits the original payloads of dead letters with
reason R to their source topics, e.g. after a code list or the worker was fixed. It remembers how
far it got in a consumer group per reason (committed only after the producer has flushed), so
running it twice replays each dead letter once. Dead letters whose payload was redacted
(identity numbers) or truncated are never replayed: their original cannot be restored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from processors.validation import Reason
from schemas.topics import DEAD_LETTER
from streams import kafka_clients
from streams.settings import Settings
from streams.tooling.producer import make_producer

NOT_REPLAYABLE = {Reason.IDENTITY_NUMBER_IN_PAYLOAD.value}


class ReplayFailed(RuntimeError):
    """Some re-submitted dead letters were refused by the broker."""


@dataclass
class DeadLetterSummary:
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    newest: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _consumer(
    settings: Settings, group_id: str | None
) -> tuple[KafkaConsumer, list[TopicPartition]]:
    topic = settings.topic(DEAD_LETTER)
    consumer = kafka_clients.consumer(
        settings,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="palliwatch-dlq",
    )
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]
    consumer.assign(partitions)
    return consumer, partitions


def _read_until_end(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> list[Any]:
    """Every record from each partition's current position up to its end offset now."""
    end = consumer.end_offsets(partitions)
    records: list[Any] = []
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    return [r for r in records if r.offset < end[TopicPartition(r.topic, r.partition)]]


def list_dead_letters(settings: Settings, samples: int = 3) -> DeadLetterSummary:
    consumer, partitions = _consumer(settings, group_id=None)
    try:
        consumer.seek_to_beginning(*partitions)
        records = _read_until_end(consumer, partitions)
    finally:
        consumer.close()
    summary = DeadLetterSummary()
    letters = sorted((orjson.loads(r.value) for r in records), key=lambda d: d["received_at"])
    for letter in letters:
        summary.total += 1
        summary.by_reason[letter["reason"]] += 1
        summary.newest.setdefault(letter["reason"], []).append(letter)
    summary.newest = {k: v[-samples:][::-1] for k, v in summary.newest.items()}
    return summary


@dataclass
class ReplayResult:
    replayed: int = 0
    skipped_not_replayable: int = 0
    other_reasons: int = 0


def replay(settings: Settings, reason: str, dry_run: bool = False) -> ReplayResult:
    if reason not in {r.value for r in Reason}:
        raise ValueError(f"unknown reason {reason!r}; one of: {', '.join(r.value for r in Reason)}")
    group = f"{settings.app_id}-dlq-replay-{reason}"
    consumer, partitions = _consumer(settings, group_id=group)
    result = ReplayResult()
    producer = None if dry_run else make_producer(settings)
    try:
        committed = {tp: consumer.committed(tp) for tp in partitions}
        for tp, offset in committed.items():
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        records = _read_until_end(consumer, partitions)
        sends: list[Any] = []
        for record in records:
            letter = orjson.loads(record.value)
            if letter["reason"] != reason:
                result.other_reasons += 1
                continue
            if (
                reason in NOT_REPLAYABLE
                or letter.get("payload_truncated")
                or letter.get("payload_redacted")
                or letter.get("payload") is None
            ):
                result.skipped_not_replayable += 1
                continue
            result.replayed += 1
            if producer is not None:
                key = letter.get("source_key")
                sends.append(
                    producer.send(
                        letter["source_topic"],
                        key=None if key is None else key.encode(),
                        value=letter["payload"].encode(),
                    )
                )
        if producer is not None:
            producer.flush()
            failed = [f.exception for f in sends if f.failed()]
            if failed:
                # Progress is not remembered: a second run sends them all again.
                raise ReplayFailed(
                    f"{len(failed)} of {len(sends)} dead letters could not be re-submitted "
                    f"({type(failed[0]).__name__}: {failed[0]}); nothing was marked replayed, "
                    "fix the cause and run `palliwatch dlq replay` again"
                )
            # Remember progress only after the re-submitted records are durable.
            consumer.commit({tp: _offset_meta(consumer.position(tp)) for tp in partitions})
    finally:
        consumer.close()
        if producer is not None:
            producer.close()
    return result


def _offset_meta(offset: int) -> OffsetAndMetadata:
    return OffsetAndMetadata(offset, "", -1)
