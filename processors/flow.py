"""How records flow between the worker's stages, without Kafka: the scope messages and their one
codec, which scopes a record reaches, a settled batch of surveys as plain actions, and when the
aggregation evaluates (README, "Coalesced evaluation").

The Faust agents (streams/agents/) read records, call this module, and carry out what it
returns; tests/engine_sim.py calls the same functions, so the stream-equals-batch tests run the
worker's orchestration, not a copy of it. Nothing here reads a clock: time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson

from processors import person_state
from processors.admission import DUPLICATE, REDELIVERED, STALE, admit
from processors.aggregate import Aggregator
from processors.catalogue import Catalogue
from processors.core import IndicatorValue, month_first_day
from processors.engine import NATION, RecordKeyFn
from processors.validation import DeadLetter, Reason
from schemas.codes import regions
from schemas.models import DeathSurvey

SURVEY_BATCH = 2000  # records the screen and the fact store take at once
SETTLE_BATCH = 32  # by-person messages, each carrying up to SURVEY_BATCH surveys
SCOPE_BATCH = 5000  # scope messages the aggregation takes at once
# A live survey waits for up to three batch windows (screen, settle, aggregation). At 0.1 s the
# headline p99 at 200 surveys/s was 1.38 s; at 0.05 s (with the smaller slices below) 0.92 s,
# backfill rate unchanged (README, Benchmarks).
BATCH_WITHIN_S = 0.05
# Batch messages aim at 256 kB (a survey is about 1 kB on the wire, a delta about 200 bytes).
# One record alone may be larger: a valid survey may be up to 1 MB, more once escaped, so the
# internal topics and the producer allow messages of up to 8 MB (topics.INTERNAL_MESSAGE_BYTES).
MESSAGE_BYTES = 256 * 1024
SCOPE_MESSAGE_DELTAS = 1500
# Positions of records carried in batch messages: offset * MAX_PER_MESSAGE + index.
MAX_PER_MESSAGE = 4096
assert SURVEY_BATCH <= MAX_PER_MESSAGE

Source = tuple[str, int, int]  # topic, partition, offset of the record a survey came in
OfficialRow = tuple[str, date, int, str, datetime]  # processors.sink.OfficialRow

# ---- routing ------------------------------------------------------------------------------

# Every scope the aggregation keeps: the regions and the nation.
ALL_SCOPES: tuple[str, ...] = (*regions(), NATION)


def scopes_for(region: str | None) -> tuple[str, ...]:
    """The scopes a region's delta or record reaches: its region and the nation. Structure
    (unit events, population: ``region`` None) is all at the nation's key (a few hundred units:
    one scope holds them all, and catchments may cross regions)."""
    return (NATION,) if region is None else (region, NATION)


# ---- scope messages (palliwatch.scope-deltas.v1) ----------------------------------------------
# On the wire: compact JSON with a "kind", as the changelogs and topics already hold.


@dataclass(frozen=True)
class SurveyDeltas:
    """Signed contributions (``Delta.to_wire``) for one scope; ``submitted``: the newest
    submitted_at among their surveys (latency metrics), absent on old or crafted messages."""

    deltas: list[list[Any]]
    submitted: float | None = None


@dataclass(frozen=True)
class OfficialDeaths:
    """One official monthly deaths record, its fields as schemas.models.OfficialDeaths dumps
    them (region_code, month, deaths, source, published_at)."""

    msg: dict[str, Any]

    def row(self) -> OfficialRow:
        m = self.msg
        published = datetime.fromisoformat(m["published_at"])
        return (m["region_code"], month_first_day(m["month"]), m["deaths"], m["source"], published)


@dataclass(frozen=True)
class UnitEvent:
    event: dict[str, Any]


@dataclass(frozen=True)
class Population:
    """municipality_code, year, population (schemas.models.Population, dumped)."""

    record: dict[str, Any]


@dataclass(frozen=True)
class Tick:
    """The one clock: the evaluation date, from the leader's timer."""

    as_of: date


ScopeMessage = SurveyDeltas | OfficialDeaths | UnitEvent | Population | Tick


def as_dict(message: ScopeMessage) -> dict[str, Any]:
    """The message as its wire JSON object."""
    match message:
        case SurveyDeltas(deltas, None):
            return {"kind": "survey", "d": deltas}
        case SurveyDeltas(deltas, submitted):
            return {"kind": "survey", "d": deltas, "t": submitted}
        case OfficialDeaths(msg):
            return {"kind": "official", **msg}
        case UnitEvent(event):
            return {"kind": "unit", "event": event}
        case Population(record):
            return {"kind": "population", **record}
        case Tick(as_of):
            return {"kind": "tick", "as_of": as_of.isoformat()}
    raise TypeError(f"not a scope message: {message!r}")


def encode(message: ScopeMessage) -> bytes:
    return orjson.dumps(as_dict(message))


def from_dict(body: dict[str, Any]) -> ScopeMessage:
    kind = body["kind"]
    rest = {k: v for k, v in body.items() if k != "kind"}
    if kind == "survey":
        return SurveyDeltas(body["d"], body.get("t"))
    if kind == "official":
        return OfficialDeaths(rest)
    if kind == "unit":
        return UnitEvent(body["event"])
    if kind == "population":
        return Population(rest)
    if kind == "tick":
        return Tick(date.fromisoformat(body["as_of"]))
    raise ValueError(f"unknown scope message kind {kind!r}")


def decode(raw: bytes) -> ScopeMessage:
    return from_dict(orjson.loads(raw))


def apply(agg: Aggregator, scope: str, position: int, message: ScopeMessage) -> None:
    """A scope message applied to the aggregation's state of ``scope``; ``position``: the
    message's offset (structure messages are applied once each, by position)."""
    match message:
        case SurveyDeltas(deltas):
            agg.apply_survey_deltas(scope, deltas)
        case OfficialDeaths(msg):
            agg.apply_official(scope, msg["region_code"], msg["month"], msg["deaths"])
        case Tick(as_of):
            agg.tick(scope, as_of)
        case UnitEvent(event):
            agg.apply_unit(position, event)
        case Population(record):
            agg.apply_population(
                position,
                record["municipality_code"],
                int(record["year"]),
                int(record["population"]),
            )


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# ---- the screen: surveys re-keyed by person -------------------------------------------------


def person_messages(records: Iterable[tuple[Source, str]]) -> list[bytes]:
    """(source, survey text) pairs as messages of about MESSAGE_BYTES each."""
    out: list[bytes] = []
    chunk: list[tuple[Source, str]] = []
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


def by_partition_messages(
    by_partition: dict[int, list[tuple[Source, str]]],
) -> list[tuple[int, bytes]]:
    """A screened batch's surveys, grouped by their person's partition, as (partition, message)
    in partition order: one person-state owner gets all of a person's surveys."""
    return [
        (partition, message)
        for partition, records in sorted(by_partition.items())
        for message in person_messages(records)
    ]


def unpack_person_message(raw: bytes) -> list[tuple[Source, str]]:
    return [(tuple(source), text) for source, text in orjson.loads(raw)]


# ---- settling: one survey per person, revisions in order -------------------------------------


@dataclass(frozen=True)
class Letter:
    """A dead letter to send: ``why`` is the verdict, or the exception that made the record a
    dead letter ``internal_error`` (the shell counts and words it, streams/failures.py)."""

    why: DeadLetter | BaseException
    raw: bytes
    source: Source
    key: bytes | None


@dataclass
class Settlement:
    """What one batch of by-person messages comes to, as actions: person states to write,
    dead letters, surveys to forward as valid, facts to store, deltas per scope."""

    states: dict[bytes, bytes] = field(default_factory=dict)  # person_ref -> packed state
    letters: list[Letter] = field(default_factory=list)
    forward: list[tuple[bytes, bytes]] = field(default_factory=list)  # survey_id, text
    facts: list[tuple[DeathSurvey, Source, bytes]] = field(default_factory=list)
    stale: int = 0
    redelivered: int = 0
    applied: int = 0
    last_event: dict[str, float] = field(default_factory=dict)  # region -> submitted_at
    per_scope: dict[str, list[list[Any]]] = field(default_factory=dict)
    newest: dict[str, float] = field(default_factory=dict)

    def admit(
        self,
        load: Callable[[bytes], bytes | None],
        partition: int,
        position: int,
        survey: DeathSurvey,
        cat: Catalogue,
        record_keys: RecordKeyFn,
        source: Source = ("", 0, 0),
        raw: bytes = b"",
    ) -> None:
        """One survey's verdict. ``load`` reads a person's stored state (the table); states
        settled earlier in this batch take its place. Raises only before any effect."""
        person = survey.person_ref.encode()
        stored = self.states[person] if person in self.states else load(person)
        state = None if stored is None else person_state.unpack(stored)
        result = admit(state, position, survey, cat, record_keys)
        wires = [delta.to_wire(partition) for delta in result.deltas]
        packed = None if result.state is None else person_state.pack(result.state)
        if result.outcome == DUPLICATE:
            if packed is not None:
                self.states[person] = packed
            detail = (
                f"person_ref already has survey {result.holder!r}; "
                f"survey_id {survey.survey_id!r} is a second registration"
            )
            why = DeadLetter(Reason.DUPLICATE_PERSON, detail)
            self.letters.append(Letter(why, raw, source, survey.survey_id.encode()))
            return
        if result.outcome == STALE:
            self.stale += 1
            return
        if result.outcome == REDELIVERED:
            self.redelivered += len(result.deltas)
        else:
            assert packed is not None  # applied
            self.states[person] = packed
            self.applied += 1
            if survey.status == "active":
                self.last_event[survey.region_code] = survey.submitted_at.timestamp()
        self.forward.append((survey.survey_id.encode(), raw))
        self.facts.append((survey, source, raw))
        t = survey.submitted_at.timestamp()
        for delta, wire in zip(result.deltas, wires, strict=True):
            for scope in scopes_for(delta.contribution.region):
                self.per_scope.setdefault(scope, []).append(wire)
                self.newest[scope] = max(self.newest.get(scope, 0.0), t)

    def scope_messages(self) -> list[tuple[str, SurveyDeltas]]:
        """One message per scope and batch (the aggregation reads one record, not thousands),
        at most SCOPE_MESSAGE_DELTAS deltas each."""
        return [
            (scope, SurveyDeltas(chunk, self.newest[scope]))
            for scope, wires in sorted(self.per_scope.items())
            for chunk in chunks(wires, SCOPE_MESSAGE_DELTAS)
        ]

    def rejected_facts(self, rejected: Iterable[tuple[int, str]]) -> list[Letter]:
        """Dead letters for the facts PostgreSQL refused (counted already: admission came
        first, and the dead letter says so)."""
        letters = []
        for i, error in rejected:
            survey, source, raw = self.facts[i]
            detail = (
                f"the survey counts in the indicators, but PostgreSQL refused its fact rows: "
                f"{error}"
            )
            why = DeadLetter(Reason.DATABASE_REJECTED, detail)
            letters.append(Letter(why, raw, source, survey.survey_id.encode()))
        return letters


def survey_key(raw: bytes) -> bytes | None:
    """The contract key of a survey text the screen let through (its survey_id), so that its
    dead letter can be replayed to the compacted survey topic (which refuses null keys)."""
    try:
        return str(orjson.loads(raw)["survey_id"]).encode()
    except Exception:
        return None


def _nothing() -> None:
    pass


def settle(
    messages: Iterable[tuple[int, int, bytes]],
    load: Callable[[bytes], bytes | None],
    cat: Catalogue,
    record_keys: RecordKeyFn,
    check: Callable[[], None] = _nothing,
) -> Settlement:
    """A batch of by-person messages, (partition, offset, value) each, settled. ``check`` runs
    before each record and may raise (fault injection): like any failure on one record's
    account, that makes the record a dead letter and the batch goes on."""
    out = Settlement()
    for partition, offset, value in messages:
        for index, (source, text) in enumerate(unpack_person_message(value)):
            raw = text.encode()
            try:
                check()
                survey = DeathSurvey.model_validate_json(raw)
                position = offset * MAX_PER_MESSAGE + index
                out.admit(load, partition, position, survey, cat, record_keys, source, raw)
            except Exception as exc:
                out.letters.append(Letter(exc, raw, source, survey_key(raw)))
    return out


# ---- when the aggregation evaluates ------------------------------------------------------
# Deltas are applied (and their scope marked pending, in the table) per batch. Two passes then
# write rows:
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


def evaluation_due(since_last: float, cost: float, backlog: bool) -> bool:
    if backlog:
        return since_last >= max(BACKLOG_EVALUATE_S, 4 * cost)
    return since_last >= EVALUATE_MIN_S


Rows = list[IndicatorValue]


@dataclass
class Schedule:
    """The aggregation's evaluation, as a state machine driven by the agent: ``headline_due``
    after a batch, ``start_if_due``, then ``next_chunk`` while ``slicing``, ``end_slice``.

    It also keeps the submitted_at of each survey message until its rows are durable: the
    headline rows (``headline_written``), and a full evaluation that started after it
    (``end_slice`` returns them when the job is done)."""

    job: list[str] = field(default_factory=list)  # scopes not started yet
    under_way: Iterator[Rows] | None = None  # the scope under way, chunk by chunk
    active: bool = False
    spent: float = 0.0  # time the job under way has taken so far
    last_done: float = -math.inf
    cost: float = 0.0  # the last job's duration
    headline_wait: list[float] = field(default_factory=list)
    complete_wait: list[float] = field(default_factory=list)
    in_job: list[float] = field(default_factory=list)

    def arrived(self, submitted: float | None) -> None:
        if submitted is not None:
            self.headline_wait.append(submitted)
            self.complete_wait.append(submitted)

    def drop(self) -> None:
        """A rebalance: the job under way is dropped (its marks are still in the table)."""
        if self.under_way is not None:
            close = getattr(self.under_way, "close", None)
            if close is not None:
                close()
        self.job, self.under_way, self.active = [], None, False

    @staticmethod
    def headline_due(fresh: bool, backlog: bool) -> bool:
        return fresh and not backlog

    def headline_written(self) -> list[float]:
        waits, self.headline_wait = self.headline_wait, []
        return waits

    def start_if_due(
        self, now: float, has_work: bool, backlog: bool, scopes: Callable[[], list[str]]
    ) -> bool:
        if self.active or not has_work:
            return False
        if not evaluation_due(now - self.last_done, self.cost, backlog):
            return False
        self.job, self.spent, self.active = scopes(), 0.0, True
        self.in_job += self.complete_wait
        self.complete_wait = []
        return True

    @property
    def busy(self) -> bool:
        return self.under_way is not None or bool(self.job)

    def slicing(self, started: float, now: float, waiting: bool) -> bool:
        """Go on with the job: there is work, and the slice has time left or no input waits."""
        return self.busy and (now - started < FULL_SLICE_S or not waiting)

    def next_chunk(self, evaluate: Callable[[str], Iterator[Rows]]) -> Rows | None:
        """The next chunk of rows of the job; None when the scope under way is done (its rows
        written, the shell then commits its cleared marks)."""
        if self.under_way is None:
            self.under_way = evaluate(self.job.pop(0))
        rows = next(self.under_way, None)
        if rows is None:
            self.under_way = None
        return rows

    def end_slice(self, started: float, now: float) -> list[float] | None:
        """The slice's time counted; when the job is done, the waits it completes (else None)."""
        self.spent += now - started
        if not self.active or self.busy:
            return None
        self.active = False
        self.last_done, self.cost = now, self.spent
        waits, self.in_job = self.in_job, []
        return waits

    def pending(self, with_work: int) -> int:
        """Scopes still to evaluate (metrics)."""
        return max(len(self.job) + (self.under_way is not None), with_work)
