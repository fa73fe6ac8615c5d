"""The Faust app: topics, tables and agents. Agents only move records and call the core.

Partitioning (see README, "Architecture"):
- ``people`` keyed by person_ref, fed by palliwatch.surveys-by-person.v1 (batch messages sent
  to the person's partition): one survey per person, and which revision of it counts;
- ``scope-months`` keyed by ``<scope>|<month>``, fed by palliwatch.scope-deltas.v1 (key: the
  scope, a region code or SE).
Every table computes a key's changelog partition from its source key (the person, the scope):
it equals the partition the key's source records are in, so a worker restores exactly the state
of the partitions it is assigned, and the agents can batch with ``take_events``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Generator
from datetime import UTC, date, datetime
from typing import Any, cast

import faust
import orjson
from aiokafka.partitioner import murmur2

from processors import metrics, person_state
from processors.admission import DUPLICATE, REDELIVERED, STALE, admit
from processors.aggregate import Aggregator
from processors.catalogue import Catalogue, default_catalogue
from processors.core import IndicatorValue, month_first_day
from processors.engine import NATION
from processors.sink import INDICATORS as INDICATORS_SPEC
from processors.sink import OFFICIAL_DEATHS as OFFICIAL_DEATHS_SPEC
from processors.sink import OfficialRow, Sink, indicator_row
from processors.validation import DeadLetter, Reason, canonical, parse
from schemas import topics
from schemas.codes import regions
from schemas.identity import fold
from schemas.models import DeathSurvey, OfficialDeaths
from streams import faust_fixes, kafka_clients, web
from streams.failures import guarded, inject, internal_error
from streams.settings import load

log = logging.getLogger("palliwatch.worker")
fold("\uff11")  # builds the identity scan's folding table (~1 s) at start, not on a record
faust_fixes.apply()  # commits on compacted topics (streams/faust_fixes.py)
settings = load()

SURVEY_BATCH = 2000
SETTLE_BATCH = 32  # by-person messages, each carrying up to SURVEY_BATCH surveys
# Batch messages aim at 256 kB (a survey is about 1 kB on the wire, a delta about 200 bytes).
# One record alone may be larger: a valid survey may be up to 1 MB, more once escaped, so the
# internal topics and the producer allow messages of up to 8 MB (topics.INTERNAL_MESSAGE_BYTES).
MESSAGE_BYTES = 256 * 1024
SCOPE_MESSAGE_DELTAS = 1500
# Positions of records carried in batch messages: offset * MAX_PER_MESSAGE + index.
MAX_PER_MESSAGE = 4096
assert SURVEY_BATCH <= MAX_PER_MESSAGE


# Batches the survey stages hold in hand: read from Kafka (so not in the consumer's backlog) but
# their results not yet sent on. The aggregation counts them as backlog (input_backlog).
_in_hand = {"screen": 0, "settle": 0}


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _person_messages(records: list[tuple[Any, str]]) -> list[bytes]:
    """(source, survey text) pairs as messages of about MESSAGE_BYTES each."""
    out: list[bytes] = []
    chunk: list[tuple[Any, str]] = []
    size = 0
    for record in records:
        if chunk and size + len(record[1]) > MESSAGE_BYTES:
            out.append(orjson.dumps(chunk))
            chunk, size = [], 0
        chunk.append(record)
        size += len(record[1]) + 64
    if chunk:
        out.append(orjson.dumps(chunk))
    return out


SCOPE_BATCH = 5000
# A live survey waits for up to three batch windows (screen, settle, aggregation). At 0.1 s the
# headline p99 at 200 surveys/s was 1.38 s; at 0.05 s (with the smaller slices below) 0.92 s,
# backfill rate unchanged (README, Benchmarks).
BATCH_WITHIN_S = 0.05

# person_ref -> record key (the Cell Key Method's secret): read once, before any record; a
# deployment without a secret stops here with the line that says what to set.
RECORD_KEYS = settings.record_keys()

app = faust.App(
    settings.app_id,
    broker=settings.faust_broker,
    store="memory://",
    datadir=str(settings.state_dir / "faust"),
    topic_partitions=settings.partitions,
    # Changelogs and Faust's own topics get the deployment's replication (contract and internal
    # topics get it from `topics create`); min.insync.replicas below, per table.
    topic_replication_factor=settings.kafka_replication_factor,
    broker_credentials=kafka_clients.faust_credentials(settings),
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=settings.commit_interval_seconds,
    broker_session_timeout=settings.session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
    table_standby_replicas=0,
    # The web port: /metrics and /health only, none of Faust's own pages (streams/web.py).
    **web.app_settings(bind=settings.web_bind, port=settings.web_port),
    autodiscover=False,
    producer_acks=-1,
    # Batch sends: every survey fans out to a forward topic and a changelog record; with
    # Faust's default linger of 0 each record went out in its own request.
    producer_linger=0.01,
    producer_max_batch_size=512 * 1024,
    producer_max_request_size=topics.INTERNAL_MESSAGE_BYTES,
)
web.install(app)


def _topic(spec: topics.TopicSpec, maxsize: int | None = None) -> faust.TopicT:
    """``maxsize``: how many records the worker reads ahead of its agent (Faust's default,
    ``stream_buffer_maxsize``, is 4096 — fine for single records, but 4096 batch messages of a
    quarter megabyte each would be a gigabyte of read-ahead)."""
    # Contract topics are created from the catalogue, never declared by Faust.
    return app.topic(
        settings.topic(spec),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions or settings.partitions,
        internal=False,
        maxsize=maxsize,
    )


contract_topics = {spec.name: _topic(spec) for spec in topics.CONTRACT_TOPICS}
valid_topics = {spec.name: _topic(spec.valid) for spec in topics.CONTRACT_TOPICS}
# Batch messages: a few in hand are thousands of surveys or deltas.
by_person_topic = _topic(topics.SURVEYS_BY_PERSON, maxsize=2 * SETTLE_BATCH)
scope_topic = _topic(topics.SCOPE_DELTAS, maxsize=256)
dead_letter_topic = _topic(topics.DEAD_LETTER)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, as aiokafka and
    kafka-python compute it)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class SourceKeyedTable(faust.Table):
    """A table whose changelog record for a key goes to the partition its *source* records are
    in, computed here rather than by the producer. A worker then restores exactly the state of
    the partitions it owns, and a table write never asks the producer for the changelog topic's
    metadata (an aiokafka producer that has not seen that topic yet fails the write with a
    TypeError: seen once in four starts on a brand-new broker)."""

    def source_key(self, key: bytes) -> bytes:
        return key

    def partition_for_key(self, key: Any) -> int:
        return key_partition(self.source_key(bytes(key)), self.partitions or settings.partitions)


class ScopeTable(SourceKeyedTable):
    """A table whose keys start with ``<scope>|`` and live in their scope's partition."""

    def source_key(self, key: bytes) -> bytes:
        return key.split(b"|", 1)[0]


def _table(name: str, cls: type[SourceKeyedTable] = SourceKeyedTable) -> Any:
    return app.tables.add(
        cls(
            app,
            name=name,
            default=None,
            beacon=app.tables.beacon,
            # Keys are the source topic's key, byte for byte (raw codec). Values are compact
            # JSON bytes, decoded on access: a million surveys' states as Python dicts and
            # lists would cost several times the memory (the changelog holds the same JSON).
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            extra_topic_configs={"min.insync.replicas": settings.kafka_min_insync_replicas},
        )
    )


# person_ref -> the person's surveys: admission and revision state (processors/admission.py)
people = _table("people")
# <scope>|<month> -> scope-month state; <scope>|months; SE|structure (processors/aggregate.py)
scope_months = _table("scope-months", ScopeTable)


def catalogue() -> Catalogue:
    return default_catalogue()


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


_catalogue_names = {settings.topic(spec): spec.name for spec in topics.CATALOGUE}


def _base_name(topic: str) -> str:
    """The catalogue name of a deployed topic (namespaced, or carrying the app id), for metric
    labels."""
    return _catalogue_names.get(topic, topic)


def _source(event: faust.EventT) -> tuple[str, int, int]:
    msg = event.message
    return msg.topic, msg.partition, msg.offset


# Forwarding uses send_soon (the producer buffer, as Faust's changelogs do) rather than awaiting
# each send: Faust flushes that buffer before it commits offsets, so at-least-once holds.


def _make_screen(spec: topics.TopicSpec) -> Any:
    """Stateless validation of one contract topic: dead letter, or forward as valid."""
    model = spec.model
    assert model is not None
    is_survey = spec is topics.DEATH_SURVEYS
    label = spec.name
    forward = valid_topics[spec.name]
    person_partitions = topics.SURVEYS_BY_PERSON.partitions or settings.partitions

    stage = f"screen-{spec.name}"

    @guarded(stage)
    async def screen(stream: Any) -> None:
        async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
            if is_survey:
                _in_hand["screen"] = len(events)
            now = datetime.now(UTC)
            by_partition: dict[int, list[Any]] = {}
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
                    # What travels on is what was checked (never the raw bytes).
                    text = record if isinstance(record, DeadLetter) else canonical(record)
                except Exception as exc:  # one record's fault: it becomes a dead letter
                    text = internal_error(stage, exc)
                if isinstance(text, DeadLetter):
                    await send_dead_letter(text, event.value or b"", _source(event), event.key)
                elif is_survey:
                    # One survey per person is checked where all of a person's surveys meet:
                    # re-keyed by person_ref, many to a message (one per partition and batch).
                    assert isinstance(record, DeathSurvey)
                    partition = key_partition(record.person_ref.encode(), person_partitions)
                    by_partition.setdefault(partition, []).append((_source(event), text.decode()))
                else:
                    metrics.VALID.labels(label).inc()
                    forward.send_soon(key=event.key, value=text)
            inject("screen", "batch")  # mid-batch: dead letters sent, surveys not yet
            for partition, records in sorted(by_partition.items()):
                for message in _person_messages(records):
                    by_person_topic.send_soon(key=None, value=message, partition=partition)
            if is_survey:
                _in_hand["screen"] = 0

    screen.__name__ = screen.__qualname__ = f"screen_{spec.name.split('.')[1].replace('-', '_')}"
    return screen


for _spec in topics.CONTRACT_TOPICS:
    app.agent(contract_topics[_spec.name], name=f"screen-{_spec.name}")(_make_screen(_spec))


def _survey_key(raw: bytes) -> bytes | None:
    """The contract key of a survey text the screen let through (its survey_id), so that its
    dead letter can be replayed to the compacted survey topic (which refuses null keys)."""
    try:
        return str(orjson.loads(raw)["survey_id"]).encode()
    except Exception:
        return None


@app.agent(by_person_topic)
@guarded("settle_surveys")
async def settle_surveys(stream: Any) -> None:
    """One survey per person, strictly increasing revisions per survey (else dead or stale);
    forward the admitted to `.valid`, store their facts, and send their signed contributions
    keyed by scope — one person-state write per record, one message per scope per batch."""
    cat = catalogue()
    label = topics.DEATH_SURVEYS.name
    valid = valid_topics[label]
    async for events in stream.take_events(SETTLE_BATCH, within=BATCH_WITHIN_S):
        _in_hand["settle"] = sum(len(e.value) for e in events) // 1000  # ~1 kB a survey
        per_scope: dict[str, list[list[Any]]] = {}
        newest: dict[str, float] = {}  # metrics: newest submitted_at per scope message
        facts: list[tuple[DeathSurvey, tuple[Any, ...], bytes]] = []
        for event in events:
            partition, offset = event.message.partition, event.message.offset
            for index, (source, text) in enumerate(orjson.loads(event.value)):
                raw = text.encode()
                try:
                    # Everything that can fail on this record's account, before any effect.
                    inject("settle_surveys", "record")
                    survey = DeathSurvey.model_validate_json(raw)
                    person = survey.person_ref.encode()
                    stored = people.get(person)
                    state = None if stored is None else person_state.unpack(stored)
                    result = admit(
                        state, offset * MAX_PER_MESSAGE + index, survey, cat, RECORD_KEYS
                    )
                    wires = [delta.to_wire(partition) for delta in result.deltas]
                    packed = None if result.state is None else person_state.pack(result.state)
                except Exception as exc:
                    dead = internal_error("settle_surveys", exc)
                    await send_dead_letter(dead, raw, tuple(source), _survey_key(raw))
                    continue
                if result.outcome == DUPLICATE:
                    if packed is not None:
                        people[person] = packed
                    await send_dead_letter(
                        DeadLetter(
                            Reason.DUPLICATE_PERSON,
                            f"person_ref already has survey {result.holder!r}; "
                            f"survey_id {survey.survey_id!r} is a second registration",
                        ),
                        raw,
                        tuple(source),
                        survey.survey_id.encode(),
                    )
                    continue
                if result.outcome == STALE:
                    metrics.STALE_REVISIONS.inc()
                    continue
                if result.outcome == REDELIVERED:
                    metrics.REDELIVERED_DELTAS.inc(len(result.deltas))
                else:
                    assert packed is not None  # applied
                    people[person] = packed
                    metrics.VALID.labels(label).inc()
                    if survey.status == "active":
                        metrics.LAST_EVENT_TIME.labels(survey.region_code).set(
                            survey.submitted_at.timestamp()
                        )
                valid.send_soon(key=survey.survey_id.encode(), value=raw)
                facts.append((survey, tuple(source), raw))
                t = survey.submitted_at.timestamp()
                for delta, wire in zip(result.deltas, wires, strict=True):
                    for scope in (delta.contribution.region, NATION):
                        per_scope.setdefault(scope, []).append(wire)
                        newest[scope] = max(newest.get(scope, 0.0), t)
        inject("settle_surveys", "batch")  # mid-batch: states written, facts and deltas not
        rejected = await sink("facts-surveys").write_records([survey for survey, _, _ in facts])
        for i, error in rejected:
            # Counted already (admission came first): the dead letter says so.
            survey, source, raw = facts[i]
            await send_dead_letter(
                DeadLetter(
                    Reason.DATABASE_REJECTED,
                    f"the survey counts in the indicators, but PostgreSQL refused its fact "
                    f"rows: {error}",
                ),
                raw,
                source,
                survey.survey_id.encode(),
            )
        # One message per scope and batch: the aggregation reads one record, not thousands.
        for scope, wires in sorted(per_scope.items()):
            for chunk in _chunks(wires, SCOPE_MESSAGE_DELTAS):
                scope_topic.send_soon(
                    key=scope.encode(),
                    value=orjson.dumps({"kind": "survey", "d": chunk, "t": newest[scope]}),
                )
        _in_hand["settle"] = 0


@app.agent(valid_topics[topics.OFFICIAL_DEATHS.name])
@guarded("apply_official_deaths")
async def apply_official_deaths(stream: Any) -> None:
    """Official monthly deaths go to their region and to the nation."""
    async for event in stream.events():
        try:
            inject("apply_official_deaths", "record")
            record = OfficialDeaths.model_validate_json(event.value)
            message = orjson.dumps({"kind": "official", **record.model_dump(mode="json")})
        except Exception as exc:
            dead = internal_error("apply_official_deaths", exc)
            await send_dead_letter(dead, event.value or b"", _source(event), event.key)
            continue
        inject("apply_official_deaths", "batch")
        for scope in (record.region_code, NATION):
            scope_topic.send_soon(key=scope.encode(), value=message)


def _make_structure_forward(spec: topics.TopicSpec, kind: str) -> Any:
    """Unit events and population feed the structural indicators, all computed at the nation's
    key (a few hundred units: one scope holds them all, and catchments may cross regions)."""
    model = spec.model
    assert model is not None

    stage = f"structure-{kind}"

    @guarded(stage)
    async def forward(stream: Any) -> None:
        async for event in stream.events():
            try:
                inject(stage, "record")
                record = model.model_validate_json(event.value).model_dump(mode="json")
                body = (
                    {"kind": kind, "event": record} if kind == "unit" else {"kind": kind, **record}
                )
                message = orjson.dumps(body)
            except Exception as exc:
                dead = internal_error(stage, exc)
                await send_dead_letter(dead, event.value or b"", _source(event), event.key)
                continue
            inject(stage, "batch")
            scope_topic.send_soon(key=NATION.encode(), value=message)

    return forward


app.agent(valid_topics[topics.UNIT_EVENTS.name], name="structure-units")(
    _make_structure_forward(topics.UNIT_EVENTS, "unit")
)
app.agent(valid_topics[topics.POPULATION.name], name="structure-population")(
    _make_structure_forward(topics.POPULATION, "population")
)


_sinks: dict[str, Sink] = {}


def sink(name: str) -> Sink:
    """One database connection per agent: agents write concurrently."""
    if name not in _sinks:
        _sinks[name] = Sink(
            settings.database_url,
            give_up_after_s=settings.db_retry_seconds,
            statement_timeout_s=settings.db_statement_timeout_seconds,
            record_keys=RECORD_KEYS,
        )
    return _sinks[name]


async def write_indicators(
    values: list[IndicatorValue], official: list[OfficialRow], writer: str = "indicators"
) -> None:
    computed_at = datetime.now(UTC)
    await sink(writer).write(
        [
            (OFFICIAL_DEATHS_SPEC, official),
            (INDICATORS_SPEC, [indicator_row(v, computed_at) for v in values]),
        ]
    )
    metrics.INDICATOR_ROWS.inc(len(values))


# Evaluation (README, "Coalesced evaluation"). Deltas are applied (and their scope marked
# pending, in the table) per batch. Two passes then write rows:
# - the headline pass, after every batch once the worker has caught up with its input: the rows
#   live traffic watches (breakdown "all" of the regions and the nation, for the touched
#   months' calendar periods, the current rolling 12 months and today's daily windows) — a few
#   thousand rows, so a survey shows there within about a second;
# - the full evaluation, a job over the scopes with pending work, worked through in slices of
#   about FULL_SLICE_S between batches while input is waiting (so it never holds a headline
#   pass back for long), straight through when nothing waits. Started when the worker has
#   caught up; while it works through a backlog (a backfill, a restart) only every
#   BACKLOG_EVALUATE_S or four times the last job's duration: every full evaluation rewrites
#   every open period it touched, so evaluating as often as in live traffic made a backfill
#   write each row many times over.
EVALUATE_MIN_S = 0.25
BACKLOG_EVALUATE_S = 30.0
# Caught up: fewer records than this left to read (in live traffic a few are always in flight).
CAUGHT_UP_RECORDS = SURVEY_BATCH
# The full evaluation gives the loop back after FULL_SLICE_S once input waits; a chunk is
# computed synchronously, so SLICE_ROWS bounds how long every stage of the worker (all share one
# event loop) waits for it: about 30 ms here.
FULL_SLICE_S = 0.05
SLICE_ROWS = 1000


def input_backlog() -> int:
    """Records this worker's agents have not read yet, over its assigned input partitions
    (from the consumer's latest fetch: no broker round trip), plus the survey batches its
    stages hold in hand."""
    consumer = app.consumer
    read_offsets = getattr(consumer, "_read_offset", {})  # Faust's record of the last offset read
    total = 0
    try:
        for tp in consumer.assignment():
            if tp.topic not in _lag_sources:
                continue
            high = consumer.highwater(tp)
            read = read_offsets.get(tp)
            if high is not None:
                total += max(0, high - (read + 1 if read is not None else 0))
    except Exception:  # not started or rebalancing: treat as caught up
        return 0
    return total + sum(_in_hand.values())


def evaluation_due(since_last: float, cost: float, backlog: bool) -> bool:
    if backlog:
        return since_last >= max(BACKLOG_EVALUATE_S, 4 * cost)
    return since_last >= EVALUATE_MIN_S


def _waiting(stream: Any) -> int:
    """Records already delivered to this agent's stream and not yet taken."""
    try:
        return int(stream.channel.queue.qsize())
    except Exception:
        return 0


def _observe(histogram: Any, submitted: list[float]) -> None:
    durable = datetime.now(UTC).timestamp()
    for t in submitted:
        histogram.observe(max(0.0, durable - t))
    submitted.clear()


# Every scope the aggregation keeps: the regions and the nation.
ALL_SCOPES = (*regions(), NATION)


class Assignment:
    """The scope-deltas partitions this worker owns, and a count of rebalances: the
    aggregation holds decoded state and work lists in memory, which a rebalance makes stale
    (``Aggregator.forget``)."""

    generation = 0
    scope_partitions: frozenset[int] = frozenset()

    @classmethod
    def owns(cls, scope: str) -> bool:
        return _scope_partition(scope) in cls.scope_partitions


@functools.cache
def _scope_partition(scope: str) -> int:
    return key_partition(scope.encode(), topics.SCOPE_DELTAS.partitions or settings.partitions)


def _on_partitions_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    # The job under way stops at its next chunk. What the worker owns is known once the
    # assignment is: records of partitions it keeps may still arrive until then.
    Assignment.generation += 1


def _on_partitions_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    (assigned,) = args  # the whole assignment (eager rebalancing), not only what is new
    Assignment.generation += 1
    Assignment.scope_partitions = frozenset(
        tp.partition for tp in assigned if tp.topic in scope_topic.topics
    )


# mode's handler type does not admit a plain function with these parameters (mypy).
app.on_partitions_revoked.connect(cast(Any, _on_partitions_revoked))
app.on_partitions_assigned.connect(cast(Any, _on_partitions_assigned))


@app.agent(scope_topic)
@guarded("aggregate_scopes")
async def aggregate_scopes(stream: Any) -> None:
    """Apply deltas to scope-month state; write headline rows, and the full evaluation in
    slices, when due."""
    agg = Aggregator(scope_months, catalogue())
    job: list[str] = []  # scopes of the full evaluation under way, not started yet
    scope_rows: Generator[list[IndicatorValue], None, None] | None = None  # the scope under way
    job_active = False
    job_spent = last_done = cost = 0.0
    official_rows: list[OfficialRow] = []
    # metrics: the newest submitted_at of each survey message, until its headline rows are
    # durable; until a full evaluation that started after it finished; in the one under way.
    headline_wait: list[float] = []
    complete_wait: list[float] = []
    in_job: list[float] = []
    seen = Assignment.generation
    # The evaluation date comes from the clock's ticks (one source for every worker); before
    # the first tick, from this worker's clock.
    as_of = settings.as_of()
    async for events in stream.take_events(SCOPE_BATCH, within=BATCH_WITHIN_S):
        if seen != Assignment.generation:
            # A rebalance: what is held in memory may be stale, and some scopes may be another
            # worker's now. The job under way is dropped; its marks are still in the table.
            seen = Assignment.generation
            if scope_rows is not None:
                scope_rows.close()
            job, scope_rows, job_active = [], None, False
            agg.forget([scope for scope in ALL_SCOPES if Assignment.owns(scope)])
        for event in events:
            scope = event.key.decode()
            if not Assignment.owns(scope):
                # Read before the rebalance, from a partition revoked since: not committed, so
                # its new owner reads it again.
                continue
            # Internal messages: any failure applying one is a bug, not the record's fault, and
            # may leave the scope half-applied in memory, so it stops the worker (a restart
            # rebuilds from the changelog; deltas carry positions, none counts twice).
            inject("aggregate_scopes", "record")
            msg = orjson.loads(event.value)
            kind = msg["kind"]
            if kind == "survey":
                agg.apply_survey_deltas(scope, msg["d"])
                if "t" in msg:
                    headline_wait.append(msg["t"])
                    complete_wait.append(msg["t"])
            elif kind == "official":
                agg.apply_official(scope, msg["region_code"], msg["month"], msg["deaths"])
                if scope != NATION:
                    official_rows.append(
                        (
                            msg["region_code"],
                            month_first_day(msg["month"]),
                            msg["deaths"],
                            msg["source"],
                            datetime.fromisoformat(msg["published_at"]),
                        )
                    )
            elif kind == "tick":
                as_of = date.fromisoformat(msg["as_of"])  # the one clock: the leader's ticks
                agg.tick(scope, as_of)
            else:
                agg.apply_structure(event.message.offset, msg)
        metrics.REDELIVERED_DELTAS.inc(agg.redelivered)
        agg.redelivered = 0
        inject("aggregate_scopes", "batch")  # mid-batch: applied in memory, not committed
        agg.commit()
        backlog = input_backlog() > CAUGHT_UP_RECORDS
        if agg.fresh and not backlog:
            with metrics.EVALUATION_SECONDS.labels("headline").time():
                await write_indicators(agg.evaluate_headline(as_of), official_rows)
            official_rows = []
            _observe(metrics.PROCESSING_LATENCY, headline_wait)
        if not job_active and agg.has_work() and evaluation_due(time.monotonic() - last_done,
                                                                cost, backlog):  # fmt: skip
            job, job_spent, job_active = agg.scopes_with_work(), 0.0, True
            in_job += complete_wait
            complete_wait.clear()
        started = time.monotonic()
        writing: asyncio.Task[None] | None = None
        while (
            (scope_rows is not None or job)
            and (time.monotonic() - started < FULL_SLICE_S or not _waiting(stream))
            and seen == Assignment.generation  # else a rebalance: dropped at the next batch
        ):
            if scope_rows is None:
                scope_rows = agg.evaluate_scope_chunks(job.pop(0), as_of, max_rows=SLICE_ROWS)
            rows = next(scope_rows, None)  # computed while the previous chunk is written
            if writing is not None:
                await writing
                writing = None
            if rows is None:  # the scope is done and its rows durable
                scope_rows = None
                agg.commit()  # its pending marks, cleared
                continue
            writing = asyncio.ensure_future(write_indicators(rows, official_rows))
            official_rows = []
            await asyncio.sleep(0)  # let the write send its batch before computing the next
        if writing is not None:
            await writing
        if job_active:
            metrics.EVALUATION_SECONDS.labels("full").observe(time.monotonic() - started)
        job_spent += time.monotonic() - started
        if job_active and not job and scope_rows is None:
            job_active = False
            last_done, cost = time.monotonic(), job_spent
            _observe(metrics.COMPLETE_LATENCY, in_job)
        if official_rows:
            await write_indicators([], official_rows)
            official_rows = []
        under_way = len(job) + (scope_rows is not None)
        metrics.EVALUATION_PENDING.set(max(under_way, len(agg.scopes_with_work())))


@app.timer(interval=settings.reevaluate_seconds, on_leader=True)
async def tick_scopes() -> None:
    """The clock reaches the aggregation through its own topic: one tick per scope, landing at
    whichever worker owns it. The owner then writes what is pending and, when the date moved,
    re-evaluates what the new date changes (daily windows, completeness, nowcasts) — with or
    without events, and with one writer per scope's state."""
    body = orjson.dumps({"kind": "tick", "as_of": settings.as_of().isoformat()})
    for scope in ALL_SCOPES:
        scope_topic.send_soon(key=scope.encode(), value=body)


# Metrics only: consumer lag of the agents' source partitions and state table sizes.
_lag_sources = {
    name: _base_name(name)
    for topic in [*contract_topics.values(), *valid_topics.values(), by_person_topic, scope_topic]
    for name in topic.topics
}


@app.timer(interval=5.0)
async def observe_lag_and_tables() -> None:
    await metrics.observe_faust(app, _lag_sources)


def _make_fact_store(spec: topics.TopicSpec) -> Any:
    """Validated records of one contract topic into their fact/reference tables."""
    model = spec.model
    assert model is not None

    stage = f"store-{spec.name}"

    @guarded(stage)
    async def store(stream: Any) -> None:
        async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
            records: list[tuple[Any, Any]] = []
            for event in events:
                try:
                    inject("store", "record")
                    records.append((model.model_validate_json(event.value), event))
                except Exception as exc:
                    dead = internal_error(stage, exc)
                    await send_dead_letter(dead, event.value or b"", _source(event), event.key)
            inject("store", "batch")
            rejected = await sink(stage).write_records([record for record, _ in records])
            for i, error in rejected:
                event = records[i][1]
                await send_dead_letter(
                    DeadLetter(Reason.DATABASE_REJECTED, f"PostgreSQL refused its rows: {error}"),
                    event.value or b"",
                    _source(event),
                    event.key,
                )

    return store


# Official deaths are stored by the aggregation, together with the indicators they feed, and
# surveys by settle_surveys, which admits them.
for _spec in topics.CONTRACT_TOPICS:
    if _spec not in (topics.OFFICIAL_DEATHS, topics.DEATH_SURVEYS):
        app.agent(valid_topics[_spec.name], name=f"store-{_spec.name}")(_make_fact_store(_spec))


__all__ = ["app"]
