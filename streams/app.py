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
from processors.sink import INDICATORS as INDICATORS_SPEC
from processors.sink import OFFICIAL_DEATHS as OFFICIAL_DEATHS_SPEC
from processors.sink import OfficialRow, Sink, fact_rows, indicator_row
from processors.validation import DeadLetter, Reason, parse
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
    # Batch sends: every survey fans out to a forward topic and a changelog record; with
    # Faust's default linger of 0 each record went out in its own request.
    producer_linger=0.01,
    producer_max_batch_size=512 * 1024,
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


contract_topics = {spec.name: _topic(spec) for spec in topics.CONTRACT_TOPICS}
valid_topics = {spec.name: _topic(spec.valid) for spec in topics.CONTRACT_TOPICS}
by_person_topic = _topic(topics.SURVEYS_BY_PERSON)
region_topic = _topic(topics.REGION_DELTAS)
dead_letter_topic = _topic(topics.DEAD_LETTER)


def _table(name: str) -> Any:
    return app.Table(
        name,
        default=None,
        # bytes keys use the raw codec: the changelog key is the source topic's key, byte for
        # byte, so the producer's partitioner puts it in the partition its source records are in.
        key_type=bytes,
        partitions=settings.partitions,
        use_partitioner=True,
    )


survey_state = _table("survey-state")  # survey_id -> applied revision and contribution
person_state = _table("person-state")  # person_ref -> the person's survey, revision, status
# region_code -> {"months": month -> counters and official deaths, "offset": last delta applied}
region_months = _table("region-months")


async def send_dead_letter(
    dead: DeadLetter,
    payload: bytes,
    source: tuple[str, int, int],
    key: bytes | None,
) -> None:
    topic, partition, offset = source
    metrics.DEAD_LETTERS.labels(_base_name(topic), dead.reason.value).inc()
    envelope = dead.envelope(payload, topic, partition, offset, key=key)
    await dead_letter_topic.send(
        key=f"{topic}:{partition}:{offset}".encode(), value=orjson.dumps(envelope)
    )
    # The envelope's detail is already redacted; the payload is never logged.
    log.warning(
        "dead letter %s from %s[%d]@%d: %s",
        dead.reason.value,
        topic,
        partition,
        offset,
        envelope["detail"],
    )


def _base_name(topic: str) -> str:
    """The catalogue name of a (possibly namespaced) topic, for metric labels."""
    ns = settings.topic_namespace
    return topic[len(ns) + 1 :] if ns and topic.startswith(ns + ".") else topic


def _source(event: faust.EventT) -> tuple[str, int, int]:
    msg = event.message
    return msg.topic, msg.partition, msg.offset


def _delta_message(kind: str, month: str, **fields: Any) -> bytes:
    return orjson.dumps({"kind": kind, "month": month, **fields})


# Forwarding uses send_soon (the producer buffer, as Faust's changelogs do) rather than awaiting
# each send: Faust flushes that buffer before it commits offsets, so at-least-once holds.


def _make_screen(spec: topics.TopicSpec) -> Any:
    """Stateless validation of one contract topic: dead letter, or forward as valid."""
    model = spec.model
    assert model is not None
    is_survey = spec is topics.DEATH_SURVEYS
    label = spec.name
    forward = by_person_topic if is_survey else valid_topics[spec.name]

    async def screen(stream: Any) -> None:
        async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
            now = datetime.now(UTC)
            for event in events:
                metrics.RECORDS_CONSUMED.labels(label).inc()
                record = parse(event.value, model, now, key=event.key, expected_key=spec.key_for)
                if isinstance(record, DeadLetter):
                    await send_dead_letter(record, event.value or b"", _source(event), event.key)
                    continue
                if is_survey:
                    # One survey per person is checked where all of a person's surveys meet.
                    assert isinstance(record, DeathSurvey)
                    forward.send_soon(
                        key=record.person_ref.encode(),
                        value=orjson.dumps(
                            {"source": _source(event), "value": event.value.decode()}
                        ),
                    )
                else:
                    metrics.VALID.labels(label).inc()
                    forward.send_soon(key=event.key, value=event.value)

    screen.__name__ = screen.__qualname__ = f"screen_{spec.name.split('.')[1].replace('-', '_')}"
    return screen


for _spec in topics.CONTRACT_TOPICS:
    app.agent(contract_topics[_spec.name], name=f"screen-{_spec.name}")(_make_screen(_spec))


@app.agent(by_person_topic)
async def admit_surveys(stream: Any) -> None:
    """One survey per person; strictly increasing revisions per survey; else dead or stale."""
    label = topics.DEATH_SURVEYS.name
    async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
        for event in events:
            wrapped = orjson.loads(event.value)
            raw = wrapped["value"].encode()
            source = tuple(wrapped["source"])
            survey = DeathSurvey.model_validate_json(raw)
            person = event.key
            known = person_state.get(person)
            if known is not None and known["survey_id"] != survey.survey_id:
                if known["status"] != "withdrawn":
                    await send_dead_letter(
                        DeadLetter(
                            Reason.DUPLICATE_PERSON,
                            f"person_ref already has survey {known['survey_id']!r}; "
                            f"survey_id {survey.survey_id!r} is a second registration",
                        ),
                        raw,
                        source,
                        survey.survey_id.encode(),
                    )
                    continue
                known = None  # the earlier survey was withdrawn: a new registration is allowed
            if known is not None and survey.revision <= known["revision"]:
                metrics.STALE_REVISIONS.inc()
                continue
            person_state[person] = {
                "survey_id": survey.survey_id,
                "revision": survey.revision,
                "status": survey.status,
            }
            metrics.VALID.labels(label).inc()
            valid_topics[label].send_soon(key=survey.survey_id.encode(), value=raw)


@app.agent(valid_topics[topics.DEATH_SURVEYS.name])
async def apply_surveys(stream: Any) -> None:
    """Keep each survey's applied contribution; emit signed bucket deltas keyed by region."""
    async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
        pending: dict[tuple[str, str], Counts] = {}
        for event in events:
            survey = DeathSurvey.model_validate_json(event.value)
            key = event.key
            previous = survey_state.get(key)
            if previous is not None and survey.revision <= previous["revision"]:
                continue  # a redelivery after a restart: admission already counted it
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
            region_topic.send_soon(
                key=region.encode(), value=_delta_message("survey", month, **counts.as_dict())
            )


@app.agent(valid_topics[topics.OFFICIAL_DEATHS.name])
async def apply_official_deaths(stream: Any) -> None:
    """Re-key validated official monthly deaths by region for the aggregation."""
    async for event in stream.events():
        record = OfficialDeaths.model_validate_json(event.value)
        region_topic.send_soon(
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


_sinks: dict[str, Sink] = {}


def sink(name: str) -> Sink:
    """One database connection per agent: agents write concurrently."""
    if name not in _sinks:
        _sinks[name] = Sink(settings.database_url)
    return _sinks[name]


@app.agent(region_topic)
async def aggregate_regions(stream: Any) -> None:
    """Sum deltas into (region, month) buckets, recompute affected rolling windows, sink them."""
    async for events in stream.take_events(REGION_BATCH, within=BATCH_WITHIN_S):
        working: dict[bytes, dict[str, Any]] = {}
        touched: dict[str, set[str]] = {}
        official_rows: list[OfficialRow] = []
        for event in events:
            region_key = event.key
            region = region_key.decode()
            if region_key not in working:
                stored = region_months.get(region_key) or {"months": {}, "offset": -1}
                working[region_key] = {"months": dict(stored["months"]), "offset": stored["offset"]}
            state = working[region_key]
            # Deltas are not idempotent. The table remembers the last delta offset it applied
            # (one region lives in one partition), so a redelivery after a crash, whose effect
            # the restored table already holds, is skipped instead of counted twice.
            if event.message.offset <= state["offset"]:
                metrics.REDELIVERED_DELTAS.inc()
                continue
            state["offset"] = event.message.offset
            msg = orjson.loads(event.value)
            months = state["months"]
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
        for region_key, state in working.items():
            region_months[region_key] = state
        last = current_month()
        values: list[IndicatorValue] = []
        for region, changed in touched.items():
            totals = _totals(working[region.encode()]["months"])
            ends = {e for m in changed for e in affected_window_ends(m, last)}
            for end in sorted(ends):
                values.extend(rolling_region_indicators(region, end, totals))
        computed_at = datetime.now(UTC)
        await sink("indicators").write(
            [
                (OFFICIAL_DEATHS_SPEC, official_rows),
                (INDICATORS_SPEC, [indicator_row(v, computed_at) for v in values]),
            ]
        )
        metrics.INDICATOR_ROWS.inc(len(values))


def _make_fact_store(spec: topics.TopicSpec) -> Any:
    """Validated records of one contract topic into their fact/reference tables."""
    model = spec.model
    assert model is not None

    async def store(stream: Any) -> None:
        async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
            rows: dict[str, tuple[Any, list[tuple[object, ...]]]] = {}
            for event in events:
                for upsert, row in fact_rows(model.model_validate_json(event.value)):
                    rows.setdefault(upsert.table, (upsert, []))[1].append(row)
            await sink(f"facts-{spec.name}").write(list(rows.values()))

    return store


# Official deaths are stored by the aggregation, together with the indicators they feed.
for _spec in topics.CONTRACT_TOPICS:
    if _spec is not topics.OFFICIAL_DEATHS:
        app.agent(valid_topics[_spec.name], name=f"store-{_spec.name}")(_make_fact_store(_spec))


@app.page("/metrics")
async def prometheus_metrics(web: Any, request: Any) -> Any:
    # aiohttp takes the charset separately from the media type.
    media_type = CONTENT_TYPE_LATEST.split("; charset")[0]
    return web.bytes(generate_latest(), content_type=media_type)


__all__ = ["app", "window_months"]
