"""Every Grafana panel query and every alert query, run on the real PostgreSQL as the role of
the organisation it belongs to (grafana/orgs.py) against a known scenario written directly into
the tables as the writer: the public organisation's as palliwatch_reader (the public layer), the
national one's and the alert rules as palliwatch_national (the exact layer), every region
organisation's as its regional role (row-level security).

Grafana's macros and template variables are expanded by grafana.macros (Grafana's documented
semantics). The scenario is built so that each alert rule has regions it must flag and regions
it must not: small regions with wide intervals, n below min_n, suppressed cells, incomplete
periods, a region with its own target, a change significant at 5 % but not at 1 %. Its public
figures differ from the exact ones (the published n is one more), so each assertion also says
which layer a panel read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from grafana import alerts, dashboards
from grafana.macros import expand
from grafana.orgs import Org, national, orgs, public, regional
from grafana.panels import PG_TYPE
from schemas.codes import municipalities, regions
from streams import settings as cfg
from streams.settings import Settings
from tests import timescale_helpers as tsh
from tests.conftest import Isolated

pytestmark = pytest.mark.integration

# Every query on plain PostgreSQL and on TimescaleDB (tests/timescale_helpers.py); assigned, not
# imported: pytest finds fixtures among a module's names.
any_isolated = tsh.any_isolated
timescale_isolated = tsh.timescale_isolated
timescale_url = tsh.timescale_url

E = date(2026, 6, 30)  # latest rolling 12 months (incomplete)
C = date(2025, 12, 31)  # latest complete rolling 12 months
PREV = date(2025, 6, 30)  # the 12 months before E
MONTH = date(2026, 11, 30)  # latest structural month
TIME_FROM = datetime(2024, 1, 1, tzinfo=UTC)
TIME_TO = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
ALL_REGIONS = set(regions())


def role_url(s: Settings, role: str) -> str:
    """The test database as a reader role (created by `palliwatch services up`)."""
    base = s.database_url.split("@", 1)[1]
    return f"postgresql://{role}:{cfg.local_password(role)}@{base}"


def wilson(x: float, n: float) -> tuple[float, float]:
    z = 1.959964
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _start(period_type: str, end: date) -> date:
    if period_type == "rolling_12m":
        y, m = end.year, end.month - 11
        if m < 1:
            y, m = y - 1, m + 12
        return date(y, m, 1)
    return date(end.year, end.month, 1)


def row(
    ind: str,
    code: str,
    end: date,
    *,
    x: float | None = None,
    n: int | None = None,
    value: float | None = None,
    scope: str = "region",
    period_type: str = "rolling_12m",
    breakdown: str = "all",
    suppressed: bool = False,
    complete: bool = True,
    nowcast: float | None = None,
    ci: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """An indicator_values row; a share from x of n gets its value and Wilson interval. Its
    public figures: n one more than the exact n (a perturbation the assertions can see), the
    value and interval from that; a value without n (a count, a level) as it is."""
    if x is not None and n:
        value = x / n
        ci = ci or wilson(x, n)
    if suppressed:
        value, x, n, ci = None, None, None, None
    pub_n = n + 1 if n else None
    pub_value = x / pub_n if x is not None and pub_n else value
    pub_ci = wilson(x, pub_n) if x is not None and pub_n else None
    return {
        "indicator_id": ind, "scope_type": scope, "scope_code": code, "breakdown": breakdown,
        "period_type": period_type, "period_start": _start(period_type, end), "period_end": end,
        "value": value, "numerator": x, "denominator": n, "n": n,
        "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
        "suppressed": suppressed, "period_complete": complete, "nowcast": nowcast,
        "pub_value": None if suppressed else pub_value, "pub_numerator": x,
        "pub_denominator": pub_n, "pub_n": pub_n,
        "pub_ci_low": pub_ci[0] if pub_ci else None, "pub_ci_high": pub_ci[1] if pub_ci else None,
        "pub_suppressed": suppressed,
    }  # fmt: skip


def scenario() -> list[dict[str, Any]]:
    rows = [
        # -- process: eol_conversation, target >= 0.98 (catalogue default, national)
        row("eol_conversation", "01", E, x=900, n=1000),  # clearly below: flag
        row("eol_conversation", "01", date(2026, 5, 31), x=880, n=1000),
        row("eol_conversation", "01", date(2026, 4, 30), x=870, n=1000),
        row("eol_conversation", "03", E, x=97, n=100),  # interval covers 0.98: no
        row("eol_conversation", "09", E, suppressed=True),  # suppressed: no
        row("eol_conversation", "09", date(2026, 5, 31), x=40, n=50),
        # n below min_n but (artificially) not suppressed: the min_n clause must hold it back
        row("eol_conversation", "10", E, x=2, n=4),
        row("eol_conversation", "12", E, x=1990, n=2000),  # meets: no
        row("eol_conversation", "13", E, x=19, n=20),  # small region, wide interval: no
        row("eol_conversation", "14", E, x=450, n=500),  # below national, meets its own 0.80
        row("pain_assessed", "01", E, x=300, n=300),  # 100 %: interval reaches 1.0: no
        row("eol_conversation", "01", E, x=455, n=500, breakdown="sex:female"),
        row("eol_conversation", "01", E, breakdown="sex:male", suppressed=True),
        row("eol_conversation", "0980", E, x=40, n=50, scope="municipality"),
        row("eol_conversation", "0180", E, x=800, n=900, scope="municipality"),
        row("eol_conversation", "SE", E, x=9500, n=10000, scope="nation"),
        # -- coverage: national target 0.85, warn 0.70 (set below); complete periods only
        row("registry_coverage", "01", C, x=3900, n=5000),  # 0.78: warning
        row("registry_coverage", "04", C, x=1200, n=2000),  # 0.60: critical
        row("registry_coverage", "03", C, x=2790, n=3000),  # 0.93: meets
        row("registry_coverage", "03", E, x=1200, n=3000, complete=False, nowcast=0.90),
        row("registry_coverage", "05", E, x=300, n=1000, complete=False, nowcast=0.8),
        # -- specialised care: unmet share <= 0.25 warn 0.50 (catalogue), complete periods only
        row("spec_unmet_share", "05", C, x=400, n=1000),  # 0.40: warning
        row("spec_unmet_share", "06", C, x=700, n=1000),  # 0.70: critical
        row("spec_unmet_share", "07", C, x=9, n=30),  # 0.30, wide interval: no
        row("spec_unmet_share", "08", E, x=900, n=1000, complete=False),  # incomplete: no
        row("non_cancer_share_specialised", "05", E, x=40, n=400),  # 0.10 < 0.20: warning
        row("spec_need", "01", C, value=1000.0),
        row("spec_received", "01", C, value=700.0),
        row("spec_unmet", "01", C, value=300.0),
        row("spec_received", "09", C, suppressed=True),
        row("spec_need", "09", C, value=150.0),
        # -- structure, latest month: beds >= 8, physicians >= 4 (EAPC, catalogue)
        row("palliative_beds_per_100k", "01", MONTH, value=5.0, period_type="month"),  # flag
        row("palliative_beds_per_100k", "03", MONTH, value=9.0, period_type="month"),
        row("palliative_beds_per_100k", "09", MONTH, value=None, period_type="month"),
        row("specialist_physicians_per_100k", "01", MONTH, value=4.5, period_type="month"),
        row("on_call_24_7_available", "09", MONTH, value=1.0, period_type="month"),
        row("palliative_beds_per_100k", "SE", MONTH, value=7.0, scope="nation",
            period_type="month"),
        # -- home-death share vs the 12 months before
        row("home_death_share", "01", E, x=300, n=1000),
        row("home_death_share", "01", PREV, x=200, n=1000),  # z ~ 5.2: flag
        row("home_death_share", "03", E, x=21, n=100),
        row("home_death_share", "03", PREV, x=20, n=100),  # no change
        row("home_death_share", "09", E, suppressed=True),
        row("home_death_share", "09", PREV, x=1, n=6),
        row("home_death_share", "12", E, x=50, n=200),  # nothing to compare with
        row("home_death_share", "13", E, x=40, n=100),
        row("home_death_share", "13", PREV, x=25, n=100),  # z ~ 2.27: 5 % yes, 1 %: no
    ]  # fmt: skip
    return rows


def load(s: Settings) -> None:
    rows = scenario()
    cols = list(rows[0])
    # As the owner: refresh_indicator_current() is a repair tool (it deletes), not the worker's.
    with psycopg.connect(s.owner_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO indicator_values ({', '.join(cols)}) "
                f"VALUES ({', '.join('%(' + c + ')s' for c in cols)})",
                rows,
            )
        conn.execute("SELECT refresh_indicator_current()")
        conn.execute(
            "INSERT INTO targets VALUES ('registry_coverage', 'national', '>=', 0.85, 0.70, "
            "'2020-01-01', 'test: operator target'), "
            "('eol_conversation', '14', '>=', 0.80, NULL, '2020-01-01', 'test: own target')"
        )
        now = datetime.now(UTC)
        for region, days_ago in (("01", 0), ("12", 6), ("04", 7), ("03", 10)):
            conn.execute(
                "INSERT INTO survey_arrivals VALUES (%s, %s, %s, 1)",
                (now - timedelta(days=days_ago), region, f"s-{region}"),
            )
        conn.execute(
            """INSERT INTO unit_events VALUES ('u-gotland', '2024-01-01', 'upsert', '09', '0980',
               'Gotland on-call', 'on_call_line', '{0980}', 0, '24_7', true, true, null, true,
               '{"specialist_physicians": 1.0, "specialist_nurses": 2.0}')"""
        )
        conn.execute("INSERT INTO official_deaths VALUES ('01', '2026-01-01', 1500, 'test', now())")


# The organisations whose SQL the tests run, each as its own role. A region with data in the
# scenario and one without.
CHECKED = ("public", "national", "region-09", "region-01")


@pytest.fixture
def dbs(any_isolated: Isolated) -> Iterator[dict[str, psycopg.Connection]]:
    """Organisation key -> a connection as its audience's role, on the loaded scenario."""
    load(any_isolated.settings)
    by_key = {o.key: o for o in orgs()}
    with ExitStack() as stack:
        yield {
            key: stack.enter_context(
                psycopg.connect(role_url(any_isolated.settings, by_key[key].role), autocommit=True)
            )
            for key in CHECKED
        }


@pytest.fixture
def db(dbs: dict[str, psycopg.Connection]) -> psycopg.Connection:
    """The national organisation's connection (exact figures, every scope)."""
    return dbs["national"]


VARIABLES = {
    "region": "01",
    "municipality": "0180",
    "indicator": "eol_conversation",
    "period_type": "rolling_12m",
    "breakdown": "all",
}


def run(conn: psycopg.Connection, raw: str, **overrides: str) -> list[dict[str, Any]]:
    sql = expand(raw, time_from=TIME_FROM, time_to=TIME_TO,
                 variables={**VARIABLES, **overrides})  # fmt: skip
    cur = conn.execute(sql)
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def sql_panels(org: Org | None = None) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel or variable title, raw SQL) of every PostgreSQL query of an
    organisation's dashboards (the national one's by default)."""
    out = []
    for d in dashboards.org_dashboards(org or national()).values():
        for v in d["templating"]["list"]:
            if v["type"] == "query" and v["datasource"]["type"] == PG_TYPE:
                out.append((d["uid"], f"variable {v['name']}", v["query"]))
        for p in d["panels"]:
            for t in p.get("targets", []):
                if t["datasource"]["type"] == PG_TYPE:
                    out.append((d["uid"], p["title"], t["rawSql"]))
    return out


def panel_sql(uid: str, title_prefix: str, org: Org | None = None) -> str:
    found = [q for u, title, q in sql_panels(org) if u == uid and title.startswith(title_prefix)]
    assert len(found) == 1, (uid, title_prefix, found)
    return found[0]


def alert_queries() -> list[tuple[str, str, str]]:
    """(rule uid, refId, raw SQL) of every PostgreSQL alert query."""
    return [
        (r["uid"], q["refId"], q["model"]["rawSql"])
        for g in alerts.rule_groups()
        for r in g["rules"]
        for q in r["data"]
        if q["datasourceUid"] == national().datasource_uid
    ]


# ---- every query runs, as its organisation's role --------------------------------------------

VARIANTS = [
    {},
    {"region": "09", "municipality": "0980", "breakdown": "sex:female"},
    {"indicator": "registry_coverage", "period_type": "month", "region": "25"},
    {"indicator": "palliative_beds_per_100k", "period_type": "quarter"},
]
DAILY_VARIANT = {"period_type": "rolling_30d"}


def _runs(conn: psycopg.Connection, org: Org, variants: list[dict[str, str]]) -> int:
    queries = sql_panels(org)
    for uid, title, raw in queries:
        for variant in variants:
            if org.region:  # its own municipalities only
                variant = {**variant, "municipality": "0980" if org.region == "09" else "0180"}
            try:
                run(conn, raw, **variant)
            except psycopg.Error as e:
                raise AssertionError(f"{org.key}: {uid} / {title} with {variant}: {e}") from e
    return len(queries)


def test_every_panel_query_runs_as_its_organisations_role(
    dbs: dict[str, psycopg.Connection],
) -> None:
    assert _runs(dbs["public"], public(), VARIANTS) >= 20
    assert _runs(dbs["national"], national(), VARIANTS + [DAILY_VARIANT]) >= 25
    for key in ("region-09", "region-01"):
        org = next(o for o in orgs() if o.key == key)
        assert _runs(dbs[key], org, VARIANTS + [DAILY_VARIANT]) >= 15


def test_every_region_organisations_queries_run_as_its_role(any_isolated: Isolated) -> None:
    load(any_isolated.settings)
    for code in regions():
        org = regional(code)
        with psycopg.connect(role_url(any_isolated.settings, org.role), autocommit=True) as conn:
            assert _runs(conn, org, [{}]) >= 15


def test_the_roles_hold_each_organisation_to_its_layer(
    dbs: dict[str, psycopg.Connection],
) -> None:
    """What an organisation's datasource could be made to query (any member can send any SQL
    to it) is what its role may read: the public role no exact figure, a region's role no
    other region's."""
    exact_series = panel_sql(dashboards.REGION_UID, "${indicator} in region")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run(dbs["public"], exact_series)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run(dbs["public"], "SELECT count(*) FROM indicator_values")
    assert run(dbs["region-09"], exact_series, region="01") == []  # row-level security
    assert run(dbs["region-09"], exact_series, region="09", period_type="rolling_12m")
    assert run(dbs["national"], exact_series, region="01")
    # Every region can still read the public layer (the nation, the others' published figures).
    public_latest = (
        "SELECT n FROM published.indicator_latest WHERE scope_code = '01' AND "
        "indicator_id = 'eol_conversation' AND breakdown = 'all' AND period_type = 'rolling_12m'"
    )
    assert run(dbs["region-09"], public_latest) == [{"n": 1001}]


def test_every_alert_query_runs_and_returns_labels_and_one_number(
    db: psycopg.Connection,
) -> None:
    queries = alert_queries()
    assert {u for u, _, _ in queries} == {
        "pw-process-below-target", "pw-coverage-below-target", "pw-specialised-care",
        "pw-structure-below-eapc", "pw-home-death-change", "pw-survey-silence",
    }  # fmt: skip
    for uid, ref, raw in queries:
        cur = db.execute(expand(raw, time_from=TIME_FROM, time_to=TIME_TO))
        names = [d.name for d in cur.description or []]
        assert names == ["region", "region_name", "indicator", "severity", ref.lower()], uid
        rows = cur.fetchall()
        # One alert instance per region and indicator: label sets are unique.
        labels = [r[:4] for r in rows]
        assert len(labels) == len(set(labels)), uid
        for r in rows:
            assert r[3] in ("warning", "critical"), (uid, r)
            if ref == "QB":
                assert r[4] in (0.0, 1.0), (uid, r)


# ---- which regions each alert flags ---------------------------------------------------------


def flagged(conn: psycopg.Connection, rule_uid: str) -> dict[tuple[str, str], str]:
    raw = next(q for u, ref, q in alert_queries() if u == rule_uid and ref == "QB")
    return {(r["region"], r["indicator"]): r["severity"] for r in run(conn, raw) if r["qb"] == 1.0}


def values(conn: psycopg.Connection, rule_uid: str, ref: str) -> dict[tuple[str, str], Any]:
    raw = next(q for u, r, q in alert_queries() if u == rule_uid and r == ref)
    return {(r["region"], r["indicator"]): r[ref.lower()] for r in run(conn, raw)}


def test_process_alert_flags_only_statistically_clear_regions(db: psycopg.Connection) -> None:
    assert flagged(db, "pw-process-below-target") == {("01", "eol_conversation"): "warning"}
    v = values(db, "pw-process-below-target", "QV")
    assert v[("01", "eol_conversation")] == pytest.approx(0.9)
    assert v[("09", "eol_conversation")] is None  # suppressed: an instance, no value, no alert
    # n = 4 below min_n (artificially not suppressed): an instance with its value, no alert.
    assert v[("10", "eol_conversation")] == pytest.approx(0.5)
    t = values(db, "pw-process-below-target", "QT")
    assert t[("14", "eol_conversation")] == pytest.approx(0.80)  # the region's own target
    assert t[("01", "eol_conversation")] == pytest.approx(0.98)


def test_coverage_alert_only_on_complete_periods(db: psycopg.Connection) -> None:
    assert flagged(db, "pw-coverage-below-target") == {
        ("01", "registry_coverage"): "warning",
        ("04", "registry_coverage"): "critical",
    }
    v = values(db, "pw-coverage-below-target", "QV")
    # 03's latest period (0.40, incomplete) is ignored; its latest complete one meets.
    assert v[("03", "registry_coverage")] == pytest.approx(0.93)
    assert ("05", "registry_coverage") not in v  # only an incomplete period: no instance


def test_specialised_care_alert_unmet_share_levels(db: psycopg.Connection) -> None:
    assert flagged(db, "pw-specialised-care") == {
        ("05", "spec_unmet_share"): "warning",
        ("06", "spec_unmet_share"): "critical",
        ("05", "non_cancer_share_specialised"): "warning",
    }
    assert ("08", "spec_unmet_share") not in values(db, "pw-specialised-care", "QV")


def test_structure_alert_below_eapc(db: psycopg.Connection) -> None:
    assert flagged(db, "pw-structure-below-eapc") == {("01", "palliative_beds_per_100k"): "warning"}
    v = values(db, "pw-structure-below-eapc", "QT")
    assert v[("01", "palliative_beds_per_100k")] == pytest.approx(8.0)
    assert v[("01", "specialist_physicians_per_100k")] == pytest.approx(4.0)


def test_home_death_change_alert_two_proportion_z(db: psycopg.Connection) -> None:
    assert flagged(db, "pw-home-death-change") == {("01", "home_death_share"): "warning"}
    z = {
        region: value
        for region, value in db.execute(
            "SELECT region, z FROM exact.alert_home_death_change"
        ).fetchall()
    }
    assert z["01"] == pytest.approx(0.1 / math.sqrt(0.25 * 0.75 * (2 / 1000)))
    assert 1.96 < z["13"] < 2.5758  # significant at 5 %, not at the rule's 1 %
    assert z["09"] is None and z["12"] is None  # suppressed / no previous window
    prev = values(db, "pw-home-death-change", "QT")
    assert prev[("01", "home_death_share")] == pytest.approx(0.2)


def test_survey_silence_alert(db: psycopg.Connection) -> None:
    silent = {r for r, _ in flagged(db, "pw-survey-silence")}
    # 01 sent today and 12 six days ago; 04 (exactly 7 days), 03 (10) and every region that
    # never sent while others do are flagged.
    assert silent == ALL_REGIONS - {"01", "12"}
    days = values(db, "pw-survey-silence", "QV")
    assert days[("03", "survey_arrivals")] == 10
    assert days[("25", "survey_arrivals")] == 10  # never sent: silent since the first arrival


def test_survey_silence_is_quiet_on_an_empty_installation(any_isolated: Isolated) -> None:
    with psycopg.connect(role_url(any_isolated.settings, national().role)) as conn:
        silent = "SELECT count(*) AS n FROM exact.survey_silence(7) WHERE breach = 1"
        assert run(conn, silent) == [{"n": 0}]


# ---- what the panels show -------------------------------------------------------------------


def test_overview_traffic_lights_and_suppression(db: psycopg.Connection) -> None:
    rows = {r["code"]: r for r in run(db, panel_sql(dashboards.OVERVIEW_UID, "Traffic lights"))}
    assert set(rows) == ALL_REGIONS
    assert rows["01"]["eol_conversation status"] == "below"
    assert rows["01"]["eol_conversation"] == pytest.approx(0.9)
    assert rows["01"]["eol_conversation n"] == 1000
    assert rows["12"]["eol_conversation status"] == "meets"
    assert rows["14"]["eol_conversation status"] == "meets"  # own target 0.80
    # Suppressed: status says so, value and n are null (never 0).
    assert rows["09"]["eol_conversation status"] == "suppressed"
    assert rows["09"]["eol_conversation"] is None and rows["09"]["eol_conversation n"] is None
    assert rows["25"]["eol_conversation status"] is None  # no data
    assert rows["03"]["registry_coverage status"] == "below"  # latest period (incomplete)
    assert rows["05"]["spec_unmet_share status"] == "warn"  # 0.40: above 0.25, within 0.50


def test_overview_map_and_nation(db: psycopg.Connection) -> None:
    rows = {r["code"]: r for r in run(db, panel_sql(dashboards.OVERVIEW_UID, "Regions:"))}
    assert set(rows) == ALL_REGIONS
    for code, r in regions().items():
        assert (rows[code]["latitude"], rows[code]["longitude"]) == (r.seat_lat, r.seat_lon)
    assert (rows["01"]["status"], rows["01"]["status_level"]) == ("below", 2)
    assert (rows["12"]["status"], rows["12"]["status_level"]) == ("meets", 0)
    assert (rows["09"]["status"], rows["09"]["status_level"], rows["09"]["value"]) == (
        "suppressed", 4, None,
    )  # fmt: skip
    assert rows["25"]["status"] == "no_data"
    beds = {
        r["code"]: r["status"]
        for r in run(db, panel_sql(dashboards.OVERVIEW_UID, "Regions:"),
                     indicator="palliative_beds_per_100k")
    }  # fmt: skip
    assert (beds["01"], beds["03"]) == ("below", "meets")  # monthly whatever $period_type
    nation = {r["indicator"]: r for r in run(db, panel_sql(dashboards.OVERVIEW_UID, "Nation (SE)"))}
    eol = nation["Documented end-of-life conversation"]
    assert (eol["value"], eol["n"], eol["status"]) == (pytest.approx(0.95), 10000, "below")
    assert nation["Specialised palliative inpatient beds per 100 000 residents"]["status"] == (
        "below"
    )


def test_region_drilldown_series_breakdowns_and_municipalities(db: psycopg.Connection) -> None:
    series = run(db, panel_sql(dashboards.REGION_UID, "${indicator} in region"))
    assert [r["time"].date() for r in series] == [date(2026, 4, 30), date(2026, 5, 31), E]
    assert series[-1]["value"] == pytest.approx(0.9)
    assert series[-1]["target"] == pytest.approx(0.98)
    assert series[-1]["95 % low"] < 0.9 < series[-1]["95 % high"]
    gotland = run(db, panel_sql(dashboards.REGION_UID, "${indicator} in region"), region="09")
    assert [r["value"] for r in gotland] == [pytest.approx(0.8), None]  # suppressed: a gap
    status = run(db, panel_sql(dashboards.REGION_UID, "Status per period"), region="09")
    assert [r["status"] for r in status] == ["below", "suppressed"]

    by_sex = run(db, panel_sql(dashboards.REGION_UID, "By sex"))
    assert [(r["sex"], r["n"], r["status"]) for r in by_sex] == [
        ("female", 500, "below"),
        ("male", None, "suppressed"),
    ]
    breakdown_values = run(db, next(q for u, t, q in sql_panels() if t == "variable breakdown"))
    assert [r["__value"] for r in breakdown_values] == ["all", "sex:female", "sex:male"]

    munis = run(db, panel_sql(dashboards.REGION_UID, "Municipalities of region"))
    assert len(munis) == sum(1 for m in municipalities().values() if m.region_code == "01")
    stockholm = next(r for r in munis if r["code"] == "0180")
    assert (stockholm["n"], stockholm["status"]) == (900, "below")
    assert {r["status"] for r in munis if r["code"] != "0180"} == {"no_data"}
    muni_series = run(db, panel_sql(dashboards.REGION_UID, "${indicator} in municipality"),
                      region="09", municipality="0980")  # fmt: skip
    assert [r["value"] for r in muni_series] == [pytest.approx(0.8)]

    checks = run(db, panel_sql(dashboards.REGION_UID, "Alert checks"))
    assert [(r["indicator"], r["breach"]) for r in checks][0] == ("eol_conversation", 1)


def test_region_need_received_unmet_and_coverage(db: psycopg.Connection) -> None:
    spec = run(db, panel_sql(dashboards.REGION_UID, "Need vs received"))
    assert [(r["time"].date(), r["need"], r["received"], r["unmet"]) for r in spec] == [
        (C, 1000.0, 700.0, 300.0)
    ]
    spec09 = run(db, panel_sql(dashboards.REGION_UID, "Need vs received"), region="09")
    assert [(r["need"], r["received"]) for r in spec09] == [(150.0, None)]  # suppressed

    cov = run(db, panel_sql(dashboards.REGION_UID, "Registry coverage"), region="03")
    assert [
        (r["time"].date(), r["coverage (complete period)"], r["coverage so far"],
         r["nowcast (expected final)"])
        for r in cov
    ] == [(C, pytest.approx(0.93), None, None), (E, None, pytest.approx(0.4), 0.9)]  # fmt: skip
    table = run(db, panel_sql(dashboards.REGION_UID, "Coverage and unmet share"), region="05")
    assert [(r["period_end"], r["complete"]) for r in table] == [(E, False), (C, True)]
    assert table[1]["unmet share status"] == "warn"


def test_structure_dashboard(db: psycopg.Connection) -> None:
    rows = {r["code"]: r for r in run(db, panel_sql(dashboards.STRUCTURE_UID, "Structure per"))}
    assert rows["01"]["palliative_beds_per_100k"] == 5.0
    assert rows["01"]["palliative_beds_per_100k status"] == "below"
    assert rows["03"]["palliative_beds_per_100k status"] == "meets"
    assert rows["01"]["specialist_physicians_per_100k status"] == "meets"
    assert rows["09"]["on_call_24_7_available"] == 1.0
    spots = run(db, panel_sql(dashboards.STRUCTURE_UID, "White spots by"), region="09")
    assert [(r["code"], r["on_call_24_7"], r["consult_team"], r["white_spots"]) for r in spots] == [
        ("0980", True, False, 3)
    ]
    per_region = {
        r["code"]: r for r in run(db, panel_sql(dashboards.STRUCTURE_UID, "White spots per"))
    }
    assert per_region["09"]["no 24/7 on-call line"] == 0
    assert per_region["01"]["no 24/7 on-call line"] == per_region["01"]["municipalities"]
    units = run(db, panel_sql(dashboards.STRUCTURE_UID, "Open units"), region="09")
    assert [(u["name"], u["specialist_nurses"]) for u in units] == [("Gotland on-call", 2.0)]
    trend = run(db, panel_sql(dashboards.STRUCTURE_UID, "Per 100 000"))
    assert [
        (r["palliative_beds_per_100k"], r["palliative_beds_per_100k target"]) for r in trend
    ] == [(5.0, 8.0)]


def test_operations_database_panels(db: psycopg.Connection) -> None:
    arrivals = run(db, panel_sql(dashboards.OPERATIONS_UID, "Survey arrivals"))
    assert sorted(r["metric"] for r in arrivals) == ["01", "03", "04", "12"]
    silent = run(db, panel_sql(dashboards.OPERATIONS_UID, "Regions silent"))
    assert {r["region"] for r in silent if r["breach"] == 1} == ALL_REGIONS - {"01", "12"}
    assert {r["region"]: r["days_silent"] for r in silent}["03"] == 10


# ---- the public organisation: the public layer ----------------------------------------------


def test_public_dashboards_show_the_public_figures(dbs: dict[str, psycopg.Connection]) -> None:
    conn, org = dbs["public"], public()
    rows = {
        r["code"]: r for r in run(conn, panel_sql(dashboards.OVERVIEW_UID, "Traffic lights", org))
    }
    assert rows["01"]["eol_conversation n"] == 1001  # the published n, not the exact 1000
    assert rows["01"]["eol_conversation"] == pytest.approx(900 / 1001)
    assert rows["01"]["eol_conversation status"] == "below"
    assert rows["09"]["eol_conversation status"] == "suppressed"
    assert rows["09"]["eol_conversation"] is None and rows["09"]["eol_conversation n"] is None
    series = run(conn, panel_sql(dashboards.REGION_UID, "${indicator} in region", org))
    assert [r["time"].date() for r in series] == [date(2026, 4, 30), date(2026, 5, 31), E]
    assert series[-1]["value"] == pytest.approx(900 / 1001)
    by_sex = run(conn, panel_sql(dashboards.REGION_UID, "By sex", org))
    assert [(r["sex"], r["n"], r["status"]) for r in by_sex] == [
        ("female", 501, "below"),
        ("male", None, "suppressed"),
    ]
    munis = run(conn, panel_sql(dashboards.REGION_UID, "Municipalities of region", org))
    assert next(r for r in munis if r["code"] == "0180")["n"] == 901
    # Coverage without the nowcast (not in the public layer).
    cov = run(conn, panel_sql(dashboards.REGION_UID, "Registry coverage", org), region="03")
    assert [set(r) for r in cov][0] == {
        "time", "coverage (complete period)", "coverage so far", "target",
    }  # fmt: skip
    assert [(r["time"].date(), r["coverage so far"]) for r in cov] == [
        (C, None),
        (E, pytest.approx(1200 / 3001)),
    ]
    structure = {
        r["code"]: r for r in run(conn, panel_sql(dashboards.STRUCTURE_UID, "Structure per", org))
    }
    assert structure["01"]["palliative_beds_per_100k"] == 5.0


# ---- a region's organisation: its region, exactly -------------------------------------------


def test_region_organisation_shows_its_own_region_exactly(
    dbs: dict[str, psycopg.Connection],
) -> None:
    conn, org = dbs["region-09"], regional("09")
    series = run(conn, panel_sql(dashboards.REGION_UID, "${indicator} in region", org))
    assert [r["value"] for r in series] == [pytest.approx(0.8), None]  # exact; E suppressed
    status = run(conn, panel_sql(dashboards.REGION_UID, "Status per period", org))
    assert [r["status"] for r in status] == ["below", "suppressed"]
    munis = run(conn, panel_sql(dashboards.REGION_UID, "Municipalities of region", org))
    assert {r["code"] for r in munis} == {
        m for m, x in municipalities().items() if x.region_code == "09"
    }
    muni = run(conn, panel_sql(dashboards.REGION_UID, "${indicator} in municipality", org),
               municipality="0980")  # fmt: skip
    assert [(r["value"]) for r in muni] == [pytest.approx(0.8)]
    spec = run(conn, panel_sql(dashboards.REGION_UID, "Need vs received", org))
    assert [(r["need"], r["received"]) for r in spec] == [(150.0, None)]
    checks = run(conn, panel_sql(dashboards.REGION_UID, "Alert checks", org))
    assert {r["indicator"] for r in checks} == {"eol_conversation"}  # its own row only
    variable = next(q for u, t, q in sql_panels(org) if t == "variable municipality")
    assert {r["__value"] for r in run(conn, variable)} == {"0980"}
    structure = run(conn, panel_sql(dashboards.STRUCTURE_UID, "Structure in region", org))
    assert [(r["code"], r["on_call_24_7_available"]) for r in structure] == [("09", 1.0)]
    units = run(conn, panel_sql(dashboards.STRUCTURE_UID, "Open units", org))
    assert [u["name"] for u in units] == ["Gotland on-call"]


def test_a_region_organisations_role_reads_no_other_region(
    dbs: dict[str, psycopg.Connection],
) -> None:
    """Region 01's organisation shows its rows; the same SQL with another region written in
    returns nothing for its role (row-level security, not only the literal in the SQL)."""
    conn, org = dbs["region-01"], regional("01")
    series = run(conn, panel_sql(dashboards.REGION_UID, "${indicator} in region", org))
    assert series[-1]["value"] == pytest.approx(0.9)
    gotland = panel_sql(dashboards.REGION_UID, "${indicator} in region", org).replace(
        "'01'", "'09'"
    )
    assert run(conn, gotland) == []
