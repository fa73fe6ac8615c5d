"""Benchmarks that print figures (never timed tests).

`palliwatch bench storage`: sink throughput (COPY-staged upserts through the real Sink) and
dashboard query latency on a database loaded with 10 years x every scope x indicators x
period types. Runs in its own database (palliwatch_bench), dropped and recreated each time.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import psycopg
from psycopg.conninfo import make_conninfo

from processors.catalogue import default_catalogue
from processors.core import add_months, month_first_day, month_last_day
from processors.db import migrate
from processors.sink import INDICATORS, Sink
from schemas.audiences import NATIONAL_ROLE
from schemas.codes import municipalities, regions
from streams.settings import Settings, local_password

BENCH_DB = "palliwatch_bench"
# The indicators tagged `bench` in the catalogue (20: the population and process indicators of
# domain.md, palliative beds and specialist physicians per 100 000).
INDICATOR_IDS = tuple(i.id for i in default_catalogue().tagged("bench"))

NATIONAL_OVERVIEW = """
SELECT scope_code, indicator_id, value, n, target, status
FROM published.indicator_latest
WHERE scope_type IN ('nation', 'region') AND period_type = 'rolling_12m' AND breakdown = 'all'
"""
# The same overview on the exact layer, as the national operator: row-level security's cost.
EXACT_OVERVIEW = NATIONAL_OVERVIEW.replace("published.", "exact.")
REGION_SERIES = """
SELECT period_end, value, ci_low, ci_high, target
FROM published.indicator_series
WHERE scope_type = 'region' AND scope_code = %s AND indicator_id = %s
  AND period_type = 'month' AND breakdown = 'all'
  AND period_end BETWEEN %s AND %s
ORDER BY period_end
"""


def scopes() -> list[tuple[str, str]]:
    return (
        [("nation", "SE")]
        + [("region", r) for r in regions()]
        + [("municipality", m) for m in municipalities()]
    )


def periods(first: str, months: int) -> Iterator[tuple[str, date, date]]:
    for k in range(months):
        m = add_months(first, k)
        yield "month", month_first_day(m), month_last_day(m)
        yield "rolling_12m", month_first_day(add_months(m, -11)), month_last_day(m)
        if int(m[5:7]) % 3 == 0:
            yield "quarter", month_first_day(add_months(m, -2)), month_last_day(m)
        if m.endswith("-12"):
            yield "year", month_first_day(add_months(m, -11)), month_last_day(m)


def rows(first: str, months: int, computed_at: datetime) -> Iterator[tuple[object, ...]]:
    for scope_type, code in scopes():
        for i, ind in enumerate(INDICATOR_IDS):
            for k, (ptype, start, end) in enumerate(periods(first, months)):
                n = 50 + (k * 7 + i * 13) % 900
                num = n * (0.5 + ((k + i) % 40) / 100)
                suppressed = scope_type == "municipality" and (k + i) % 17 == 0
                yield (
                    ind, scope_type, code, "all", ptype, start, end,
                    None if suppressed else num / n, None if suppressed else num,
                    None if suppressed else n, None if suppressed else n, suppressed,
                    None if suppressed else num / n - 0.03,
                    None if suppressed else num / n + 0.03, True, None,
                    # Public figures: the perturbed counts' share (a shifted count here).
                    None if suppressed else (num + 1) / (n + 1),
                    None if suppressed else num + 1, None if suppressed else n + 1,
                    None if suppressed else n + 1,
                    None if suppressed else num / n - 0.031,
                    None if suppressed else num / n + 0.031, suppressed, computed_at,
                )  # fmt: skip


def _is_hypertable(conn: psycopg.Connection, table: str) -> bool:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", (table,)
    ).fetchone()
    return row is not None


def _table_bytes(conn: psycopg.Connection, table: str, hypertable: bool) -> int:
    """Table, indexes and TOAST. A hypertable's rows live in its chunks: the parent alone is
    empty (pg_total_relation_size gives a few kB), hypertable_size() sums the chunks."""
    size = "hypertable_size" if hypertable else "pg_total_relation_size"
    row = conn.execute(f"SELECT {size}(%s::regclass)", (table,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def bench_storage(
    base: Settings,
    years: int = 10,
    runs: int = 5,
    sink_rows: int = 200_000,
    db_name: str = BENCH_DB,
    query_runs: int = 60,
) -> dict[str, object]:
    """The figures of README's Benchmarks; the tests run it at a tiny size (tests/test_bench.py)."""
    # The owner makes and migrates the database; the sink writes as the writer, the bulk load
    # (TRUNCATE, refresh_indicator_current) is the owner's repair tool.
    with psycopg.connect(base.owner_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    s = base.in_database(db_name)
    migrate(s.database)
    now = datetime.now(UTC)
    months = years * 12
    first = add_months(now.strftime("%Y-%m"), -months)
    results: dict[str, object] = {"years": years}

    # -- sink throughput: the real Sink, 10 000-row batches, new rows then the same rows again
    sink_batch = 10_000
    sample = list(rows(first, 24, now))[:sink_rows]
    sink = Sink(s.database_url)

    value_at = INDICATORS.columns.index("value")

    def changed(run: int) -> list[tuple[object, ...]]:
        # Every row's value differs from the previous pass: the worst case for the upsert.
        return [
            r if r[value_at] is None else r[:value_at] + (run / 1000.0,) + r[value_at + 1 :]
            for r in sample
        ]

    async def one_pass(data: list[tuple[object, ...]]) -> float:
        t0 = time.perf_counter()
        for i in range(0, len(data), sink_batch):
            await sink.write([(INDICATORS, data[i : i + sink_batch])])
        return len(data) / (time.perf_counter() - t0)

    async def all_passes() -> tuple[float, list[float], float]:
        insert = await one_pass(changed(0))
        print(f"[bench] sink insert pass: {insert:,.0f} rows/s", flush=True)
        updates = []
        for run in range(1, runs + 1):
            updates.append(await one_pass(changed(run)))
            print(f"[bench] sink update pass {run}/{runs}: {updates[-1]:,.0f} rows/s", flush=True)
        replay = await one_pass(changed(runs))
        print(f"[bench] sink identical replay: {replay:,.0f} rows/s", flush=True)
        await sink.close()
        return insert, updates, replay

    insert, updates, replay = asyncio.run(all_passes())
    results["sink_rows"] = len(sample)
    results["sink_batch"] = sink_batch
    results["sink_insert_rows_per_s"] = insert
    results["sink_update_rows_per_s_median"] = statistics.median(updates)
    results["sink_identical_replay_rows_per_s"] = replay

    # -- load 10 years of everything with plain COPY, then the dashboard queries
    t0 = time.perf_counter()
    loaded = 0
    with psycopg.connect(s.owner_url) as conn:
        conn.execute("TRUNCATE indicator_values, indicator_current")
        cols = ", ".join(INDICATORS.columns)
        with conn.cursor().copy(f"COPY indicator_values ({cols}) FROM STDIN") as copy:
            for row in rows(first, months, now):
                copy.write_row(row)
                loaded += 1
                if loaded % 250_000 == 0:
                    print(f"[bench] loaded {loaded:,} rows", flush=True)
        conn.commit()
        conn.execute("SELECT refresh_indicator_current()")
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
        results["loaded_rows"] = loaded
        results["load_seconds"] = time.perf_counter() - t0
        hypertable = _is_hypertable(conn, "indicator_values")
        results["timescaledb"] = hypertable
        results["table_bytes"] = _table_bytes(conn, "indicator_values", hypertable)
        pretty = conn.execute("SELECT pg_size_pretty(%s::bigint)", (results["table_bytes"],))
        results["table_size"] = pretty.fetchone()[0]  # type: ignore[index]
        results["scopes"] = len(scopes())
        results["indicators"] = len(INDICATOR_IDS)

        def timed(sql: str, params: tuple[object, ...] = (), n: int = query_runs) -> list[float]:
            out = []
            conn.execute(sql, params).fetchall()  # warm
            for _ in range(n):
                t = time.perf_counter()
                conn.execute(sql, params).fetchall()
                out.append((time.perf_counter() - t) * 1000)
            return out

        overview = timed(NATIONAL_OVERVIEW)
        series = timed(
            REGION_SERIES,
            (
                "14",
                "eol_conversation",
                month_first_day(first),
                month_last_day(add_months(first, months)),
            ),
        )
        results["overview_rows"] = len(conn.execute(NATIONAL_OVERVIEW).fetchall())
        results["overview_ms_median"] = statistics.median(overview)
        results["overview_ms_p95"] = _p(overview, 0.95)
        results["series_ms_median"] = statistics.median(series)
        results["series_ms_p95"] = _p(series, 0.95)
    national = make_conninfo(
        s.database_url, user=NATIONAL_ROLE, password=local_password(NATIONAL_ROLE)
    )
    with psycopg.connect(national) as conn:
        exact = []
        conn.execute(EXACT_OVERVIEW).fetchall()  # warm
        for _ in range(query_runs):
            t = time.perf_counter()
            got = conn.execute(EXACT_OVERVIEW).fetchall()
            exact.append((time.perf_counter() - t) * 1000)
        results["exact_overview_rows"] = len(got)
        results["exact_overview_ms_median"] = statistics.median(exact)
        results["exact_overview_ms_p95"] = _p(exact, 0.95)
    print(json.dumps(results, indent=2, default=str), flush=True)
    return results
