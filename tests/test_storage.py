"""Storage on the real local PostgreSQL: schema, roles, published views, idempotent sink,
and a database outage in the middle of a stream."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import psycopg
import pytest

from processors.core import IndicatorValue
from processors.db import SUPERSEDED, drop_database, migrate
from processors.sink import INDICATORS, Sink, fact_rows, indicator_row
from schemas.models import DeathSurvey
from schemas.topics import DEATH_SURVEYS, OFFICIAL_DEATHS
from streams import settings as cfg
from streams.settings import MIGRATIONS_DIR, Settings
from streams.tooling import services
from streams.tooling.producer import make_producer, send_records
from tests import timescale_helpers as tsh
from tests.conftest import TEST_AS_OF, Isolated, WorkerProcess, wait_for
from tests.histories import History
from tests.keys import KEYS
from tests.oracle_compare import db_rows, differences, oracle_of
from tests.pipeline_helpers import metric, person, survey

pytestmark = pytest.mark.integration


def reader_url(s: Settings) -> str:
    base = s.database_url.split("@", 1)[1]
    return f"postgresql://{cfg.LOCAL_DB_READER}:{cfg.LOCAL_DB_READER_PASSWORD}@{base}"


def value(ind: str, region: str, end: date, v: float | None, n: int | None, supp: bool = False):
    # The public figures equal the exact ones: these tests look at storage, not at the noise.
    row = IndicatorValue(
        ind, "region", region, "rolling_12m", date(end.year - 1, end.month, 1), end,
        value=v, numerator=None if supp else (v or 0) * (n or 0), denominator=None if supp else n,
        n=n, suppressed=supp,
    )  # fmt: skip
    return row.public_as_exact()


def write(s: Settings, batches) -> None:  # type: ignore[no-untyped-def]
    sink = Sink(s.database_url)

    async def go() -> None:
        await sink.write(batches)
        await sink.close()

    asyncio.run(go())


def test_schema_has_every_table_and_the_reader_sees_only_published_views(
    isolated: Isolated,
) -> None:
    s = isolated.settings
    with psycopg.connect(s.database_url) as conn:
        tables = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {
            "indicator_values", "surveys", "survey_arrivals", "unit_events", "regions",
            "municipalities", "population", "official_deaths", "targets", "alert_state",
            "schema_migrations",
        } <= tables  # fmt: skip
        assert conn.execute("SELECT count(*) FROM regions").fetchone() == (21,)
        assert conn.execute("SELECT count(*) FROM municipalities").fetchone() == (290,)
        published_cols = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema='published'"
            )
        }
        assert "person_ref" not in published_cols
    with psycopg.connect(reader_url(s)) as conn:
        assert conn.execute("SELECT count(*) FROM published.white_spots").fetchone() == (290,)
        for table in ("surveys", "indicator_values", "survey_arrivals"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM public.{table} LIMIT 1")
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO public.targets VALUES ('x','national','>=',1,null,'2020-01-01','t')"
            )


def test_sink_is_idempotent_and_published_status_follows_targets(isolated: Isolated) -> None:
    s = isolated.settings
    now = datetime.now(UTC)
    end = date(2025, 6, 30)
    rows = [
        indicator_row(value("registry_coverage", "01", end, 0.9, 1000), now),
        indicator_row(value("registry_coverage", "03", end, 0.6, 800), now),
        indicator_row(value("registry_coverage", "04", end, 0.75, 700), now),
        indicator_row(value("home_death_share", "09", end, None, None, supp=True), now),
    ]
    targets = [
        ("registry_coverage", "national", ">=", 0.8, 0.7, date(2020, 1, 1), "operator"),
        ("registry_coverage", "national", ">=", 0.95, 0.7, date(2026, 1, 1), "operator, raised"),
    ]
    from processors.sink import TARGETS

    for _ in range(2):  # twice: a replay leaves the tables as one write did
        write(s, [(INDICATORS, rows), (TARGETS, targets)])
    with psycopg.connect(s.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM indicator_values").fetchone() == (4,)
    with psycopg.connect(reader_url(s)) as conn:
        status = dict(
            conn.execute(
                "SELECT scope_code, status FROM published.indicator_latest "
                "WHERE indicator_id IN ('registry_coverage', 'home_death_share')"
            ).fetchall()
        )
        # 2025-06 uses the target valid then (0.8, warn 0.7), not the 2026 one.
        assert status == {"01": "meets", "03": "below", "04": "warn", "09": "suppressed"}
        supp = conn.execute(
            "SELECT value, numerator, n FROM published.indicator_series WHERE scope_code = '09'"
        ).fetchone()
        assert supp == (None, None, None)
        history = conn.execute(
            "SELECT valid_from, valid_to FROM published.targets_history "
            "WHERE indicator_id = 'registry_coverage' ORDER BY valid_from"
        ).fetchall()
        assert history == [(date(2020, 1, 1), date(2026, 1, 1)), (date(2026, 1, 1), None)]


def test_an_older_revision_never_replaces_a_newer_fact(isolated: Isolated) -> None:
    s = isolated.settings
    newer = DeathSurvey.model_validate(
        survey("F1", person("F1"), revision=3, place_of_death="own_home")
    )
    older = DeathSurvey.model_validate(survey("F1", person("F1"), revision=2))
    for model in (newer, older):
        write(s, [(spec, [row]) for spec, row in fact_rows(model, KEYS)])
    with psycopg.connect(s.database_url) as conn:
        assert conn.execute("SELECT revision, place_of_death FROM surveys").fetchall() == [
            (3, "own_home")
        ]
        assert conn.execute("SELECT count(*) FROM survey_arrivals").fetchone() == (2,)


def test_unit_events_feed_white_spots(isolated: Isolated, worker: WorkerProcess) -> None:
    s = isolated.settings
    unit = {
        "schema_version": 1, "unit_id": "U-1", "event": "upsert", "effective_date": "2024-01-01",
        "region_code": "09", "municipality_code": "0980", "name": "Jour Gotland",
        "kind": "on_call_line", "catchment_municipalities": ["0980"], "beds": 0, "hours": "24_7",
        "accepts_all_diagnoses": True, "accepts_children": True, "max_prognosis_months": None,
        "written_mandate": True, "staff_fte": {"nurses": 2.0},
    }  # fmt: skip
    from schemas.topics import UNIT_EVENTS

    producer = make_producer(s)
    send_records(producer, s, UNIT_EVENTS, [unit])
    producer.close()

    def gotland() -> tuple[object, ...] | None:
        with psycopg.connect(reader_url(s)) as conn:
            return conn.execute(
                "SELECT on_call_24_7, consult_team FROM published.white_spots "
                "WHERE municipality_code = '0980'"
            ).fetchone()

    assert wait_for(lambda: gotland() == (True, False), 60, "the unit in white_spots", worker)
    with psycopg.connect(reader_url(s)) as conn:
        visby_neighbours = conn.execute(
            "SELECT count(*) FROM published.white_spots WHERE on_call_24_7"
        ).fetchone()
    assert visby_neighbours == (1,)  # only the catchment municipality is covered


def test_database_outage_mid_stream_loses_nothing(
    isolated: Isolated, worker: WorkerProcess, local_stack: Settings
) -> None:
    if local_stack.database_external:
        pytest.fail(
            "this test stops and restarts PostgreSQL, which it only does to the local server "
            "palliwatch starts: unset PALLIWATCH_DATABASE_URL to run it"
        )
    s = isolated.settings
    months = ["2025-01", "2025-02", "2025-03"]
    official = [
        {"schema_version": 1, "region_code": "12", "month": m, "deaths": 1000,
         "source": "test", "published_at": "2025-04-05T08:00:00Z"}
        for m in months
    ]  # fmt: skip
    first = [survey(f"O{i}", person(f"O{i}"), month=months[i % 3], region_code="12",
                    municipality_code="1280") for i in range(40)]  # fmt: skip
    second = [survey(f"O{i}", person(f"O{i}"), month=months[i % 3], region_code="12",
                     municipality_code="1280") for i in range(40, 100)]  # fmt: skip
    producer = make_producer(s)
    send_records(producer, s, OFFICIAL_DEATHS, official)
    send_records(producer, s, DEATH_SURVEYS, first)

    def coverage_rows() -> dict[str, float]:
        try:
            with psycopg.connect(s.database_url, connect_timeout=2) as conn:
                return {
                    str(r[0]): r[1]
                    for r in conn.execute(
                        "SELECT period_end, numerator FROM indicator_values "
                        "WHERE indicator_id = 'registry_coverage' AND scope_code = '12' "
                        "AND period_type = 'rolling_12m'"
                    )
                }
        except psycopg.OperationalError:
            return {}

    wait_for(lambda: coverage_rows().get("2025-03-31") == 40, 90, "the first 40 surveys", worker)
    services.pg_down(local_stack)
    try:
        send_records(producer, s, DEATH_SURVEYS, second)
        # The worker keeps running, stalls and retries while the database is away.
        wait_for(
            lambda: metric(s, "palliwatch_sink_retries_total") >= 2, 60, "sink retries", worker
        )
        assert metric(s, "palliwatch_sink_stalled") == 1.0
    finally:
        services.pg_up(local_stack)
    producer.close()
    wait_for(lambda: coverage_rows().get("2025-03-31") == 100, 90, "recovery", worker)
    assert metric(s, "palliwatch_sink_stalled") == 0.0
    worker.assert_alive()

    # Everything equals the batch oracle: nothing lost, nothing counted twice.
    # The fact store has its own sink and backoff: it recovers on its own schedule.
    def facts() -> int:
        with psycopg.connect(s.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM surveys").fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: facts() == 100, 60, "all 100 survey facts after the outage", worker)
    want = oracle_of(History(admitted=first + second, official=official), TEST_AS_OF)
    assert differences(db_rows(s.database_url), want) == []


def test_a_database_migrated_with_the_released_0002_still_migrates(
    local_stack: Settings, tmp_path: Path
) -> None:
    """0002_storage.sql was corrected for servers with TimescaleDB installed but not preloaded
    (issue 16), on which the released text could not run. A database that recorded the
    released text's digest migrates on; any other edit of an applied migration is refused."""
    current = hashlib.sha256((MIGRATIONS_DIR / "0002_storage.sql").read_bytes()).hexdigest()
    assert set(SUPERSEDED["0002_storage.sql"].values()) == {current}, (
        "0002_storage.sql changed again: databases migrated with an earlier text would refuse "
        "it; put the change in a new migration"
    )
    admin = local_stack.owner_url
    name, url = tsh.fresh_database(admin, prefix="palliwatch_test_old0002")
    s = local_stack.replace(database_url=url, owner_database_url=url)
    try:
        before = migrate(s.database, tsh.old_migrations(tmp_path))
        assert before[1] == "0002_storage.sql" and before[-1] == "0005_disclosure.sql"
        applied = migrate(s.database)
        assert applied and all(n > "0005" for n in applied)
        with psycopg.connect(url) as conn:
            recorded = conn.execute(
                "SELECT sha256 FROM schema_migrations WHERE version = '0002'"
            ).fetchone()
        assert recorded is not None and recorded[0] in SUPERSEDED["0002_storage.sql"]
        # Any other text of an applied migration is still refused.
        edited = tmp_path / "edited"
        edited.mkdir()
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            text = path.read_text(encoding="utf-8")
            if path.name == "0002_storage.sql":
                text += "\n-- an edit\n"
            (edited / path.name).write_text(text, encoding="utf-8")
        with pytest.raises(RuntimeError, match="changed after it was applied"):
            migrate(s.database, edited)
    finally:
        drop_database(admin, name)


def test_json_roundtrip_of_measures(isolated: Isolated) -> None:
    s = isolated.settings
    model = DeathSurvey.model_validate(
        survey("J1", person("J1"), measures={"eol_conversation": True, "present_at_death": "both"})
    )
    write(s, [(spec, [row]) for spec, row in fact_rows(model, KEYS)])
    with psycopg.connect(s.database_url) as conn:
        measures = conn.execute("SELECT measures FROM surveys").fetchone()
    assert measures is not None
    assert measures[0]["eol_conversation"] is True and measures[0]["present_at_death"] == "both"
    assert orjson.dumps(measures[0])
