"""Each audience reads exactly what it is entitled to, on the real database (issue 15).

The rows are the oracle's for a random history of three regions, written through the real sink
(indicator rows, survey facts and arrivals). Then every view is read as the public role, two
regional roles and the national operator:

- the public role reads the public layer only: perturbed figures, no daily windows, no nowcast,
  and nothing in ``exact`` or in the tables;
- a regional role reads exact figures of its region and its municipalities, in every exact
  view and in the tables themselves (row-level security), and nothing of another region;
- the national operator reads every exact row.
"""

from __future__ import annotations

import asyncio
from datetime import date

import psycopg
import pytest

from processors.catalogue import ROLLING_DAYS
from processors.core import IndicatorValue
from processors.sink import INDICATORS, Sink, indicator_row
from schemas.audiences import NATIONAL_ROLE, PUBLIC_ROLE, region_role
from schemas.models import DeathSurvey
from streams.settings import local_password
from tests import timescale_helpers as tsh
from tests.conftest import TEST_AS_OF, Isolated
from tests.histories import random_history
from tests.keys import KEYS
from tests.oracle_compare import oracle_of

# Every test on plain PostgreSQL and on TimescaleDB (tests/timescale_helpers.py); assigned, not
# imported: pytest finds fixtures among a module's names.
any_isolated = tsh.any_isolated
timescale_isolated = tsh.timescale_isolated
timescale_url = tsh.timescale_url

REGIONS = ("03", "09", "25")
EXACT_VIEWS = (
    "indicator_series", "indicator_latest", "region_series", "breakdowns", "municipality_latest",
)  # fmt: skip
ALERT_VIEWS = ("alert_below_target", "alert_structure", "alert_home_death_change")


def role_url(isolated: Isolated, role: str) -> str:
    base = isolated.settings.database_url.split("@", 1)[1]
    return f"postgresql://{role}:{local_password(role)}@{base}"


def denied(url: str, query: str) -> None:
    with (
        psycopg.connect(url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(query)


def region_of(code: str) -> str:
    return code[:2] if len(code) == 4 else code


@pytest.fixture
def loaded(any_isolated: Isolated) -> tuple[Isolated, dict]:
    """The oracle's rows for a random history, written through the real sink, on plain
    PostgreSQL and on TimescaleDB (hypertables, whose chunks are tables of their own)."""
    isolated = any_isolated
    h = random_history(seed=1515, n_surveys=240, as_of=TEST_AS_OF, regions=REGIONS)
    rows = oracle_of(h, TEST_AS_OF)
    surveys = [DeathSurvey.model_validate(s) for s in h.admitted]

    async def write() -> None:
        sink = Sink(isolated.settings.database_url, record_keys=KEYS)
        await sink.write([(INDICATORS, [indicator_row(v, _now()) for v in rows.values()])])
        assert await sink.write_records(surveys) == []
        await sink.close()

    asyncio.run(write())
    return isolated, rows


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _keys(conn: psycopg.Connection, view: str) -> set[tuple[str, str, str, str, date]]:
    return {
        tuple(r)  # type: ignore[misc]
        for r in conn.execute(
            f"SELECT indicator_id, scope_code, breakdown, period_type, period_end FROM {view}"
        )
    }


def _want(rows: dict, regions: set[str] | None) -> set[tuple[str, str, str, str, date]]:
    return {
        (v.indicator_id, v.scope_code, v.breakdown, v.period_type, v.period_end)
        for v in rows.values()
        if regions is None or region_of(v.scope_code) in regions
    }


def test_the_public_role_reads_perturbed_figures_and_nothing_exact(loaded) -> None:  # type: ignore[no-untyped-def]
    isolated, rows = loaded
    with psycopg.connect(role_url(isolated, PUBLIC_ROLE)) as conn:
        got = {
            (r[0], r[1], r[2], r[3], r[4]): r[5:]
            for r in conn.execute(
                "SELECT indicator_id, scope_code, breakdown, period_type, period_end, value, "
                "numerator, denominator, n, suppressed, nowcast FROM published.indicator_series"
            )
        }
    public: dict[tuple, IndicatorValue] = {
        (v.indicator_id, v.scope_code, v.breakdown, v.period_type, v.period_end): v
        for v in rows.values()
        if v.period_type not in ROLLING_DAYS
    }
    assert set(got) == set(public)  # every scope of every region, no daily window
    differs = 0
    for key, v in public.items():
        value, num, den, n, suppressed, nowcast = got[key]
        assert (value, num, den, n, suppressed) == (
            v.pub_value, v.pub_numerator, v.pub_denominator, v.pub_n, v.pub_suppressed
        )  # fmt: skip
        assert nowcast is None
        differs += v.numerator is not None and num is not None and num != v.numerator
    assert differs > 0, "no published count differs from the exact one: nothing is perturbed"
    for relation in [f"exact.{v}" for v in EXACT_VIEWS + ALERT_VIEWS] + [
        "indicator_values", "indicator_current", "surveys", "survey_arrivals", "alert_state",
        "ckm_ptable",
    ]:  # fmt: skip
        denied(role_url(isolated, PUBLIC_ROLE), f"SELECT 1 FROM {relation} LIMIT 1")
    denied(role_url(isolated, PUBLIC_ROLE), "SELECT * FROM exact.survey_silence(3)")
    with psycopg.connect(role_url(isolated, PUBLIC_ROLE)) as conn:
        for gone in ("alert_below_target", "alert_state"):
            assert conn.execute("SELECT to_regclass(%s)", (f"published.{gone}",)).fetchone() == (
                None,
            )


@pytest.mark.parametrize("region", ["09", "25"])
def test_a_regional_role_reads_its_region_exactly_and_no_other(loaded, region: str) -> None:  # type: ignore[no-untyped-def]
    isolated, rows = loaded
    with psycopg.connect(role_url(isolated, region_role(region))) as conn:
        series = _keys(conn, "exact.indicator_series")
        assert series == _want(rows, {region})
        assert series, "the region has rows"
        # The exact figures themselves, unperturbed.
        for r in conn.execute(
            "SELECT indicator_id, scope_type, scope_code, breakdown, period_type, period_end, "
            "numerator, n, nowcast FROM exact.indicator_series"
        ):
            v = rows[(r[0], r[1], r[2], r[3], r[4], r[5])]
            assert (r[6], r[7], r[8]) == (v.numerator, v.n, v.nowcast)
        for view in EXACT_VIEWS[1:]:
            codes = {r[0] for r in conn.execute(f"SELECT DISTINCT scope_code FROM exact.{view}")}
            assert codes and {region_of(c) for c in codes} == {region}, view
        for view in ALERT_VIEWS:
            found = {r[0] for r in conn.execute(f"SELECT DISTINCT region FROM exact.{view}")}
            assert found <= {region}, view
        silence = {r[0] for r in conn.execute("SELECT region FROM exact.survey_silence(3)")}
        assert silence == {region}
        arrivals = {
            r[0] for r in conn.execute("SELECT region_code FROM exact.survey_arrivals_daily")
        }
        assert arrivals == {region}
        # Another region, asked for by name, in every view: nothing.
        other = next(r for r in REGIONS if r != region)
        for view in EXACT_VIEWS:
            n = conn.execute(
                f"SELECT count(*) FROM exact.{view} WHERE left(scope_code, 2) = %s", (other,)
            ).fetchone()
            assert n == (0,), view
        # Pseudonymous facts stay out of reach: no survey ids, no person_ref.
    # No table at all: the exact views filter by region (on TimescaleDB a table grant would
    # reach the hypertable's chunks, which do not inherit row-level security).
    for relation in ("surveys", "survey_arrivals", "indicator_values", "indicator_current"):
        denied(role_url(isolated, region_role(region)), f"SELECT * FROM {relation} LIMIT 1")


def test_the_national_operator_reads_every_exact_row(loaded) -> None:  # type: ignore[no-untyped-def]
    isolated, rows = loaded
    with psycopg.connect(role_url(isolated, NATIONAL_ROLE)) as conn:
        assert _keys(conn, "exact.indicator_series") == _want(rows, None)
        regions = {r[0] for r in conn.execute("SELECT region FROM exact.alert_below_target")}
        assert set(REGIONS) <= regions
        arrivals = {
            r[0] for r in conn.execute("SELECT region_code FROM exact.survey_arrivals_daily")
        }
        assert arrivals == set(REGIONS)


def test_public_arrivals_are_perturbed_and_small_days_suppressed(loaded) -> None:  # type: ignore[no-untyped-def]
    isolated, _ = loaded
    from processors.disclosure import perturb

    with psycopg.connect(isolated.settings.database_url) as conn:
        truth = {
            (r[0], r[1]): (r[2], int(r[3]))
            for r in conn.execute(
                "SELECT date_trunc('day', submitted_at), region_code, count(*), sum(record_key) "
                "FROM survey_arrivals GROUP BY 1, 2"
            )
        }
    with psycopg.connect(role_url(isolated, PUBLIC_ROLE)) as conn:
        got = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute(
                "SELECT day, region_code, revisions, suppressed "
                "FROM published.survey_arrivals_daily"
            )
        }
    assert set(got) == set(truth)
    for cell, (count, key_sum) in truth.items():
        published = perturb(count, key_sum)
        revisions, suppressed = got[cell]
        assert suppressed == (count < 5 or published < 5)
        assert revisions == (None if suppressed else published)
    assert any(c < 5 for c, _ in truth.values()), "the history has small days"


def test_row_level_security_holds_for_a_table_granted_by_mistake(loaded) -> None:  # type: ignore[no-untyped-def]
    """The second line: were a regional role ever granted a table, row-level security would
    still show it its own region only."""
    isolated, rows = loaded
    role = region_role("09")
    with psycopg.connect(isolated.settings.owner_url, autocommit=True) as owner:
        for table in ("indicator_values", "indicator_current", "survey_arrivals"):
            owner.execute(f"GRANT SELECT ON {table} TO {role}")
    with psycopg.connect(role_url(isolated, role)) as conn:
        for table in ("indicator_values", "indicator_current"):
            codes = {r[0] for r in conn.execute(f"SELECT DISTINCT scope_code FROM {table}")}
            assert codes and {region_of(c) for c in codes} == {"09"}, table
        regions = {r[0] for r in conn.execute("SELECT DISTINCT region_code FROM survey_arrivals")}
    if tsh.is_timescale(isolated.settings.database_url):
        # TimescaleDB refuses row-level security on a compressed hypertable: there the arrivals
        # have the first line only (no table grant, ever; 0005_disclosure.sql).
        assert regions == set(REGIONS)
    else:
        assert regions == {"09"}
    assert len(_want(rows, {"09"})) < len(rows)
