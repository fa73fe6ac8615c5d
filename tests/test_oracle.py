"""Hand-computed checks of the batch oracle (processors/oracle.py) against docs/indicators.md.

No Kafka, no database: tiny histories with the expected numbers written out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import pytest

from processors.core import IndicatorValue
from processors.oracle import oracle
from schemas.models import DeathSurvey, OfficialDeaths, Population, UnitEvent
from tests.keys import KEYS
from tests.pipeline_helpers import survey as pipeline_survey

AS_OF = date(2026, 11, 23)  # as_of − 193 days = 2026-05-14; − 183 days = 2026-05-24
Rows = dict[tuple[str, str, str, str, str, date], IndicatorValue]


def person(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def survey(
    sid: str,
    death: str = "2026-03-10",
    submitted: str | None = None,
    *,
    revision: int = 1,
    status: str = "active",
    region: str = "09",
    muni: str = "0980",
    **overrides: Any,
) -> DeathSurvey:
    record = pipeline_survey(
        sid,
        person(sid),
        revision,
        status,
        submitted_at=f"{submitted or death}T10:00:00Z",
        unit_id="unit-1",
        region_code=region,
        municipality_code=muni,
        date_of_death=death,
        **overrides,
    )
    return DeathSurvey.model_validate(record)


def official(region: str, month: str, deaths: int) -> OfficialDeaths:
    return OfficialDeaths.model_validate(
        {"schema_version": 1, "region_code": region, "month": month, "deaths": deaths,
         "source": "test", "published_at": "2026-01-01T00:00:00Z"}
    )  # fmt: skip


def population(muni: str, year: int, people: int) -> Population:
    return Population.model_validate(
        {"schema_version": 1, "municipality_code": muni, "year": year, "population": people}
    )


def unit(
    unit_id: str,
    kind: str,
    effective: str,
    *,
    event: str = "upsert",
    region: str = "03",
    muni: str = "0380",
    catchment: Iterable[str] = (),
    beds: int = 0,
    children: bool = True,
    physicians: float = 0.0,
) -> UnitEvent:
    return UnitEvent.model_validate(
        {
            "schema_version": 1, "unit_id": unit_id, "event": event, "effective_date": effective,
            "region_code": region, "municipality_code": muni, "name": f"unit {unit_id}",
            "kind": kind, "catchment_municipalities": list(catchment), "beds": beds,
            "hours": "24_7", "accepts_all_diagnoses": True, "accepts_children": children,
            "max_prognosis_months": None, "written_mandate": True,
            "staff_fte": {"specialist_physicians": physicians},
        }
    )  # fmt: skip


def run(
    surveys: Iterable[DeathSurvey] = (),
    officials: Iterable[OfficialDeaths] = (),
    units: Iterable[UnitEvent] = (),
    pops: Iterable[Population] = (),
    as_of: date = AS_OF,
) -> Rows:
    return oracle(list(surveys), list(officials), list(units), list(pops), as_of, record_keys=KEYS)


def get(
    rows: Rows,
    ind: str,
    scope: str,
    code: str,
    period_type: str,
    end: date,
    breakdown: str = "all",
) -> IndicatorValue:
    return rows[(ind, scope, code, breakdown, period_type, end)]


def ends(rows: Rows, ind: str, scope: str, code: str, period_type: str) -> list[date]:
    return sorted(
        k[5] for k in rows if k[:3] == (ind, scope, code) and k[3] == "all" and k[4] == period_type
    )


def home(sid: str, **kw: Any) -> DeathSurvey:
    return survey(sid, place_of_death="own_home", **kw)


MAR = date(2026, 3, 31)


# ---- revisions ------------------------------------------------------------------------------


def test_revisions_stale_duplicates_and_withdrawal() -> None:
    history = [
        *(survey(f"s{i}") for i in range(6)),
        home("s0", revision=2),
        survey("s0"),  # stale resend of revision 1: changes nothing
        home("s1", revision=3),
        survey("s1", revision=2, region="03", muni="0380"),  # stale (2 ≤ 3): ignored
        survey("s5", revision=2, status="withdrawn"),
        survey("s5", revision=2),  # equal revision: stale, s5 stays withdrawn
    ]
    r = get(run(history), "home_death_share", "nation", "SE", "month", MAR)
    assert (r.n, r.numerator, r.denominator, r.value) == (5, 2.0, 5.0, 0.4)
    assert not r.suppressed
    # The stale revision 2 of s1 never touched region 03.
    assert not [k for k in run(history) if k[1:3] == ("region", "03")]
    # A higher revision re-activates a withdrawn survey.
    again = run([*history, survey("s5", revision=3)])
    assert get(again, "home_death_share", "nation", "SE", "month", MAR).n == 6


def test_correction_moving_a_survey_leaves_rows_with_zero() -> None:
    moved_from: dict[str, Any] = {"care_setting": "specialised_home_care"}
    history = [
        survey("s0", "2026-03-10", **moved_from),
        survey("s0", "2026-02-20", "2026-03-12", revision=2, region="03", muni="0380",
               **moved_from),
        survey("w0", "2026-01-05", status="withdrawn"),  # never active: touches nothing
    ]  # fmt: skip
    rows = run(history)
    # The old place keeps its rows, with nothing in them.
    old = get(rows, "spec_received", "region", "09", "month", MAR)
    assert (old.value, old.numerator, old.suppressed) == (0.0, 0.0, False)
    need = get(rows, "spec_need", "region", "09", "month", MAR)
    assert (need.value, need.n, need.denominator) == (0.0, None, None)
    share = get(rows, "home_death_share", "municipality", "0980", "month", MAR)
    assert share.suppressed and share.n is None and share.value is None
    assert ("home_death_share", "region", "09", "sex:male", "month", MAR) in rows
    # The new place: received 1 is suppressed.
    new = get(rows, "spec_received", "region", "03", "month", date(2026, 2, 28))
    assert new.suppressed and new.value is None
    # Nothing for cells and months nobody touched.
    assert ("spec_received", "region", "03", "all", "month", MAR) not in rows
    assert not [k for k in rows if k[4] == "month" and k[5] == date(2026, 1, 31)]
    # Nation: Feb and Mar both touched (by different revisions), Q1 once.
    assert ends(rows, "spec_received", "nation", "SE", "month") == [date(2026, 2, 28), MAR]
    assert ends(rows, "spec_received", "nation", "SE", "quarter") == [MAR]
    assert get(rows, "spec_received", "nation", "SE", "quarter", MAR).suppressed  # received 1


def test_registration_date_is_the_first_applied_revision() -> None:
    """A correction is submitted later; the registration delay still counts from the first."""
    learn = [
        survey("a", "2026-04-10", "2026-04-20"),  # delay 10 (2026-04 is a complete month)
        survey("a", "2026-04-10", "2026-05-30", revision=2),  # still 10, not 50
        survey("b", "2026-04-10", "2026-05-10"),  # delay 30
    ]
    # as_of − 2026-11-03 = 20: F(20) = 1/2 (with a delay of 50 it would be 0: unscaled, 1/8).
    rows = run([*learn, survey("n", "2026-11-03")], [official("09", "2026-11", 8)])
    r = get(rows, "registry_coverage", "region", "09", "month", date(2026, 11, 30))
    assert r.nowcast == 2 / 8


# ---- breakdowns -----------------------------------------------------------------------------


def test_breakdown_labels_and_where_they_apply() -> None:
    s = survey(
        "b1", "2026-10-05", sex="female", age_years=80, diagnosis_group="cancer",
        place_of_death="own_home", care_setting="specialised_home_care", ses_quintile=None,
    )  # fmt: skip
    rows = run([s])
    oct31 = date(2026, 10, 31)

    def cells(ind: str, scope: str, code: str, pt: str, end: date) -> set[str]:
        return {k[3] for k in rows if k[:3] == (ind, scope, code) and k[4:] == (pt, end)}

    home_cells = {"all", "sex:female", "age_band:80+", "diagnosis_group:cancer",
                  "ses_quintile:unknown", "care_setting:specialised_home_care"}  # fmt: skip
    assert cells("home_death_share", "nation", "SE", "month", oct31) == home_cells
    assert cells("home_death_share", "region", "09", "quarter", date(2026, 12, 31)) == home_cells
    assert cells("home_death_share", "region", "09", "rolling_12m", oct31) == home_cells
    # Municipalities and daily windows: totals only.
    assert cells("home_death_share", "municipality", "0980", "month", oct31) == {"all"}
    assert cells("home_death_share", "nation", "SE", "rolling_30d", date(2026, 11, 3)) == {"all"}
    assert not [k for k in rows if k[1] == "municipality" and k[4] == "rolling_30d"]
    # Each indicator its own dimensions: place of death, no diagnosis group.
    assert cells("non_cancer_share_specialised", "nation", "SE", "month", oct31) == {
        "all", "sex:female", "age_band:80+", "ses_quintile:unknown",
        "place_of_death:own_home", "care_setting:specialised_home_care",
    }  # fmt: skip
    # Official-deaths family: no breakdowns, no municipalities.
    assert cells("registry_coverage", "nation", "SE", "month", oct31) == {"all"}
    assert not [k for k in rows if k[0] == "registry_coverage" and k[1] == "municipality"]


@pytest.mark.parametrize(
    ("age", "ses", "want"),
    [
        (0, 1, ("age_band:0-17", "ses_quintile:1")),
        (17, 2, ("age_band:0-17", "ses_quintile:2")),
        (18, 3, ("age_band:18-64", "ses_quintile:3")),
        (64, 4, ("age_band:18-64", "ses_quintile:4")),
        (65, 5, ("age_band:65-79", "ses_quintile:5")),
        (79, None, ("age_band:65-79", "ses_quintile:unknown")),
        (120, None, ("age_band:80+", "ses_quintile:unknown")),
    ],
)
def test_age_band_and_ses_labels(age: int, ses: int | None, want: tuple[str, str]) -> None:
    rows = run([survey("x", age_years=age, ses_quintile=ses)])
    labels = {k[3] for k in rows if k[:2] == ("home_death_share", "nation") and k[4] == "month"}
    assert set(want) <= labels
    assert len([lbl for lbl in labels if lbl.startswith("age_band:")]) == 1


# ---- rolling windows ------------------------------------------------------------------------


def days(first: str, last: str) -> list[date]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


def test_rolling_day_window_ends_and_the_settled_limit() -> None:
    rows = run([survey("a", "2026-05-01")])
    # Ends from the death to N − 1 days later, not before as_of − 193 = 2026-05-14.
    assert ends(rows, "home_death_share", "nation", "SE", "rolling_30d") == days(
        "2026-05-14", "2026-05-30"
    )
    assert ends(rows, "home_death_share", "region", "09", "rolling_90d") == days(
        "2026-05-14", "2026-07-29"
    )
    assert ends(rows, "home_death_share", "nation", "SE", "rolling_365d") == days(
        "2026-05-14", "2026-11-23"
    )
    r = get(rows, "home_death_share", "nation", "SE", "rolling_30d", date(2026, 5, 14))
    assert r.period_start == date(2026, 4, 15) and r.suppressed
    # Complete when as_of − end > 183: up to 2026-05-23.
    assert r.period_complete
    assert get(
        rows, "home_death_share", "nation", "SE", "rolling_30d", date(2026, 5, 23)
    ).period_complete
    assert not get(
        rows, "home_death_share", "nation", "SE", "rolling_30d", date(2026, 5, 24)
    ).period_complete

    # A death long before: only the 365-day windows still reach into the open horizon.
    old = run([survey("b", "2026-01-01")])
    assert ends(old, "home_death_share", "nation", "SE", "rolling_30d") == []
    assert ends(old, "home_death_share", "nation", "SE", "rolling_90d") == []
    assert ends(old, "home_death_share", "nation", "SE", "rolling_365d") == days(
        "2026-05-14", "2026-11-23"
    )
    # A recent death: ends up to as_of only.
    recent = run([survey("c", "2026-11-20")])
    assert ends(recent, "home_death_share", "nation", "SE", "rolling_30d") == days(
        "2026-11-20", "2026-11-23"
    )  # fmt: skip


def test_rolling_window_values() -> None:
    history = [home(f"h{i}", death="2026-10-01") for i in range(3)]
    history += [survey(f"o{i}", death="2026-10-31") for i in range(3)]
    rows = run(history)
    # 30 days ending 10-30 hold only the three home deaths: n = 3, suppressed.
    assert get(
        rows, "home_death_share", "nation", "SE", "rolling_30d", date(2026, 10, 30)
    ).suppressed
    # Ending 10-31: 2026-10-02 .. 10-31, the home deaths are out.
    r = get(rows, "home_death_share", "nation", "SE", "rolling_30d", date(2026, 10, 31))
    assert r.suppressed  # n = 3
    r = get(rows, "home_death_share", "region", "09", "rolling_90d", date(2026, 10, 31))
    assert (r.n, r.numerator, r.value) == (6, 3.0, 0.5)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.18761, 0.81239), abs=1e-5)
    assert r.period_start == date(2026, 8, 3)


def test_rolling_12m_ends_stop_at_the_month_of_as_of() -> None:
    rows = run([survey("a", "2026-03-10"), survey("b", "2025-06-10", "2025-06-20")])
    got = ends(rows, "home_death_share", "municipality", "0980", "rolling_12m")
    want_from_june = [date(2025, m, 1) for m in range(6, 13)] + [
        date(2026, m, 1) for m in range(1, 12)
    ]
    # Ends 2025-06 .. 2026-05 from the June death, 2026-03 .. 2026-11 from the March death.
    assert [d.replace(day=1) for d in got] == want_from_june
    r = get(rows, "home_death_share", "municipality", "0980", "rolling_12m", date(2026, 5, 31))
    assert r.period_start == date(2025, 6, 1)
    assert ("home_death_share", "municipality", "0980", "all", "rolling_12m",
            date(2026, 12, 31)) not in rows  # fmt: skip


# ---- suppression, coverage and the need family ------------------------------------------------


def test_share_suppressed_below_five_and_denominator_condition() -> None:
    expected: dict[str, Any] = {"expected_death": True}
    four = [survey(f"e{i}", measures={"eol_conversation": True}, **expected) for i in range(4)]
    r = get(run(four), "eol_conversation", "nation", "SE", "month", MAR)
    assert r.suppressed
    assert (r.value, r.numerator, r.denominator, r.n, r.ci_low, r.ci_high) == (None,) * 6
    five = [*four, survey("e4", measures={"eol_conversation": None}, **expected)]
    r = get(run(five), "eol_conversation", "nation", "SE", "month", MAR)
    # An unanswered item counts as not done.
    assert (r.suppressed, r.n, r.numerator, r.value) == (False, 5, 4.0, 0.8)
    # Not expected deaths: outside the population, but the row exists (n = 0, suppressed).
    r = get(run([survey("u")]), "eol_conversation", "region", "09", "month", MAR)
    assert r.suppressed
    # Hospital admission: the unanswered are left out of the denominator.
    adm = [survey(f"a{i}", measures={"hospital_admission_last_30d": i < 2}, **expected)
           for i in range(5)]  # fmt: skip
    adm.append(survey("a9", measures={}, **expected))
    r = get(run(adm), "hospital_admission_last_30d", "nation", "SE", "month", MAR)
    assert (r.n, r.numerator, r.value) == (5, 2.0, 0.4)


def test_received_unmet_suppression_and_need_never() -> None:
    spec: dict[str, Any] = {"care_setting": "specialised_inpatient"}
    three = [survey(f"s{i}", **spec) for i in range(2)] + [
        survey("c", palliative_consult=True),
        survey("n1"),
        survey("n2"),
    ]
    rows = run(three, [official("09", "2026-03", 40)])

    def at(ind: str) -> IndicatorValue:
        return get(rows, ind, "region", "09", "month", MAR)

    assert at("spec_need").value == 10.0 and not at("spec_need").suppressed
    for ind in ("spec_received", "spec_unmet", "spec_unmet_share"):
        assert at(ind).suppressed and at(ind).value is None, ind
    cov = at("registry_coverage")
    assert (cov.value, cov.numerator, cov.denominator, cov.n) == (0.125, 5.0, 40.0, 40)

    five = [survey(f"s{i}", **spec) for i in range(5)]
    rows = run(five, [official("09", "2026-03", 40)])
    assert (at("spec_received").value, at("spec_received").numerator) == (5.0, 5.0)
    assert at("spec_received").n is None and at("spec_received").denominator is None
    assert at("spec_unmet").value == 5.0
    us = at("spec_unmet_share")
    assert (us.value, us.numerator, us.denominator, us.n) == (0.5, 5.0, 10.0, 40)
    assert (us.ci_low, us.ci_high) == pytest.approx((0.23659, 0.76341), abs=1e-5)

    # Received 0 is not suppressed; unmet_share is when the official deaths are below 5.
    rows = run([survey("n")], [official("09", "2026-03", 4)])
    assert (at("spec_received").value, at("spec_received").suppressed) == (0.0, False)
    assert (at("spec_unmet").value, at("spec_unmet").suppressed) == (1.0, False)
    assert at("spec_unmet_share").suppressed
    assert at("spec_need").value == 1.0
    assert at("registry_coverage").suppressed  # n = 4 official deaths

    # More received than the need: unmet negative, no interval.
    rows = run([survey(f"s{i}", **spec) for i in range(6)], [official("09", "2026-03", 20)])
    assert at("spec_unmet").value == -1.0
    us = at("spec_unmet_share")
    assert (us.value, us.ci_low, us.ci_high) == (-0.2, None, None)


def test_coverage_values_periods_and_wilson() -> None:
    history = [survey(f"s{i}") for i in range(5)]
    offs = [official("09", "2026-03", 20), official("09", "2026-02", 30),
            official("03", "2026-01", 10), official("03", "2026-01", 12)]  # fmt: skip
    rows = run(history, offs)
    r = get(rows, "registry_coverage", "region", "09", "month", MAR)
    assert (r.value, r.numerator, r.denominator, r.n) == (0.25, 5.0, 20.0, 20)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.11186, 0.46870), abs=1e-5)
    assert r.period_complete and r.nowcast is None  # as_of − 2026-03-31 = 237 > 183
    # Quarter: Feb + Mar official deaths; the nation adds region 03's replaced January count.
    q = get(rows, "registry_coverage", "region", "09", "quarter", MAR)
    assert (q.numerator, q.n, q.value) == (5.0, 50, 0.1)
    nq = get(rows, "registry_coverage", "nation", "SE", "quarter", MAR)
    assert (nq.numerator, nq.n) == (5.0, 62)
    assert get(rows, "spec_need", "nation", "SE", "year", date(2026, 12, 31)).value == 15.5
    # A month with only an official count has rows; a month with neither has none.
    jan = get(rows, "registry_coverage", "region", "03", "month", date(2026, 1, 31))
    assert (jan.value, jan.n) == (0.0, 12)
    assert ("registry_coverage", "region", "03", "all", "month", MAR) not in rows
    assert ends(rows, "registry_coverage", "region", "09", "month") == [date(2026, 2, 28), MAR]
    # Rolling 12 months from 2026-02 to the month of as_of.
    assert len(ends(rows, "registry_coverage", "region", "09", "rolling_12m")) == 10
    r12 = get(rows, "registry_coverage", "region", "09", "rolling_12m", date(2026, 11, 30))
    assert (r12.numerator, r12.n) == (5.0, 50)
    # More registered than official deaths: no interval.
    over = run([survey(f"s{i}") for i in range(6)], [official("09", "2026-03", 5)])
    r = get(over, "registry_coverage", "region", "09", "month", MAR)
    assert (r.value, r.ci_low, r.ci_high) == (1.2, None, None)


def test_completeness_boundary() -> None:
    history = [survey("a")]
    edge = date(2026, 3, 31) + timedelta(days=183)  # 2026-09-30
    r = get(run(history, as_of=edge), "home_death_share", "nation", "SE", "month", MAR)
    assert not r.period_complete
    r = get(run(history, as_of=edge + timedelta(days=1)), "home_death_share", "nation", "SE",
            "month", MAR)  # fmt: skip
    assert r.period_complete


# ---- nowcast --------------------------------------------------------------------------------


def test_nowcast_by_hand() -> None:
    """Learning months for as_of 2026-11-23: 2025-05 .. 2026-04 (2026-04 the latest complete)."""
    learn = [
        survey("l1", "2026-04-10", "2026-04-15"),  # delay 5
        survey("l2", "2026-04-10", "2026-04-20"),  # delay 10
        survey("l3", "2026-04-10", "2026-04-30"),  # delay 20
        survey("l4", "2026-04-10", "2026-05-20"),  # delay 40
        survey("x1", "2025-04-15", "2025-07-24"),  # 2025-04: too old to learn from
        survey("x2", "2026-05-15", "2026-05-15"),  # 2026-05: not complete
        survey("x3", "2026-04-12", "2026-04-12", status="withdrawn"),  # not active
    ]
    # F(a) = 0 for a < 5, 1/4 for 5 ≤ a < 10, 2/4 up to 19, 3/4 up to 39, 1 from 40.
    now = [
        survey("n1", "2026-11-20"),  # as_of − d = 3: F = 0, counts as 1
        survey("n2", "2026-11-13"),  # 10: F = 1/2, 1 -> 2
        survey("n3", "2026-11-03"),  # 20: F = 3/4, 2 -> 2.6667
        survey("n4", "2026-11-03"),
    ]
    offs = [official("09", "2026-11", 10), official("09", "2026-04", 8)]
    rows = run([*learn, *now], offs)
    r = get(rows, "registry_coverage", "region", "09", "month", date(2026, 11, 30))
    assert (r.value, r.n, r.period_complete) == (0.4, 10, False)
    assert r.nowcast == pytest.approx((1 + 2 + 2 / 0.75) / 10)  # 0.566667
    assert get(rows, "registry_coverage", "nation", "SE", "month", date(2026, 11, 30)).nowcast == (
        pytest.approx(0.566667, abs=1e-6)
    )
    # Complete periods carry none.
    assert (
        get(rows, "registry_coverage", "region", "09", "month", date(2026, 4, 30)).nowcast is None
    )
    # The learning surveys themselves (died 04-10, as_of − d = 227: F = 1) in the rolling year.
    r12 = get(rows, "registry_coverage", "region", "09", "rolling_12m", date(2026, 11, 30))
    # 2025-12 .. 2026-11: l1..l4 (1 each), x2 (as_of − d = 192: F = 1), n1..n4 as above.
    assert r12.nowcast == pytest.approx((4 + 1 + 1 + 2 + 2 / 0.75) / 18)
    # No learning data in a region: no nowcast; suppressed rows carry none either.
    rows = run([survey("z", "2026-11-03", region="03", muni="0380"), *learn],
               [official("03", "2026-11", 9), official("09", "2026-11", 3)])  # fmt: skip
    assert (
        get(rows, "registry_coverage", "region", "03", "month", date(2026, 11, 30)).nowcast is None
    )
    sup = get(rows, "registry_coverage", "region", "09", "month", date(2026, 11, 30))
    assert sup.suppressed and sup.nowcast is None
    # No official deaths at all: the row is suppressed (n = 0).
    assert get(run([*learn, *now]), "registry_coverage", "region", "09", "month",
               date(2026, 11, 30)).suppressed  # fmt: skip


# ---- structural -----------------------------------------------------------------------------


def test_per_100k_with_population_fallback_and_evaluation_date() -> None:
    units = [
        unit("b1", "inpatient_hospital", "2026-09-15", region="09", muni="0980", beds=10,
             physicians=1.5),
        unit("b2", "inpatient_non_hospital", "2026-09-15", region="09", muni="0980", beds=6),
        unit("b3", "general_care", "2026-09-15", region="09", muni="0980", beds=50),
        unit("b1", "inpatient_hospital", "2026-11-20", region="09", muni="0980", event="closed"),
    ]  # fmt: skip
    pops = [population("0980", 2025, 50_000), population("0980", 2025, 60_000),
            population("0980", 2027, 1)]  # fmt: skip
    rows = run([], [], units, pops)
    oct31 = date(2026, 10, 31)
    r = get(rows, "palliative_beds_per_100k", "region", "09", "month", oct31)
    # 2026 falls back to 2025's (replaced) count: 16 / 60 000 × 100 000.
    assert (r.numerator, r.denominator) == (16.0, 60_000.0)
    assert r.value == pytest.approx(26.666667, abs=1e-6)
    assert (r.n, r.suppressed, r.ci_low, r.period_complete) == (None, False, None, True)
    assert get(rows, "hospital_palliative_beds_per_100k", "nation", "SE", "month", oct31).value == (
        pytest.approx(16.666667, abs=1e-6)
    )
    assert get(rows, "specialist_physicians_per_100k", "region", "09", "month", oct31).value == (
        pytest.approx(2.5)
    )
    # Before the units opened: 0; a region without population: null.
    assert (
        get(rows, "palliative_beds_per_100k", "region", "09", "month", date(2026, 8, 31)).value
        == 0.0
    )
    r = get(rows, "palliative_beds_per_100k", "region", "03", "month", oct31)
    assert (r.value, r.numerator, r.denominator) == (None, 0.0, 0.0)
    # November is evaluated at as_of (2026-11-23): b1 closed on 11-20.
    nov = get(rows, "palliative_beds_per_100k", "region", "09", "month", date(2026, 11, 30))
    assert (nov.numerator, nov.period_complete) == (6.0, False)
    earlier = run([], [], units, pops, as_of=date(2026, 11, 19))
    assert get(earlier, "palliative_beds_per_100k", "region", "09", "month",
               date(2026, 11, 30)).numerator == 16.0  # fmt: skip
    # Rows from the first population January (2025-01) to the month of as_of, every region.
    got = ends(rows, "palliative_beds_per_100k", "region", "12", "month")
    assert len(got) == 23 and got[0] == date(2025, 1, 31) and got[-1] == date(2026, 11, 30)
    assert len([k for k in rows if k[0] == "palliative_beds_per_100k" and k[5] == oct31]) == 22
    assert get(rows, "palliative_beds_per_100k", "region", "12", "month", oct31).value is None


def test_structural_completeness_is_period_end_before_as_of() -> None:
    units = [unit("c", "consult_team", "2026-11-01")]
    nov30 = date(2026, 11, 30)
    r = get(
        run([], [], units, as_of=nov30), "consult_team_available", "nation", "SE", "month", nov30
    )
    assert not r.period_complete
    later = run([], [], units, as_of=date(2026, 12, 1))
    assert get(later, "consult_team_available", "nation", "SE", "month", nov30).period_complete
    assert ends(later, "consult_team_available", "nation", "SE", "month") == [
        nov30,
        date(2026, 12, 31),
    ]


def test_availability_catchments_requirements_and_closures() -> None:
    units = [
        unit("a", "consult_team", "2026-01-01", catchment=["0305", "0319"]),
        unit("b", "consult_team", "2026-01-01", muni="0330", children=False),  # fails require
        unit("c", "consult_team", "2026-01-01", muni="0331"),  # empty catchment: own municipality
        unit("c", "consult_team", "2026-06-01", muni="0331", event="closed"),
        unit("d", "outpatient_clinic", "2026-01-01", muni="0360"),  # another kind
        # Two events of a unit on one date: the last to arrive wins.
        unit("e", "consult_team", "2026-03-01", muni="0380"),
        unit("e", "consult_team", "2026-03-01", muni="0380", event="closed"),
        unit("f", "consult_team", "2026-03-01", muni="0381", event="closed"),
        unit("f", "consult_team", "2026-03-01", muni="0381"),
        # A catchment across the region border counts for the other region.
        unit("g", "consult_team", "2026-01-01", catchment=["0980"]),
    ]
    rows = run([], [], units)
    may, jun = date(2026, 5, 31), date(2026, 6, 30)

    def value(scope: str, code: str, end: date) -> float | None:
        return get(rows, "consult_team_available", scope, code, "month", end).value

    assert [value("municipality", m, may) for m in ("0305", "0319", "0330", "0331", "0360",
                                                      "0380", "0381", "0382")] == [
        1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0
    ]  # fmt: skip
    assert value("municipality", "0331", jun) == 0.0
    r = get(rows, "consult_team_available", "region", "03", "month", may)
    assert (r.numerator, r.denominator, r.value) == (4.0, 8.0, 0.5)
    assert value("region", "03", jun) == 3 / 8
    assert value("region", "09", may) == 1.0
    n = get(rows, "consult_team_available", "nation", "SE", "month", may)
    assert (n.numerator, n.denominator, n.value) == (5.0, 290.0, 5 / 290)
    m = get(rows, "consult_team_available", "municipality", "0305", "month", may)
    assert (m.denominator, m.n, m.suppressed) == (1.0, None, False)
    # Structural rows for every region and municipality of the code lists, from 2026-01.
    assert (
        len([k for k in rows if k[0] == "consult_team_available" and k[5] == may]) == 1 + 21 + 290
    )
    assert ends(rows, "outpatient_clinic_available", "municipality", "2505", "month")[0] == date(
        2026, 1, 31
    )
    assert (
        "consult_team_available",
        "nation",
        "SE",
        "all",
        "month",
        date(2025, 12, 31),
    ) not in rows


def test_no_data_no_rows() -> None:
    assert run() == {}
