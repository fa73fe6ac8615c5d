"""The Faust app: topics, tables and agents. Agents only move records and call the core.

Partitioning (see README, "Architecture"):
- ``survey-state`` table keyed by survey_id, fed by registry.death-surveys.v1 (key survey_id);
- ``region-months`` table keyed by region_code, fed by palliwatch.region-deltas.v1 (key region).
Both tables use the producer's partitioner on the table key, which is the source topic's key, so a
key's changelog partition equals its source partition and a worker restores exactly the state of
the partitions it is assigned. That is what lets the agents batch with ``take_events``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors import metrics
from processors.core import (
    Contribution,
    Counts,
    IndicatorValue,
    MonthTotals,
    affected_window_ends,
    month_first_day,
    revision_deltas,
    rolling_region_indicators,
    survey_contribution,
    window_months,
)
from processors.sink import IndicatorSink, OfficialRow
from processors.validation import DeadLetter, parse
from schemas.models import DeathSurvey, OfficialDeaths
from streams import topics
from streams.settings import load

log = logging.getLogger("palliwatch.worker")
settings = load()

SURVEY_BATCH = 2000
REGION_BATCH = 5000
BATCH_WITHIN_S = 0.25

app = faust.App(
    settings.app_id,
    broker=settings.faust_broker,
    store="memory://",
    datadir=str(settings.state_dir / "faust"),
    topic_partitions=settings.partitions,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    web_bind=settings.web_bind,
    web_host="127.0.0.1",
    web_port=settings.web_port,
    web_in_thread=False,
    autodiscover=False,
    producer_acks=-1,
)


def _topic(spec: topics.TopicSpec) -> faust.TopicT:
    # Contract topics are created from the catalogue, never declared by Faust.
    return app.topic(
        settings.topic(spec),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions or settings.partitions,
        internal=False,
    )


surveys_topic = _topic(topics.DEATH_SURVEYS)
official_topic = _topic(topics.OFFICIAL_DEATHS)
region_topic = _topic(topics.REGION_DELTAS)
dead_letter_topic = _topic(topics.DEAD_LETTER)

survey_state = app.Table(
    "survey-state",
    default=None,
    # bytes keys use the raw codec: the changelog key is the source topic's key, byte for byte,
    # so the producer's partitioner puts it in the partition its source records live in.
    key_type=bytes,
    partitions=settings.partitions,
    use_partitioner=True,
)
region_months = app.Table(
    "region-months",
    default=None,
    # bytes keys use the raw codec: the changelog key is the source topic's key, byte for byte,
    # so the producer's partitioner puts it in the partition its source records live in.
    key_type=bytes,
    partitions=settings.partitions,
    use_partitioner=True,
)


async def send_dead_letter(event: faust.EventT, dead: DeadLetter) -> None:
    msg = event.message
    metrics.DEAD_LETTERS.labels(msg.topic, dead.reason).inc()
    envelope = dead.envelope(event.value or b"", msg.topic, msg.partition, msg.offset)
    await dead_letter_topic.send(
        key=f"{msg.topic}:{msg.partition}:{msg.offset}".encode(), value=orjson.dumps(envelope)
    )
    log.warning(
        "dead letter %s from %s[%d]@%d: %s",
        dead.reason,
        msg.topic,
        msg.partition,
        msg.offset,
        envelope["detail"],
    )


def _delta_message(kind: str, month: str, **fields: Any) -> bytes:
    return orjson.dumps({"kind": kind, "month": month, **fields})


@app.agent(surveys_topic)
async def apply_surveys(stream: Any) -> None:
    """Validate surveys, keep each survey's applied revision, emit signed bucket deltas."""
    async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
        pending: dict[tuple[str, str], Counts] = {}
        for event in events:
            metrics.RECORDS_CONSUMED.labels(topics.DEATH_SURVEYS.name).inc()
            survey = parse(event.value, DeathSurvey)
            if isinstance(survey, DeadLetter):
                await send_dead_letter(event, survey)
                continue
            key = survey.survey_id.encode()
            if event.key != key:
                await send_dead_letter(
                    event,
                    DeadLetter(
                        "contract_violation", "record key does not equal the payload's survey_id"
                    ),
                )
                continue
            metrics.VALID.labels(topics.DEATH_SURVEYS.name).inc()
            previous = survey_state.get(key)
            if previous is not None and survey.revision <= previous["revision"]:
                metrics.STALE_REVISIONS.inc()
                continue
            old = Contribution.from_dict(previous["c"]) if previous and previous["c"] else None
            new = survey_contribution(survey)
            survey_state[key] = {"revision": survey.revision, "c": new.as_dict() if new else None}
            for delta in revision_deltas(old, new):
                bucket = (delta.region_code, delta.month)
                pending[bucket] = pending.get(bucket, Counts()) + delta.counts
            if new is not None:
                metrics.LAST_EVENT_TIME.labels(survey.region_code).set(
                    survey.submitted_at.timestamp()
                )
        # Zero deltas are sent too: they mark the month as touched, as the batch oracle does.
        for (region, month), counts in sorted(pending.items()):
            await region_topic.send(
                key=region.encode(), value=_delta_message("survey", month, **counts.as_dict())
            )


@app.agent(official_topic)
async def apply_official_deaths(stream: Any) -> None:
    """Validate official monthly deaths and re-key them by region for the aggregation."""
    async for event in stream.events():
        metrics.RECORDS_CONSUMED.labels(topics.OFFICIAL_DEATHS.name).inc()
        record = parse(event.value, OfficialDeaths)
        if isinstance(record, DeadLetter):
            await send_dead_letter(event, record)
            continue
        metrics.VALID.labels(topics.OFFICIAL_DEATHS.name).inc()
        await region_topic.send(
            key=record.region_code.encode(),
            value=_delta_message(
                "official",
                record.month,
                deaths=record.deaths,
                source=record.source,
                published_at=record.published_at.isoformat(),
            ),
        )


def _totals(months: dict[str, list[Any]]) -> dict[str, MonthTotals]:
    return {
        m: MonthTotals(Counts(int(v[0]), int(v[1]), int(v[2])), v[3]) for m, v in months.items()
    }


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


_sink: IndicatorSink | None = None


def sink() -> IndicatorSink:
    global _sink
    if _sink is None:
        _sink = IndicatorSink(settings.database_url)
    return _sink


@app.agent(region_topic)
async def aggregate_regions(stream: Any) -> None:
    """Sum deltas into (region, month) buckets, recompute affected rolling windows, sink them."""
    async for events in stream.take_events(REGION_BATCH, within=BATCH_WITHIN_S):
        working: dict[bytes, dict[str, list[Any]]] = {}
        touched: dict[str, set[str]] = {}
        official_rows: list[OfficialRow] = []
        for event in events:
            region_key = event.key
            region = region_key.decode()
            msg = orjson.loads(event.value)
            if region_key not in working:
                working[region_key] = dict(region_months.get(region_key) or {})
            months = working[region_key]
            month = msg["month"]
            bucket = list(months.get(month) or [0, 0, 0, None])
            if msg["kind"] == "survey":
                bucket[0] += msg["registered"]
                bucket[1] += msg["own_home"]
                bucket[2] += msg["spec_received"]
            else:
                bucket[3] = msg["deaths"]
                official_rows.append(
                    (
                        region,
                        month_first_day(month),
                        msg["deaths"],
                        msg["source"],
                        datetime.fromisoformat(msg["published_at"]),
                    )
                )
            months[month] = bucket
            touched.setdefault(region, set()).add(month)
        for region_key, months in working.items():
            region_months[region_key] = months
        last = current_month()
        values: list[IndicatorValue] = []
        for region, changed in touched.items():
            totals = _totals(working[region.encode()])
            ends = {e for m in changed for e in affected_window_ends(m, last)}
            for end in sorted(ends):
                values.extend(rolling_region_indicators(region, end, totals))
        started = time.perf_counter()
        await sink().write(values, official_rows)
        metrics.SINK_SECONDS.observe(time.perf_counter() - started)
        metrics.INDICATOR_ROWS.inc(len(values))


@app.page("/metrics")
async def prometheus_metrics(web: Any, request: Any) -> Any:
    # aiohttp takes the charset separately from the media type.
    media_type = CONTENT_TYPE_LATEST.split("; charset")[0]
    return web.bytes(generate_latest(), content_type=media_type)


__all__ = ["app", "window_months"]
