"""Validated records of a contract topic into their fact and reference tables. Official
deaths are stored by the aggregation, together with the indicators they feed, and surveys by
settle_surveys, which admits them."""

from __future__ import annotations

from typing import Any

from processors import flow
from processors.validation import DeadLetter, Reason
from schemas import topics
from streams.agents.effects import record_failed, send_dead_letter, sink, source
from streams.app import app, valid_topics
from streams.failures import guarded, inject


def _make_fact_store(spec: topics.TopicSpec) -> Any:
    model = spec.model
    assert model is not None
    stage = f"store-{spec.name}"

    @guarded(stage)
    async def store(stream: Any) -> None:
        async for events in stream.take_events(flow.SURVEY_BATCH, within=flow.BATCH_WITHIN_S):
            records: list[tuple[Any, Any]] = []
            for event in events:
                try:
                    inject("store", "record")
                    records.append((model.model_validate_json(event.value), event))
                except Exception as exc:
                    await record_failed(stage, exc, event)
            inject("store", "batch")
            rejected = await sink(stage).write_records([record for record, _ in records])
            for i, error in rejected:
                event = records[i][1]
                await send_dead_letter(
                    DeadLetter(Reason.DATABASE_REJECTED, f"PostgreSQL refused its rows: {error}"),
                    event.value or b"",
                    source(event),
                    event.key,
                )

    return store


for _spec in topics.CONTRACT_TOPICS:
    if _spec not in (topics.OFFICIAL_DEATHS, topics.DEATH_SURVEYS):
        app.agent(valid_topics[_spec.name], name=f"store-{_spec.name}")(_make_fact_store(_spec))
