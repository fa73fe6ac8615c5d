"""The database sink: batched, idempotent upserts.

A batch is COPYed into a per-connection staging table and merged with one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``: COPY is the fastest way into PostgreSQL, and the
upsert keyed by the table's natural key makes replays and retries leave the table as one write
would. A batch is one transaction. On a database outage the sink retries with capped backoff and
does not return until the rows are durable, so the calling agent does not move past records
whose effects are not yet written (and Faust does not commit their offsets).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from tenacity import RetryCallState

from processors import metrics, retry
from processors.core import IndicatorValue
from processors.db import DatabaseTLSError, redact_url, tls_problem
from schemas.identity import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpsertSpec:
    """How to merge rows into one table."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    # Only replace an existing row when this holds (e.g. a newer revision); None: always.
    replace_when: str | None = None
    # Append-only tables: keep the existing row.
    do_nothing: bool = False
    # Columns whose change alone does not warrant rewriting a row (a replay of identical
    # values then costs a read, not a write).
    ignore_for_change: tuple[str, ...] = ()

    def merge_sql(self, staging: str) -> str:
        cols = ", ".join(self.columns)
        keys = ", ".join(self.key)
        if self.do_nothing:
            action = "DO NOTHING"
        else:
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c not in self.key)
            conditions = [self.replace_when] if self.replace_when else []
            compared = [c for c in self.columns if c not in self.key + self.ignore_for_change]
            if self.ignore_for_change and compared:
                mine = ", ".join(f"{self.table}.{c}" for c in compared)
                theirs = ", ".join(f"EXCLUDED.{c}" for c in compared)
                conditions.append(f"({mine}) IS DISTINCT FROM ({theirs})")
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            action = f"DO UPDATE SET {updates}{where}"
        return (
            f"INSERT INTO {self.table} ({cols}) SELECT {cols} FROM {staging} "
            f"ON CONFLICT ({keys}) {action}"
        )


INDICATORS = UpsertSpec(
    "indicator_values",
    (
        "indicator_id", "scope_type", "scope_code", "breakdown", "period_type", "period_start",
        "period_end", "value", "numerator", "denominator", "n", "suppressed", "ci_low",
        "ci_high", "period_complete", "nowcast", "pub_value", "pub_numerator",
        "pub_denominator", "pub_n", "pub_ci_low", "pub_ci_high", "pub_suppressed", "computed_at",
    ),
    key=("indicator_id", "scope_type", "scope_code", "breakdown", "period_type", "period_end"),
    ignore_for_change=("computed_at",),
)  # fmt: skip
INDICATOR_CURRENT = dataclasses.replace(
    INDICATORS,
    table="indicator_current",
    key=("indicator_id", "scope_type", "scope_code", "breakdown", "period_type"),
    replace_when="indicator_current.period_end <= EXCLUDED.period_end",
)


def latest_per_series(rows: Sequence[Sequence[object]]) -> list[Sequence[object]]:
    """Of indicator rows, the one with the latest period_end per series (for INDICATOR_CURRENT)."""
    key_idx = [INDICATORS.columns.index(c) for c in INDICATOR_CURRENT.key]
    end_idx = INDICATORS.columns.index("period_end")
    best: dict[tuple[object, ...], Sequence[object]] = {}
    for row in rows:
        k = tuple(row[i] for i in key_idx)
        if k not in best or row[end_idx] >= best[k][end_idx]:  # type: ignore[operator]
            best[k] = row
    return list(best.values())


OFFICIAL_DEATHS = UpsertSpec(
    "official_deaths",
    ("region_code", "month", "deaths", "source", "published_at"),
    key=("region_code", "month"),
)


def dedupe_last(spec: UpsertSpec, rows: Iterable[Sequence[object]]) -> list[Sequence[object]]:
    """One row per key, the last one winning (ON CONFLICT cannot touch a row twice)."""
    idx = [spec.columns.index(k) for k in spec.key]
    out: dict[tuple[object, ...], Sequence[object]] = {}
    for row in rows:
        out[tuple(row[i] for i in idx)] = row
    # Sorted keys give every writer the same lock order: two workers cannot deadlock. Key
    # columns are NOT NULL and of one type each, so the tuples compare directly.
    return [out[k] for k in sorted(out)]


async def copy_upsert(
    conn: psycopg.AsyncConnection, spec: UpsertSpec, rows: Sequence[Sequence[object]]
) -> int:
    """Merge ``rows`` into ``spec.table`` inside the caller's transaction; return rows merged."""
    if not rows:
        return 0
    staging = f"pw_stage_{spec.table}"
    cols = ", ".join(spec.columns)
    async with conn.cursor() as cur:
        await cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
            f"(LIKE {spec.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        types = await _column_types(cur, staging, cols)
        # Binary COPY: about 4x faster than text for the same rows (measured, see README).
        async with cur.copy(f"COPY {staging} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                await copy.write_row(row)
        await cur.execute(spec.merge_sql(staging))
    return len(rows)


async def _column_types(cur: psycopg.AsyncCursor, table: str, cols: str) -> list[int]:
    """Type OIDs of ``cols`` in ``table`` (binary COPY needs them)."""
    await cur.execute(f"SELECT {cols} FROM {table} LIMIT 0")
    assert cur.description is not None
    return [c.type_code for c in cur.description]


def indicator_row(v: IndicatorValue, computed_at: datetime) -> tuple[object, ...]:
    return (
        v.indicator_id, v.scope_type, v.scope_code, v.breakdown, v.period_type, v.period_start,
        v.period_end, v.value, v.numerator, v.denominator, v.n, v.suppressed, v.ci_low,
        v.ci_high, v.period_complete, v.nowcast, v.pub_value, v.pub_numerator,
        v.pub_denominator, v.pub_n, v.pub_ci_low, v.pub_ci_high, v.pub_suppressed, computed_at,
    )  # fmt: skip


OfficialRow = tuple[str, date, int, str, datetime]


class RowsRejected(Exception):
    """PostgreSQL refused the rows themselves (a data or integrity error): retrying cannot help."""


class DatabaseGaveUp(RuntimeError):
    """The database stayed unavailable for longer than the sink retries."""


class DatabaseLimitExceeded(RuntimeError):
    """The server refused the write for a configured limit (SQLSTATE 53400): the same write
    would fail the same way on every retry, so the sink raises instead (the worker stops)."""


# TimescaleDB's cap on the tuples one INSERT/UPDATE/DELETE transaction may decompress from
# compressed chunks: an ON CONFLICT DO UPDATE that lands in a compressed chunk decompresses
# every batch (up to 1 000 rows) that may hold a key (2.28 checks DO NOTHING, the arrivals'
# merge, without decompressing). Its default (100 000) guards memory in interactive sessions;
# the sink's transactions are bounded by its batch size, and a replay or late data landing in
# compressed chunks must not fail for it, so the sink lifts the cap for its session (0: none).
TIMESCALE_DECOMPRESSION_LIMIT = "timescaledb.max_tuples_decompressed_per_dml_transaction"


# How each database error is treated (psycopg's classes follow the SQLSTATE classes):
# - retried: an outage (OperationalError: connection lost, server shutting down, a statement
#   cancelled by statement_timeout, a serialization failure or deadlock), and a server that has
#   become read-only in a failover (25006, an InternalError);
# - limit: a configured limit was exceeded (53400, e.g. TimescaleDB's decompression cap; psycopg
#   classes it as an OperationalError, but it is no outage): raised as DatabaseLimitExceeded,
#   never retried, since the same write would exceed it again;
# - rejected: the rows themselves are wrong (DataError, IntegrityError): retrying cannot help,
#   the offending records become dead letters (write_records);
# - anything else is a bug or a broken schema (ProgrammingError...): raised, and the worker
#   stops (streams/failures.py).
# What a retry may cure: the database down, busy or failing over (processors/retry.py).
RETRIED_KINDS = frozenset({"timeout", "read_only", "outage"})


def transient(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and error_kind(exc) in RETRIED_KINDS


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "timeout"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "read_only"
    if isinstance(exc, psycopg.errors.ConfigurationLimitExceeded):
        return "limit"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return "outage"
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return "rejected"
    return "fatal"


def connection_options(statement_timeout_s: float) -> dict[str, object]:
    """Every worker connection: a statement that hangs is cancelled (and retried), and TCP
    keepalives notice a peer that vanished without closing the connection."""
    return {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "options": f"-c statement_timeout={int(statement_timeout_s * 1000)}",
    }


class Sink:
    """One connection, retried (bounded) until the batch is durable."""

    def __init__(
        self,
        database_url: str,
        max_backoff_s: float = 10.0,
        give_up_after_s: float = 600.0,
        statement_timeout_s: float = 120.0,
        record_keys: Callable[[str], int] | None = None,
    ) -> None:
        self._url = database_url
        # Surveys' arrival rows carry their record key (the public arrivals are perturbed).
        self._record_keys = record_keys
        self._conn: psycopg.AsyncConnection | None = None
        self._max_backoff_s = max_backoff_s
        self._give_up_after_s = give_up_after_s
        self._options = connection_options(statement_timeout_s)
        # One connection, one staging table: two coroutines writing at once would mix their
        # rows in it. Writers that must not wait for each other use separate sinks.
        self._lock: asyncio.Lock | None = None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, **self._options)  # type: ignore[arg-type]
            except psycopg.OperationalError as e:
                # A certificate that does not verify is configuration, not an outage: stop
                # with the fix instead of retrying it for PALLIWATCH_DB_RETRY_SECONDS.
                tls = tls_problem(e, self._url)
                if tls is not None:
                    raise DatabaseTLSError(tls) from None
                raise
            try:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
                    if await cur.fetchone() is not None:
                        await cur.execute(f"SET {TIMESCALE_DECOMPRESSION_LIMIT} = 0")
                await conn.commit()
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def write(self, batches: Sequence[tuple[UpsertSpec, Sequence[Sequence[object]]]]) -> None:
        """Merge every (spec, rows) pair in one transaction; retry until it commits. Raises
        RowsRejected when the database refuses the rows, DatabaseGaveUp after a long outage."""
        expanded = list(batches)
        for spec, rows in batches:
            if spec is INDICATORS and rows:
                expanded.append((INDICATOR_CURRENT, latest_per_series(rows)))
        work = [(spec, dedupe_last(spec, rows)) for spec, rows in expanded if rows]
        if not work:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            await self._write(work)

    async def write_records(self, records: Sequence[object]) -> list[tuple[int, str]]:
        """Store validated records' fact rows in one transaction. When the database refuses
        the batch, each record is written alone to find the ones it refuses; returns those
        (index, redacted error), the rest are durable."""
        rows = FactRows(self._record_keys)
        for record in records:
            rows.add(record)
        try:
            await self.write(rows.batches())
            return []
        except RowsRejected:
            pass
        rejected: list[tuple[int, str]] = []
        for i, record in enumerate(records):
            one = FactRows(self._record_keys)
            one.add(record)
            try:
                await self.write(one.batches())
            except RowsRejected as e:
                rejected.append((i, str(e)))
        return rejected

    async def _write(self, work: list[tuple[UpsertSpec, list[Sequence[object]]]]) -> None:
        started = time.perf_counter()
        policy = retry.database_outage(
            transient=transient,
            give_up_after_s=self._give_up_after_s,
            max_backoff_s=self._max_backoff_s,
            before_sleep=self._before_retry,
        )
        try:
            async for attempt in policy:
                with attempt:
                    await self._write_once(work)
        except psycopg.Error as e:
            if not transient(e):
                refusal = self._refusal(e)
                if refusal is e:
                    raise
                raise refusal from e
            waited = time.perf_counter() - started
            raise DatabaseGaveUp(
                f"database at {redact_url(self._url)} unavailable for {waited:.0f} s "
                f"({type(e).__name__}); check PostgreSQL (`palliwatch services status`)"
            ) from e
        metrics.SINK_STALLED.set(0)
        metrics.SINK_LAST_SUCCESS.set_to_current_time()
        metrics.SINK_SECONDS.observe(time.perf_counter() - started)
        for spec, rows in work:
            metrics.ROWS_WRITTEN.labels(spec.table).inc(len(rows))

    async def _write_once(self, work: list[tuple[UpsertSpec, list[Sequence[object]]]]) -> None:
        try:
            conn = await self._connection()
            async with conn.transaction():
                for spec, rows in work:
                    await copy_upsert(conn, spec, rows)
        except psycopg.Error as e:
            metrics.DATABASE_ERRORS.labels(error_kind(e)).inc()
            raise

    def _refusal(self, e: psycopg.Error) -> BaseException:
        """The error to raise for a failure retrying cannot help."""
        kind = error_kind(e)
        if kind == "rejected":
            detail = e.diag.message_primary or str(e)
            return RowsRejected(f"{type(e).__name__} ({e.sqlstate}): {redact(detail)[:300]}")
        if kind == "limit":
            return DatabaseLimitExceeded(
                f"database at {redact_url(self._url)} refused the write: "
                f"{redact(e.diag.message_primary or str(e))[:300]} (SQLSTATE 53400). "
                "Retrying cannot help: raise the setting the message names for the "
                "worker's role or database (e.g. temp_file_limit; TimescaleDB's "
                f"{TIMESCALE_DECOMPRESSION_LIMIT} the sink already sets to 0, no "
                "limit, for its own session), then restart the worker"
            )
        return e  # fatal: as it is

    async def _before_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        metrics.SINK_RETRIES.inc()
        metrics.SINK_STALLED.set(1)
        log.error(
            "database write failed at %s (%s, %s); retrying in %.1fs - check that "
            "PostgreSQL is up and writable (`palliwatch services status`)",
            redact_url(self._url),
            error_kind(error) if error is not None else "?",
            type(error).__name__,
            state.upcoming_sleep,
        )
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


# ---- validated records as facts --------------------------------------------------------------

SURVEYS = UpsertSpec(
    "surveys",
    (
        "survey_id", "revision", "status", "submitted_at", "unit_id", "region_code",
        "municipality_code", "person_ref", "date_of_death", "sex", "age_years", "ses_quintile",
        "diagnosis_group", "expected_death", "place_of_death", "care_setting",
        "palliative_consult", "measures",
    ),
    key=("survey_id",),
    replace_when="surveys.revision < EXCLUDED.revision",
)  # fmt: skip
SURVEY_ARRIVALS = UpsertSpec(
    "survey_arrivals",
    ("submitted_at", "region_code", "survey_id", "revision", "record_key"),
    key=("survey_id", "revision", "submitted_at"),
    do_nothing=True,
)
UNIT_EVENTS = UpsertSpec(
    "unit_events",
    (
        "unit_id", "effective_date", "event", "region_code", "municipality_code", "name", "kind",
        "catchment_municipalities", "beds", "hours", "accepts_all_diagnoses", "accepts_children",
        "max_prognosis_months", "written_mandate", "staff_fte",
    ),
    key=("unit_id", "effective_date"),
)  # fmt: skip
POPULATION = UpsertSpec(
    "population", ("municipality_code", "year", "population"), key=("municipality_code", "year")
)
TARGETS = UpsertSpec(
    "targets",
    ("indicator_id", "scope", "comparator", "value", "warn_value", "valid_from", "source"),
    key=("indicator_id", "scope", "valid_from"),
)


class FactRows:
    """Validated records' fact rows, grouped by table for one ``Sink.write``."""

    def __init__(self, record_keys: Callable[[str], int] | None = None) -> None:
        self._by_table: dict[str, tuple[UpsertSpec, list[tuple[object, ...]]]] = {}
        self._record_keys = record_keys

    def add(self, model: object) -> None:
        for upsert, row in fact_rows(model, self._record_keys):
            self._by_table.setdefault(upsert.table, (upsert, []))[1].append(row)

    def batches(self) -> list[tuple[UpsertSpec, list[tuple[object, ...]]]]:
        return list(self._by_table.values())


def fact_rows(
    model: object, record_keys: Callable[[str], int] | None = None
) -> list[tuple[UpsertSpec, tuple[object, ...]]]:
    """The rows a validated contract record becomes (pure; no database). A survey needs
    ``record_keys`` (person_ref -> record key): its arrival row carries the key."""
    from psycopg.types.json import Jsonb

    from schemas.models import DeathSurvey, Population, Target, UnitEvent

    if isinstance(model, DeathSurvey):
        s = model
        if record_keys is None:
            raise TypeError("a survey's fact rows need its record key: pass record_keys")
        return [
            (
                SURVEYS,
                (
                    s.survey_id, s.revision, s.status, s.submitted_at, s.unit_id, s.region_code,
                    s.municipality_code, s.person_ref, s.date_of_death, s.sex, s.age_years,
                    s.ses_quintile, s.diagnosis_group, s.expected_death, s.place_of_death,
                    s.care_setting, s.palliative_consult, Jsonb(s.measures.model_dump()),
                ),
            ),
            (SURVEY_ARRIVALS,
             (s.submitted_at, s.region_code, s.survey_id, s.revision, record_keys(s.person_ref))),
        ]  # fmt: skip
    if isinstance(model, UnitEvent):
        u = model
        return [
            (
                UNIT_EVENTS,
                (
                    u.unit_id, u.effective_date, u.event, u.region_code, u.municipality_code,
                    u.name, u.kind, list(u.catchment_municipalities), u.beds, u.hours,
                    u.accepts_all_diagnoses, u.accepts_children, u.max_prognosis_months,
                    u.written_mandate, Jsonb(u.staff_fte.model_dump()),
                ),
            )
        ]  # fmt: skip
    if isinstance(model, Population):
        return [(POPULATION, (model.municipality_code, model.year, model.population))]
    if isinstance(model, Target):
        t = model
        return [
            (
                TARGETS,
                (t.indicator_id, t.scope, t.comparator, t.value, t.warn_value, t.valid_from,
                 t.source),
            )
        ]  # fmt: skip
    return []
