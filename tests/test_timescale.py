"""The migrations' TimescaleDB branch on a real TimescaleDB server, and its fallback where
TimescaleDB is installed but not preloaded (issue 16). Skipped, saying which variable to set,
where no such server is configured (tests/timescale_helpers.py); CI has plain PostgreSQL only.

The panel and alert queries and the reader roles run on TimescaleDB too: test_grafana_queries.py
and test_reader_roles.py run each of their tests on both backends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from processors import metrics
from processors.db import drop_database, migrate
from processors.sink import (
    SURVEY_ARRIVALS,
    TIMESCALE_DECOMPRESSION_LIMIT,
    DatabaseLimitExceeded,
    Sink,
    error_kind,
)
from schemas.audiences import NATIONAL_ROLE, PUBLIC_ROLE
from streams import settings as settings_mod
from streams.settings import MIGRATIONS_DIR, local_password
from tests import timescale_helpers as tsh
from tests.conftest import Isolated
from tests.timescale_helpers import fresh_database, old_migrations

# The helpers' fixtures, for this module (assigned, not imported: they are arguments below).
timescale_url = tsh.timescale_url
timescale_isolated = tsh.timescale_isolated
unpreloaded_url = tsh.unpreloaded_url

pytestmark = pytest.mark.integration

REGIONS = ("01", "12", "25")


def role_url(url: str, role: str) -> str:
    return f"postgresql://{role}:{local_password(role)}@{url.split('@', 1)[1]}"


def arrival_rows(now: datetime, days: int = 365) -> list[tuple[object, ...]]:
    """A backfill of three regions: 0-9 revisions a day each (generated ids and keys). 01 sent
    last today, 12 three days ago, 25 ten days ago. Past days' arrivals fall in the day's
    morning, so a run near midnight still puts each in the day it means."""
    rows: list[tuple[object, ...]] = []
    last = {"01": 0, "12": 3, "25": 10}
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for d in range(days, -1, -1):
        for i, region in enumerate(REGIONS):
            if d < last[region]:
                continue
            for k in range((d * 7 + i * 3) % 10 or (1 if d == last[region] else 0)):
                if d == 0:
                    at = now - timedelta(seconds=k + i)
                else:
                    at = midnight - timedelta(days=d) + timedelta(hours=1, minutes=11 * k + i)
                rows.append((at, region, f"arr-{region}-{d}-{k}", 1, (d * 1_000_003 + k) % 2**32))
    return rows


def write(url: str, spec, rows) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        sink = Sink(url)
        try:
            await sink.write([(spec, rows)])
        finally:
            await sink.close()

    asyncio.run(go())


def truth(conn: psycopg.Connection) -> dict[tuple[datetime, str], int]:
    return {
        (r[0], r[1]): int(r[2])
        for r in conn.execute(
            "SELECT date_trunc('day', submitted_at), region_code, count(*) "
            "FROM survey_arrivals GROUP BY 1, 2"
        )
    }


def aggregate(conn: psycopg.Connection) -> dict[tuple[datetime, str], int]:
    return {
        (r[0], r[1]): int(r[2])
        for r in conn.execute("SELECT day, region_code, revisions FROM survey_arrivals_daily")
    }


def refresh_job(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_refresh_continuous_aggregate'"
    ).fetchone()
    assert row is not None, "no refresh policy on survey_arrivals_daily"
    return int(row[0])


def materialized(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT format('%I.%I', materialization_hypertable_schema, "
        "materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'survey_arrivals_daily'"
    ).fetchone()
    assert row is not None
    counted = conn.execute(f"SELECT count(*) FROM {row[0]}").fetchone()
    return int(counted[0]) if counted else 0


# ---- the TimescaleDB branch -------------------------------------------------------------------


def test_migrations_take_the_timescale_branch(timescale_isolated: Isolated) -> None:
    with psycopg.connect(timescale_isolated.settings.database_url) as conn:
        hypertables = {
            r[0]
            for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = 'public'"
            )
        }
        assert hypertables == {"indicator_values", "survey_arrivals"}
        segmentby = conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings "
            "WHERE hypertable_name = 'survey_arrivals' AND segmentby_column_index IS NOT NULL"
        ).fetchall()
        assert segmentby == [("region_code",)]
        # Real-time, and refreshed over the whole history (issue 16).
        assert conn.execute(
            "SELECT materialized_only FROM timescaledb_information.continuous_aggregates "
            "WHERE view_name = 'survey_arrivals_daily'"
        ).fetchone() == (False,)
        config = conn.execute(
            "SELECT config FROM timescaledb_information.jobs WHERE job_id = %s",
            (refresh_job(conn),),
        ).fetchone()
        assert config is not None and config[0]["start_offset"] is None
        # No BRIN fallback indexes on this branch.
        brin = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%brin' ORDER BY 1"
        ).fetchall()
        assert brin == [("surveys_death_brin",)]


def test_arrivals_aggregate_holds_every_day_written_before_and_after_its_refresh(
    timescale_isolated: Isolated,
) -> None:
    """Issue 16: after a 12-month backfill the aggregate held only the policy's last 30 whole
    days (575 of 7 062 rows), and survey_silence flagged a region that sent today."""
    url = timescale_isolated.settings.database_url
    now = datetime.now(UTC)
    write(url, SURVEY_ARRIVALS, arrival_rows(now))
    with psycopg.connect(url, autocommit=True) as conn:
        want = truth(conn)
        assert len(want) > 700  # a year of three regions' days
        assert aggregate(conn) == want  # right after the writes (real-time)

        conn.execute("CALL run_job(%s)", (refresh_job(conn),))  # the policy, as scheduled
        assert materialized(conn) >= len(want) - len(REGIONS)  # all but today's open buckets
        assert aggregate(conn) == want

        # Compressed chunks read the same; a late arrival after the refresh shows at once.
        conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('survey_arrivals', "
            "older_than => interval '30 days') c"
        )
        write(url, SURVEY_ARRIVALS, [(now, "12", "arr-12-late", 1, 77)])
        want = truth(conn)
        assert aggregate(conn) == want

    # The public role reads every day (perturbed, small days suppressed) with no table grant.
    with psycopg.connect(role_url(url, PUBLIC_ROLE), autocommit=True) as conn:
        public = {
            (r[0], r[1]): r[2]
            for r in conn.execute(
                "SELECT day, region_code, revisions FROM published.survey_arrivals_daily"
            )
        }
        assert set(public) == set(want)
        assert any(v is not None for v in public.values())
        for relation in ("survey_arrivals_daily", "survey_arrivals"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM public.{relation} LIMIT 1")

    # The silence alert as the operator sees it: 01 sent today, 12 today (late), 25 ten days ago.
    with psycopg.connect(role_url(url, NATIONAL_ROLE), autocommit=True) as conn:
        silence = {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT region, days_silent, breach FROM exact.survey_silence(7)")
        }
    assert silence["01"] == (0, 0) and silence["12"] == (0, 0)
    assert silence["25"] == (10, 1)


# ---- the sink into compressed chunks ---------------------------------------------------------

# An arrivals upsert that rewrites conflicting rows: on TimescaleDB 2.28 ON CONFLICT DO NOTHING
# (the sink's arrivals) checks compressed batches without decompressing them, DO UPDATE
# decompresses every batch that may hold a key (1 000 rows a batch), which is what the cap counts.
REWRITING_ARRIVALS = dataclasses.replace(SURVEY_ARRIVALS, do_nothing=False)


@pytest.fixture
def compressed(timescale_isolated: Isolated) -> Iterator[tuple[str, list[tuple[object, ...]]]]:
    """2 000 arrivals 60 days ago, their chunk compressed, and a cap of 10 decompressed tuples
    per transaction for every new session of the database."""
    url = timescale_isolated.settings.database_url
    at = datetime.now(UTC) - timedelta(days=60)
    rows: list[tuple[object, ...]] = [
        (at - timedelta(seconds=i), "01", f"old-{i}", 1, i) for i in range(2000)
    ]
    write(url, SURVEY_ARRIVALS, rows)
    with psycopg.connect(url, autocommit=True) as conn:
        n = conn.execute(
            "SELECT count(compress_chunk(c)) FROM show_chunks('survey_arrivals', "
            "older_than => interval '30 days') c"
        ).fetchone()
        assert n is not None and n[0] >= 1
        conn.execute(
            f'ALTER DATABASE "{timescale_isolated.db_name}" '
            f"SET {TIMESCALE_DECOMPRESSION_LIMIT} = 10"
        )
    yield url, rows


def test_the_sink_writes_into_compressed_chunks_past_a_small_decompression_cap(
    compressed: tuple[str, list[tuple[object, ...]]],
) -> None:
    url, rows = compressed
    replay = [r[:4] + (int(r[4]) + 1,) for r in rows]  # type: ignore[call-overload]
    # The same statement in an ordinary session exceeds the cap: SQLSTATE 53400, which psycopg
    # classes as an OperationalError (an outage, to a naive sink).
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TEMP TABLE stage (LIKE survey_arrivals INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with conn.cursor().copy(
            "COPY stage (submitted_at, region_code, survey_id, revision, record_key) FROM STDIN"
        ) as copy:
            for r in replay[:50]:
                copy.write_row(r)
        with pytest.raises(psycopg.OperationalError) as raised:
            conn.execute(REWRITING_ARRIVALS.merge_sql("stage"))
    assert raised.value.sqlstate == "53400"
    assert error_kind(raised.value) == "limit"

    # The sink lifts the cap for its own session: the whole replay is merged.
    write(url, REWRITING_ARRIVALS, replay)
    with psycopg.connect(url) as conn:
        got = conn.execute(
            "SELECT count(*), sum(record_key) FROM survey_arrivals WHERE survey_id LIKE 'old-%'"
        ).fetchone()
    assert got == (2000, sum(int(r[4]) for r in replay))  # type: ignore[call-overload]


def test_a_decompression_cap_the_sink_meets_anyway_is_raised_not_retried(
    compressed: tuple[str, list[tuple[object, ...]]],
) -> None:
    """Were the cap lowered inside the sink's transaction (here by a statement trigger), the
    sink raises at once, naming the setting: retrying the same write cannot succeed."""
    url, rows = compressed
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"""CREATE FUNCTION lower_cap() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM set_config('{TIMESCALE_DECOMPRESSION_LIMIT}', '10', true);
                    RETURN NULL;
                END $$"""
        )
        conn.execute(
            "CREATE TRIGGER lower_cap BEFORE INSERT ON survey_arrivals "
            "FOR EACH STATEMENT EXECUTE FUNCTION lower_cap()"
        )
    retries = metrics.SINK_RETRIES._value.get()
    limits = metrics.DATABASE_ERRORS.labels("limit")._value.get()
    replay = [r[:4] + (int(r[4]) + 1,) for r in rows]  # type: ignore[call-overload]

    async def go() -> None:
        sink = Sink(url, give_up_after_s=600)
        try:
            await asyncio.wait_for(sink.write([(REWRITING_ARRIVALS, replay)]), timeout=30)
        finally:
            await sink.close()

    with pytest.raises(DatabaseLimitExceeded, match=TIMESCALE_DECOMPRESSION_LIMIT):
        asyncio.run(go())
    assert metrics.SINK_RETRIES._value.get() == retries
    assert metrics.DATABASE_ERRORS.labels("limit")._value.get() == limits + 1


# ---- an existing database migrated before the corrections ------------------------------------


def test_a_database_migrated_with_the_original_0002_and_0005_still_migrates(
    timescale_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    name, url = fresh_database(timescale_url)
    s = settings_mod.load().replace(database_url=url, owner_database_url=url)
    try:
        applied = migrate(s.database, old_migrations(tmp_path))
        assert applied[-1] == "0005_disclosure.sql"
        with psycopg.connect(url) as conn:
            assert conn.execute(
                "SELECT materialized_only FROM timescaledb_information.continuous_aggregates"
            ).fetchone() == (True,)
        assert migrate(s.database) == [
            p.name for p in sorted(MIGRATIONS_DIR.glob("000[6-9]_*.sql"))
        ]
        with psycopg.connect(url) as conn:
            assert conn.execute(
                "SELECT materialized_only FROM timescaledb_information.continuous_aggregates"
            ).fetchone() == (False,)
    finally:
        drop_database(timescale_url, name)


# ---- installed but not preloaded: the plain PostgreSQL fallback ------------------------------


def test_timescaledb_installed_but_not_preloaded_falls_back_to_plain_postgresql(
    unpreloaded_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    name, url = fresh_database(unpreloaded_url)
    s = settings_mod.load().replace(database_url=url, owner_database_url=url)
    try:
        with caplog.at_level(logging.WARNING, logger="palliwatch.db"):
            applied = migrate(s.database)
        assert applied == [
            p.name for p in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
        ]
        assert any("not in shared_preload_libraries" in r.getMessage() for r in caplog.records), (
            caplog.text
        )
        now = datetime.now(UTC)
        write(url, SURVEY_ARRIVALS, arrival_rows(now, days=20))
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT extname FROM pg_extension").fetchall() == [("plpgsql",)]
            assert conn.execute(
                "SELECT relkind FROM pg_class WHERE relname = 'survey_arrivals_daily'"
            ).fetchone() == ("v",)  # a plain view, not a continuous aggregate
            brin = {
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%brin'"
                )
            }
            assert {"indicator_values_period_brin", "survey_arrivals_brin"} <= brin
            assert aggregate(conn) == truth(conn)
            # Row-level security on the arrivals too (not possible on a compressed hypertable).
            assert conn.execute(
                "SELECT relrowsecurity FROM pg_class WHERE relname = 'survey_arrivals'"
            ).fetchone() == (True,)
        # A second migrate finds nothing to do (the session survived: no FATAL).
        assert migrate(s.database) == []
    finally:
        drop_database(unpreloaded_url, name)


def test_the_fallback_keeps_the_silence_alert_right(unpreloaded_url: str) -> None:
    name, url = fresh_database(unpreloaded_url)
    try:
        migrate(settings_mod.load().replace(database_url=url, owner_database_url=url).database)
        write(url, SURVEY_ARRIVALS, arrival_rows(datetime.now(UTC), days=30))
        with psycopg.connect(role_url(url, NATIONAL_ROLE)) as conn:
            silence = {
                r[0]: (r[1], r[2])
                for r in conn.execute(
                    "SELECT region, days_silent, breach FROM exact.survey_silence(7)"
                )
            }
        assert silence["01"] == (0, 0) and silence["12"] == (3, 0) and silence["25"] == (10, 1)
    finally:
        drop_database(unpreloaded_url, name)
