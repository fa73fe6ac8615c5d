"""The screen: stateless validation of each contract topic. A record becomes a dead letter, or
travels on as what was checked (never the raw bytes): surveys re-keyed by person to the settle
stage, every other record to its `.valid` topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from processors import flow, metrics
from processors.validation import DeadLetter, canonical, parse
from schemas import topics
from schemas.models import DeathSurvey
from streams.agents.effects import in_hand, send_dead_letter, source
from streams.app import app, by_person_topic, contract_topics, settings, valid_topics
from streams.failures import guarded, inject, internal_error
from streams.faust_compat import key_partition


def _make_screen(spec: topics.TopicSpec) -> Any:
    model = spec.model
    assert model is not None
    is_survey = spec is topics.DEATH_SURVEYS
    label = spec.name
    forward = valid_topics[spec.name]
    person_partitions = topics.SURVEYS_BY_PERSON.partitions or settings.partitions
    stage = f"screen-{spec.name}"

    @guarded(stage)
    async def screen(stream: Any) -> None:
        async for events in stream.take_events(flow.SURVEY_BATCH, within=flow.BATCH_WITHIN_S):
            if is_survey:
                in_hand["screen"] = len(events)
            now = datetime.now(UTC)
            by_partition: dict[int, list[tuple[flow.Source, str]]] = {}
            metrics.RECORDS_CONSUMED.labels(label).inc(len(events))
            for event in events:
                try:
                    inject("screen", "record")
                    record = parse(
                        event.value,
                        model,
                        now,
                        key=event.key,
                        expected_key=spec.key_for,
                        clock_skew=settings.clock_skew,
                    )
                    text = record if isinstance(record, DeadLetter) else canonical(record)
                except Exception as exc:  # one record's fault: it becomes a dead letter
                    text = internal_error(stage, exc)
                if isinstance(text, DeadLetter):
                    await send_dead_letter(text, event.value or b"", source(event), event.key)
                elif is_survey:
                    # One survey per person is checked where all of a person's surveys meet:
                    # re-keyed by person_ref, many to a message (one per partition and batch).
                    assert isinstance(record, DeathSurvey)
                    partition = key_partition(record.person_ref.encode(), person_partitions)
                    by_partition.setdefault(partition, []).append((source(event), text.decode()))
                else:
                    metrics.VALID.labels(label).inc()
                    # send_soon: the producer buffer, as Faust's changelogs do. Faust flushes
                    # it before it commits offsets, so at-least-once holds.
                    forward.send_soon(key=event.key, value=text)
            inject("screen", "batch")  # mid-batch: dead letters sent, surveys not yet
            for partition, message in flow.by_partition_messages(by_partition):
                by_person_topic.send_soon(key=None, value=message, partition=partition)
            if is_survey:
                in_hand["screen"] = 0

    screen.__name__ = screen.__qualname__ = f"screen_{spec.name.split('.')[1].replace('-', '_')}"
    return screen


for _spec in topics.CONTRACT_TOPICS:
    app.agent(contract_topics[_spec.name], name=f"screen-{_spec.name}")(_make_screen(_spec))
