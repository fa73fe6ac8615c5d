"""Unit tests of the pure indicator core (processors/core.py): no Kafka, no database.

Properties (hypothesis) cover the bucket arithmetic that the streaming worker relies on
(retraction symmetry, revision chains, order independence), the rolling-window month
arithmetic and small-cell suppression; hand-computed examples pin exact numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.catalogue import MIN_CELL_N, SPECIALISED_NEED_SHARE
from processors.core import (
    PERIOD_ROLLING_12M,
    ROLLING_MONTHS,
    Contribution,
    Counts,
    IndicatorValue,
    MonthTotals,
    add_months,
    affected_window_ends,
    batch_recompute,
    month_first_day,
    month_from_index,
    month_index,
    month_last_day,
    received_specialised_care,
    revision_deltas,
    rolling_region_indicators,
    survey_contribution,
    window_months,
)
from schemas.codes import municipalities_by_region
from schemas.models import DeathSurvey

FAST = settings(max_examples=200, deadline=None)

Buckets = dict[tuple[str, str], Counts]

PROPORTIONS = ("registry_coverage", "spec_unmet_share", "home_death_share")
ALL_INDICATORS = (
    "registry_coverage",
    "spec_need",
    "spec_received",
    "spec_unmet",
    "spec_unmet_share",
    "home_death_share",
)


# ---- helpers ------------------------------------------------------------------------------


def muni(region: str) -> str:
    return municipalities_by_region()[region][0]


def make_survey(
    sid: str = "s1",
    *,
    revision: int = 1,
    status: str = "active",
    region: str = "01",
    municipality: str | None = None,
    death: str = "2024-03-10",
    submitted: str | None = None,
    place: str = "hospital",
    setting: str = "hospital_ward",
    consult: bool = False,
) -> DeathSurvey:
    raw: dict[str, Any] = {
        "schema_version": 1,
        "survey_id": sid,
        "revision": revision,
        "status": status,
        "submitted_at": submitted or f"{death}T18:00:00Z",
        "unit_id": "unit-test",
        "region_code": region,
        "municipality_code": municipality or muni(region),
        "person_ref": hashlib.sha256(f"core-test-{sid}".encode()).hexdigest(),
        "date_of_death": death,
        "sex": "male",
        "age_years": 77,
        "ses_quintile": None,
        "diagnosis_group": "copd",
        "expected_death": True,
        "place_of_death": place,
        "care_setting": setting,
        "palliative_consult": consult,
        "measures": {},
    }
    return DeathSurvey.model_validate(raw)


def apply(buckets: Buckets, deltas: Iterable[Contribution]) -> Buckets:
    out = dict(buckets)
    for d in deltas:
        key = (d.region_code, d.month)
        out[key] = out.get(key, Counts()) + d.counts
    return out


def nonzero(buckets: Mapping[tuple[str, str], Counts]) -> Buckets:
    return {k: v for k, v in buckets.items() if not v.is_zero()}


def by_id(rows: Iterable[IndicatorValue]) -> dict[str, IndicatorValue]:
    return {r.indicator_id: r for r in rows}


# ---- strategies ---------------------------------------------------------------------------

# Few regions and months so that corrections often land in the same bucket and often move.
REGIONS = ("01", "03", "09", "25")
MONTHS = ("2023-11", "2023-12", "2024-01", "2024-02")

months_any = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(1900, 2200), st.integers(1, 12))
counts_any = st.builds(Counts, st.integers(-50, 50), st.integers(-50, 50), st.integers(-50, 50))
# What one survey revision can contribute: registered 1, own_home and received 0 or 1.
counts_survey = st.builds(Counts, st.just(1), st.integers(0, 1), st.integers(0, 1))
contribution = st.builds(
    Contribution, st.sampled_from(REGIONS), st.sampled_from(MONTHS), counts_survey
)
contribution_or_none = st.none() | contribution
delta_any = st.builds(Contribution, st.sampled_from(REGIONS), st.sampled_from(MONTHS), counts_any)
buckets_any = st.dictionaries(
    st.tuples(st.sampled_from(REGIONS), st.sampled_from(MONTHS)), counts_any, max_size=8
)


# ---- Counts / Contribution basics ---------------------------------------------------------


def test_counts_arithmetic_and_round_trip() -> None:
    a = Counts(registered=3, own_home=1, spec_received=2)
    b = Counts(registered=-1, own_home=0, spec_received=-2)
    assert a + b == Counts(2, 1, 0)
    assert -a == Counts(-3, -1, -2)
    assert (a + -a).is_zero()
    assert not a.is_zero()
    assert Counts.from_dict(a.as_dict()) == a
    assert Counts.from_dict({"registered": 4}) == Counts(4, 0, 0)
    c = Contribution("09", "2025-01", a)
    assert c.as_dict() == {
        "region_code": "09",
        "month": "2025-01",
        "registered": 3,
        "own_home": 1,
        "spec_received": 2,
    }
    assert Contribution.from_dict(c.as_dict()) == c


@FAST
@given(delta_any)
def test_contribution_dict_round_trip(c: Contribution) -> None:
    assert Contribution.from_dict(c.as_dict()) == c


# ---- survey_contribution -------------------------------------------------------------------


def test_survey_contribution_counts_one_registered_death_in_its_region_and_death_month() -> None:
    s = make_survey(region="09", death="2025-01-31", place="own_home", setting="primary_care")
    assert survey_contribution(s) == Contribution("09", "2025-01", Counts(1, 1, 0))


@pytest.mark.parametrize(
    ("place", "setting", "consult", "own_home", "received"),
    [
        ("own_home", "specialised_home_care", False, 1, 1),
        ("own_home", "municipal_home_care", False, 1, 0),
        ("own_home", "municipal_home_care", True, 1, 1),
        ("specialised_palliative_inpatient", "specialised_inpatient", False, 0, 1),
        ("hospital", "hospital_ward", True, 0, 1),
        ("hospital", "hospital_ward", False, 0, 0),
        ("nursing_home", "nursing_home", False, 0, 0),
        ("nursing_home", "nursing_home", True, 0, 1),
    ],
)
def test_survey_contribution_own_home_and_received(
    place: str, setting: str, consult: bool, own_home: int, received: int
) -> None:
    s = make_survey(place=place, setting=setting, consult=consult)
    assert received_specialised_care(s) is bool(received)
    c = survey_contribution(s)
    assert c is not None
    assert c.counts == Counts(registered=1, own_home=own_home, spec_received=received)


def test_withdrawn_survey_contributes_nothing() -> None:
    s = make_survey(revision=2, status="withdrawn", place="own_home", setting="primary_care")
    assert survey_contribution(s) is None


# ---- revision_deltas -----------------------------------------------------------------------


def test_revision_deltas_cases() -> None:
    a = Contribution("01", "2024-01", Counts(1, 1, 0))
    same_bucket = Contribution("01", "2024-01", Counts(1, 0, 1))
    moved = Contribution("03", "2024-02", Counts(1, 1, 0))
    assert revision_deltas(None, None) == []
    assert revision_deltas(a, a) == []
    assert revision_deltas(None, a) == [a]
    assert revision_deltas(a, None) == [Contribution("01", "2024-01", Counts(-1, -1, 0))]
    assert revision_deltas(a, same_bucket) == [Contribution("01", "2024-01", Counts(0, -1, 1))]
    assert revision_deltas(a, moved) == [
        Contribution("01", "2024-01", Counts(-1, -1, 0)),
        Contribution("03", "2024-02", Counts(1, 1, 0)),
    ]
    # A move of month only, and of region only, are both two deltas.
    assert len(revision_deltas(a, Contribution("01", "2024-02", a.counts))) == 2
    assert len(revision_deltas(a, Contribution("03", "2024-01", a.counts))) == 2


@FAST
@given(buckets_any, contribution_or_none, contribution_or_none)
def test_retraction_symmetry(
    buckets: Buckets, old: Contribution | None, new: Contribution | None
) -> None:
    there = apply(buckets, revision_deltas(old, new))
    back = apply(there, revision_deltas(new, old))
    assert nonzero(back) == nonzero(buckets)


@FAST
@given(contribution_or_none, contribution_or_none)
def test_revision_deltas_turn_old_into_new(
    old: Contribution | None, new: Contribution | None
) -> None:
    start = apply({}, [old] if old else [])
    end = apply(start, revision_deltas(old, new))
    assert nonzero(end) == nonzero(apply({}, [new] if new else []))
    assert all(not d.counts.is_zero() for d in revision_deltas(old, new))


@FAST
@given(st.lists(contribution_or_none, min_size=1, max_size=12))
def test_chain_of_revisions_sums_to_final_contribution_alone(
    chain: list[Contribution | None],
) -> None:
    # Revision 1 starts from nothing; every later revision replaces the previous one (None is a
    # withdrawal). Only the last revision's contribution may remain.
    deltas: list[Contribution] = []
    previous: Contribution | None = None
    for c in chain:
        deltas += revision_deltas(previous, c)
        previous = c
    final = chain[-1]
    expected = {} if final is None else {(final.region_code, final.month): final.counts}
    assert nonzero(apply({}, deltas)) == expected


@st.composite
def survey_chains(draw: st.DrawFn) -> list[DeathSurvey]:
    n = draw(st.integers(1, 6))
    out = []
    for rev in range(1, n + 1):
        region = draw(st.sampled_from(REGIONS))
        month = draw(st.sampled_from(MONTHS))
        place, setting = draw(
            st.sampled_from(
                [
                    ("own_home", "specialised_home_care"),
                    ("own_home", "primary_care"),
                    ("hospital", "hospital_ward"),
                    ("specialised_palliative_inpatient", "specialised_inpatient"),
                ]
            )
        )
        out.append(
            make_survey(
                "chain",
                revision=rev,
                status=draw(st.sampled_from(["active", "active", "withdrawn"])),
                region=region,
                death=f"{month}-{draw(st.integers(1, 28)):02d}",
                place=place,
                setting=setting,
                consult=draw(st.booleans()),
            )
        )
    return out


@FAST
@given(survey_chains())
def test_chain_of_survey_revisions_with_moves_and_withdrawals(chain: list[DeathSurvey]) -> None:
    deltas: list[Contribution] = []
    previous: Contribution | None = None
    for s in chain:
        c = survey_contribution(s)
        deltas += revision_deltas(previous, c)
        previous = c
    final = survey_contribution(chain[-1])
    expected = {} if final is None else {(final.region_code, final.month): final.counts}
    assert nonzero(apply({}, deltas)) == expected


@FAST
@given(
    st.lists(delta_any, max_size=20).flatmap(lambda ds: st.tuples(st.just(ds), st.permutations(ds)))
)
def test_bucket_totals_do_not_depend_on_delta_order(
    pair: tuple[list[Contribution], list[Contribution]],
) -> None:
    deltas, shuffled = pair
    assert nonzero(apply({}, deltas)) == nonzero(apply({}, shuffled))
    assert nonzero(apply({}, deltas)) == nonzero(apply({}, reversed(deltas)))


# ---- months and windows --------------------------------------------------------------------


def test_month_arithmetic_examples() -> None:
    assert add_months("2024-12", 1) == "2025-01"
    assert add_months("2025-01", -1) == "2024-12"
    assert add_months("2024-01", -13) == "2022-12"
    assert add_months("2024-06", 0) == "2024-06"
    assert add_months("1999-12", 121) == "2010-01"
    assert month_first_day("2024-02") == date(2024, 2, 1)
    assert month_last_day("2024-02") == date(2024, 2, 29)
    assert month_last_day("2023-02") == date(2023, 2, 28)
    assert month_last_day("2023-12") == date(2023, 12, 31)
    assert month_last_day("2024-04") == date(2024, 4, 30)
    assert month_index("2024-01") - month_index("2023-12") == 1


def test_window_months_example_across_year_boundary() -> None:
    assert window_months("2025-02") == [
        "2024-03",
        "2024-04",
        "2024-05",
        "2024-06",
        "2024-07",
        "2024-08",
        "2024-09",
        "2024-10",
        "2024-11",
        "2024-12",
        "2025-01",
        "2025-02",
    ]
    assert affected_window_ends("2024-12", "2025-02") == ["2024-12", "2025-01", "2025-02"]
    assert affected_window_ends("2024-12", "2024-11") == []
    assert affected_window_ends("2024-01", "2030-01") == [f"2024-{m:02d}" for m in range(1, 13)]


@FAST
@given(months_any, st.integers(-600, 600))
def test_month_round_trips(month: str, k: int) -> None:
    assert month_from_index(month_index(month)) == month
    assert add_months(add_months(month, k), -k) == month
    assert month_index(add_months(month, k)) - month_index(month) == k
    # The calendar agrees with the index arithmetic.
    first = month_first_day(month)
    nxt = month_first_day(add_months(month, 1))
    assert (nxt.year, nxt.month) == (
        (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
    )
    assert (month_last_day(month) - first).days + 1 in (28, 29, 30, 31)
    assert month_last_day(month).toordinal() + 1 == nxt.toordinal()


@FAST
@given(months_any)
def test_window_months_are_twelve_consecutive_months_ending_with_end(end: str) -> None:
    w = window_months(end)
    assert len(w) == ROLLING_MONTHS == 12
    assert w[-1] == end
    assert [month_index(m) for m in w] == list(range(month_index(end) - 11, month_index(end) + 1))


@FAST
@given(months_any, st.integers(-30, 30))
def test_affected_window_ends_are_exactly_the_windows_holding_the_month(
    month: str, offset: int
) -> None:
    last = add_months(month, offset)
    got = affected_window_ends(month, last)
    candidates = [add_months(month, k) for k in range(-40, 41)]
    expected = [
        e for e in candidates if month in window_months(e) and month_index(e) <= month_index(last)
    ]
    assert got == expected
    assert len(got) == max(0, min(12, offset + 1))


# ---- indicator values: hand-computed examples -------------------------------------------


def test_rolling_indicators_hand_computed() -> None:
    # Region 09, window 2024-03 .. 2025-02. Official deaths 20 per month -> 240.
    totals = {m: MonthTotals(Counts(), 20) for m in window_months("2025-02")}
    totals["2024-05"] = MonthTotals(Counts(registered=30, own_home=6, spec_received=10), 20)
    totals["2025-01"] = MonthTotals(Counts(registered=18, own_home=3, spec_received=8), 20)
    # Outside the window on both sides: must not count.
    totals["2024-02"] = MonthTotals(Counts(100, 100, 100), 1000)
    totals["2025-03"] = MonthTotals(Counts(100, 100, 100), 1000)

    rows = rolling_region_indicators("09", "2025-02", totals)
    assert [r.indicator_id for r in rows] == list(ALL_INDICATORS)
    for r in rows:
        assert (r.scope_type, r.scope_code, r.period_type) == ("region", "09", PERIOD_ROLLING_12M)
        assert (r.period_start, r.period_end) == (date(2024, 3, 1), date(2025, 2, 28))
        assert not r.suppressed
    v = by_id(rows)

    # coverage = registered / official = 48 / 240
    cov = v["registry_coverage"]
    assert (cov.value, cov.numerator, cov.denominator, cov.n) == (0.2, 48, 240, 240)
    # need = 0.25 * 240 = 60
    need = v["spec_need"]
    assert (need.value, need.numerator, need.denominator, need.n) == (60.0, 60.0, None, None)
    assert (v["spec_received"].value, v["spec_received"].numerator) == (18, 18)
    assert (v["spec_unmet"].value, v["spec_unmet"].numerator) == (42.0, 42.0)
    # unmet share = (60 - 18) / 60 = 0.7
    share = v["spec_unmet_share"]
    assert share.value == pytest.approx(0.7, abs=1e-12)
    assert (share.numerator, share.denominator, share.n) == (42.0, 60.0, 240)
    # home share = own_home / registered = 9 / 48
    home = v["home_death_share"]
    assert (home.value, home.numerator, home.denominator, home.n) == (9 / 48, 9, 48, 48)


def test_rolling_indicators_negative_unmet_when_received_exceeds_need() -> None:
    totals = {"2024-06": MonthTotals(Counts(registered=30, own_home=0, spec_received=15), 40)}
    v = by_id(rolling_region_indicators("01", "2024-12", totals))
    assert v["spec_need"].value == 10.0
    assert v["spec_unmet"].value == -5.0
    assert v["spec_unmet_share"].value == pytest.approx(-0.5)
    assert v["registry_coverage"].value == 0.75
    assert v["home_death_share"].value == 0.0


def test_rolling_indicators_need_uses_the_configured_share() -> None:
    assert SPECIALISED_NEED_SHARE == 0.25
    totals = {"2024-06": MonthTotals(Counts(), 242)}
    v = by_id(rolling_region_indicators("01", "2024-06", totals))
    assert v["spec_need"].value == 60.5
    assert v["spec_received"].value == 0 and not v["spec_received"].suppressed
    assert v["spec_unmet_share"].value == 1.0


def test_rolling_indicators_suppression_examples() -> None:
    # official 4 (< 5): coverage and unmet share suppressed; registered 4: home share too;
    # received 2 (1..4): received, unmet and unmet share suppressed; need is public.
    totals = {"2024-06": MonthTotals(Counts(registered=4, own_home=1, spec_received=2), 4)}
    v = by_id(rolling_region_indicators("01", "2024-12", totals))
    for ind in ("registry_coverage", "spec_received", "spec_unmet", "spec_unmet_share"):
        assert v[ind].suppressed, ind
    assert v["home_death_share"].suppressed
    assert not v["spec_need"].suppressed and v["spec_need"].value == 1.0

    # Large official count but received 4: complementary suppression of received/unmet/share.
    totals = {"2024-06": MonthTotals(Counts(registered=50, own_home=10, spec_received=4), 100)}
    v = by_id(rolling_region_indicators("01", "2024-12", totals))
    assert v["spec_received"].suppressed
    assert v["spec_unmet"].suppressed
    assert v["spec_unmet_share"].suppressed
    assert not v["registry_coverage"].suppressed and v["registry_coverage"].value == 0.5
    assert not v["home_death_share"].suppressed and v["home_death_share"].value == 0.2

    # Received exactly 5 is published.
    totals = {"2024-06": MonthTotals(Counts(registered=50, own_home=10, spec_received=5), 100)}
    v = by_id(rolling_region_indicators("01", "2024-12", totals))
    assert v["spec_received"].value == 5
    assert v["spec_unmet"].value == 20.0
    assert v["spec_unmet_share"].value == 0.8


def test_rolling_indicators_with_no_data_are_suppressed_not_divided_by_zero() -> None:
    v = by_id(rolling_region_indicators("01", "2024-12", {}))
    assert v["registry_coverage"].suppressed
    assert v["spec_unmet_share"].suppressed
    assert v["home_death_share"].suppressed
    assert v["spec_need"].value == 0.0
    assert v["spec_received"].value == 0


# ---- suppression properties ----------------------------------------------------------------

month_totals = st.builds(
    lambda reg, home, rec, off: MonthTotals(
        Counts(registered=reg, own_home=min(home, reg), spec_received=min(rec, reg)), off
    ),
    st.integers(0, 6),
    st.integers(0, 6),
    st.integers(0, 3),
    st.none() | st.integers(0, 6),
)
totals_strategy = st.dictionaries(
    st.sampled_from([add_months("2024-01", k) for k in range(-2, 15)]), month_totals, max_size=6
)


@FAST
@given(totals_strategy, st.sampled_from(["2024-06", "2024-12", "2025-02"]))
def test_suppression_properties(totals: dict[str, MonthTotals], end: str) -> None:
    rows = rolling_region_indicators("03", end, totals)
    v = by_id(rows)
    assert set(v) == set(ALL_INDICATORS)

    in_window = [totals[m] for m in window_months(end) if m in totals]
    registered = sum(t.counts.registered for t in in_window)
    own_home = sum(t.counts.own_home for t in in_window)
    received = sum(t.counts.spec_received for t in in_window)
    official = sum(t.official_deaths or 0 for t in in_window)

    for r in rows:
        if r.suppressed:
            assert (r.value, r.numerator, r.denominator, r.n) == (None, None, None, None)
        else:
            assert r.value is not None

    n_of = {
        "registry_coverage": official,
        "spec_unmet_share": official,
        "home_death_share": registered,
    }
    for ind in PROPORTIONS:
        r = v[ind]
        if n_of[ind] < MIN_CELL_N:
            assert r.suppressed, ind
        if not r.suppressed:
            assert r.n == n_of[ind] >= MIN_CELL_N
            assert r.denominator
            assert r.value == pytest.approx(r.numerator / r.denominator)

    small = 0 < received < MIN_CELL_N
    for ind in ("spec_received", "spec_unmet", "spec_unmet_share"):
        if small:
            assert v[ind].suppressed, ind
    if not small:
        assert v["spec_received"].value == received
        assert v["spec_unmet"].value == pytest.approx(0.25 * official - received)
    assert not v["spec_need"].suppressed
    assert v["spec_need"].value == 0.25 * official
    if not v["registry_coverage"].suppressed:
        assert v["registry_coverage"].numerator == registered
    if not v["home_death_share"].suppressed:
        assert v["home_death_share"].numerator == own_home


# ---- batch_recompute -----------------------------------------------------------------------


def test_batch_recompute_hand_computed_history() -> None:
    # Region 03 (Uppsala), deaths in 2024-03 and 2024-04; last month 2024-04.
    surveys = [
        make_survey(
            "a", region="03", death="2024-03-02", place="own_home", setting="specialised_home_care"
        ),
        make_survey("b", region="03", death="2024-03-05", place="own_home", setting="primary_care"),
        make_survey(
            "c",
            region="03",
            death="2024-03-07",
            place="hospital",
            setting="hospital_ward",
            consult=True,
        ),
        make_survey(
            "d", region="03", death="2024-03-09", place="nursing_home", setting="nursing_home"
        ),
        make_survey(
            "e",
            region="03",
            death="2024-04-01",
            place="specialised_palliative_inpatient",
            setting="specialised_inpatient",
        ),
        make_survey(
            "f", region="03", death="2024-04-02", place="own_home", setting="specialised_home_care"
        ),
        make_survey(
            "g", region="03", death="2024-04-03", place="hospital", setting="hospital_ward"
        ),
        make_survey("h", region="03", death="2024-04-04", place="own_home", setting="primary_care"),
        # corrections: b gets consult support; g moves to region 01 and to March
        make_survey(
            "b",
            revision=2,
            region="03",
            death="2024-03-05",
            place="own_home",
            setting="primary_care",
            consult=True,
        ),
        make_survey(
            "g",
            revision=2,
            region="01",
            death="2024-03-03",
            place="hospital",
            setting="hospital_ward",
        ),
        # withdrawal of h
        make_survey(
            "h",
            revision=2,
            status="withdrawn",
            region="03",
            death="2024-04-04",
            place="own_home",
            setting="primary_care",
        ),
        # stale: an older revision of b and a duplicate revision 2 of g arrive late
        make_survey(
            "b",
            revision=1,
            region="03",
            death="2024-03-05",
            place="own_home",
            setting="primary_care",
        ),
        make_survey(
            "g",
            revision=2,
            region="03",
            death="2024-04-03",
            place="own_home",
            setting="specialised_home_care",
        ),
    ]
    official = {("03", "2024-03"): 16, ("03", "2024-04"): 12, ("01", "2024-03"): 200}
    out = batch_recompute(surveys, official, "2024-04")

    # 03 after all: March a, b, c, d (4 registered; own home a, b; received a, b, c);
    # April e, f (2 registered; own home f; received e, f).
    # Window ending 2024-04: registered 6 / official 28; need 7; received 5; unmet 2.
    assert out[("registry_coverage", "03", "2024-04")].value == pytest.approx(6 / 28)
    assert out[("registry_coverage", "03", "2024-04")].numerator == 6
    assert out[("registry_coverage", "03", "2024-04")].denominator == 28
    assert out[("spec_need", "03", "2024-04")].value == 7.0
    assert out[("spec_received", "03", "2024-04")].value == 5
    assert out[("spec_unmet", "03", "2024-04")].value == 2.0
    assert out[("spec_unmet_share", "03", "2024-04")].value == pytest.approx(2 / 7)
    assert out[("home_death_share", "03", "2024-04")].value == pytest.approx(3 / 6)
    # Window ending 2024-03: registered 4 / 16; received 3 -> suppressed; home n = 4 -> suppressed.
    assert out[("registry_coverage", "03", "2024-03")].value == 0.25
    assert out[("spec_need", "03", "2024-03")].value == 4.0
    assert out[("spec_received", "03", "2024-03")].suppressed
    assert out[("spec_unmet", "03", "2024-03")].suppressed
    assert out[("spec_unmet_share", "03", "2024-03")].suppressed
    assert out[("home_death_share", "03", "2024-03")].suppressed
    # g moved to 01/2024-03: registered 1 of 200; nothing received.
    assert out[("registry_coverage", "01", "2024-03")].value == 1 / 200
    assert out[("registry_coverage", "01", "2024-04")].value == 1 / 200
    assert out[("spec_received", "01", "2024-04")].value == 0
    assert out[("spec_unmet_share", "01", "2024-04")].value == 1.0
    # Windows after last_month are not computed; every key lies in 2024-03..2024-04.
    assert {e for (_, _, e) in out} == {"2024-03", "2024-04"}
    assert {r for (_, r, _) in out} == {"01", "03"}
    assert len(out) == 2 * 2 * len(ALL_INDICATORS)


def test_batch_recompute_ignores_stale_revisions() -> None:
    official = {("09", "2024-05"): 100}
    rev2 = make_survey(
        "x", revision=2, region="09", place="own_home", setting="primary_care", death="2024-05-01"
    )
    stale = [
        make_survey(
            "x",
            revision=1,
            region="09",
            place="hospital",
            setting="hospital_ward",
            death="2024-05-01",
        ),
        make_survey(
            "x",
            revision=2,
            region="09",
            place="hospital",
            setting="hospital_ward",
            death="2024-05-01",
        ),
    ]
    out_a = batch_recompute([rev2], official, "2024-05")
    out_b = batch_recompute([rev2, *stale], official, "2024-05")
    assert out_a == out_b
    # ... but a stale revision that moves is not touching its bucket either.
    moved_stale = make_survey("x", revision=1, region="01", death="2024-05-01")
    out_c = batch_recompute([rev2, moved_stale], official, "2024-05")
    assert out_c == out_a
    assert not any(r == "01" for (_, r, _) in out_c)


def test_batch_recompute_withdrawal_removes_the_survey() -> None:
    official = {("01", "2024-05"): 100}
    surveys = [make_survey(f"w{i}", region="01", death="2024-05-02") for i in range(6)]
    before = batch_recompute(surveys, official, "2024-05")
    assert before[("registry_coverage", "01", "2024-05")].numerator == 6
    withdrawn = make_survey("w0", revision=2, status="withdrawn", region="01", death="2024-05-02")
    after = batch_recompute([*surveys, withdrawn], official, "2024-05")
    assert after[("registry_coverage", "01", "2024-05")].numerator == 5
    assert after[("home_death_share", "01", "2024-05")].n == 5
    # withdraw one more: home share n = 4 -> suppressed
    withdrawn2 = make_survey("w1", revision=3, status="withdrawn", region="01", death="2024-05-02")
    after2 = batch_recompute([*surveys, withdrawn, withdrawn2], official, "2024-05")
    assert after2[("registry_coverage", "01", "2024-05")].numerator == 4
    assert after2[("home_death_share", "01", "2024-05")].suppressed


def test_batch_recompute_correction_moves_bucket_and_leaves_zero_windows() -> None:
    first = make_survey("m", region="01", death="2024-02-10")
    moved = make_survey("m", revision=2, region="25", death="2024-07-10")
    out = batch_recompute([first, moved], {}, "2024-08")
    # The old bucket was touched, so its windows are still emitted (zero counts).
    assert ("registry_coverage", "01", "2024-02") in out
    assert ("registry_coverage", "01", "2024-08") in out
    assert out[("spec_received", "01", "2024-08")].value == 0
    assert out[("spec_need", "01", "2024-02")].value == 0.0
    # The new bucket holds the survey: region 25 windows from 2024-07 only.
    ends_25 = sorted(e for (i, r, e) in out if r == "25" and i == "spec_received")
    assert ends_25 == ["2024-07", "2024-08"]
    ends_01 = sorted(e for (i, r, e) in out if r == "01" and i == "spec_received")
    assert ends_01 == [add_months("2024-02", k) for k in range(7)]


def test_batch_recompute_official_deaths_alone_produce_windows() -> None:
    out = batch_recompute([], {("05", "2024-01"): 300}, "2024-03")
    assert sorted(e for (i, r, e) in out if i == "spec_need") == ["2024-01", "2024-02", "2024-03"]
    assert out[("spec_need", "05", "2024-03")].value == 75.0
    assert out[("registry_coverage", "05", "2024-03")].value == 0.0
    assert out[("home_death_share", "05", "2024-03")].suppressed


# ---- streaming == oracle -------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[DeathSurvey]:
    """Arrival-ordered revisions of a few surveys, with resends and out-of-order revisions."""
    out: list[DeathSurvey] = []
    for i in range(draw(st.integers(0, 10))):
        sid = f"h{draw(st.integers(0, 4))}"
        month = draw(st.sampled_from(MONTHS))
        place, setting = draw(
            st.sampled_from(
                [
                    ("own_home", "specialised_home_care"),
                    ("own_home", "primary_care"),
                    ("hospital", "hospital_ward"),
                ]
            )
        )
        out.append(
            make_survey(
                sid,
                revision=draw(st.integers(1, 4)),
                status=draw(st.sampled_from(["active", "active", "withdrawn"])),
                region=draw(st.sampled_from(REGIONS)),
                death=f"{month}-{1 + i:02d}",
                place=place,
                setting=setting,
                consult=draw(st.booleans()),
            )
        )
    return out


@FAST
@given(
    histories(),
    st.dictionaries(
        st.tuples(st.sampled_from(REGIONS), st.sampled_from(MONTHS)),
        st.integers(0, 30),
        max_size=5,
    ),
)
def test_streaming_deltas_match_batch_oracle(
    surveys: list[DeathSurvey], official: dict[tuple[str, str], int]
) -> None:
    # What the worker does: per survey keep (revision, contribution), apply signed deltas.
    state: dict[str, tuple[int, Contribution | None]] = {}
    buckets: Buckets = {}
    for s in surveys:
        prev = state.get(s.survey_id)
        if prev is not None and s.revision <= prev[0]:
            continue
        new = survey_contribution(s)
        buckets = apply(buckets, revision_deltas(prev[1] if prev else None, new))
        state[s.survey_id] = (s.revision, new)
    last = "2024-06"
    expected: dict[tuple[str, str, str], IndicatorValue] = {}
    per_region: dict[str, dict[str, MonthTotals]] = {}
    for r, m in set(buckets) | set(official):
        per_region.setdefault(r, {})[m] = MonthTotals(
            buckets.get((r, m), Counts()), official.get((r, m))
        )
    for r, months in per_region.items():
        for e in {e for m in months for e in affected_window_ends(m, last)}:
            for v in rolling_region_indicators(r, e, months):
                expected[(v.indicator_id, r, e)] = v
    assert batch_recompute(surveys, official, last) == expected
    assert all(not (c.registered < 0 or c.own_home < 0) for c in buckets.values())
