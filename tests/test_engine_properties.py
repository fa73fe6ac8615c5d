"""Property-based tests of the pure indicator engine (docs/indicators.md).

The engine's pieces (processors/engine.py, revisions.py, aggregate.py) are driven in memory by
tests/engine_sim.py exactly as the worker drives them; hypothesis generates small registry
histories (tests/strategies.py) and checks that

1. a retraction undoes its contribution (counters, and whole indicator rows);
2. the final rows do not depend on arrival order, batching or redelivery;
3. a correction equals having sent only the final revision, and stale revisions change nothing;
4. rolling windows and calendar periods hold exactly the days they should;
5. suppression nulls every figure, exactly when the spec says so, and every row agrees with an
   independent count over the surveys' final revisions;
6. the Wilson interval behaves.

Most engine runs use a *lean* catalogue: the packaged one with only six of its thirteen share
indicators (one of each shape: plain, answered-denominator, list numerator, the three
population-specific ones) and all the official-deaths family. The engine is generic over the
catalogue, and the rows are what make a run slow; one test runs the full packaged catalogue.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.catalogue import (
    DEFAULT_PATH,
    OFFICIAL_KINDS,
    ROLLING_DAYS,
    TOTAL,
    Catalogue,
    default_catalogue,
    parse_catalogue,
)
from processors.core import IndicatorValue, add_months, month_last_day, wilson_interval
from processors.engine import (
    NATION,
    apply_contribution,
    apply_survey_delta,
    contribution,
    day_window_ends,
    day_windows_ends,
    layouts,
    new_scope_month,
    periods_for_changes,
)
from schemas.models import DeathSurvey, OfficialDeaths
from tests.engine_sim import EngineSim
from tests.keys import KEYS
from tests.strategies import (
    AS_OF,
    REGIONS,
    batchings,
    bodies,
    interleavings,
    make_survey,
    many_histories,
    officials,
    survey_histories,
)

FULL = default_catalogue()
LEAN_SHARES = {
    "eol_conversation", "hospital_admission_last_30d", "not_alone_at_death", "home_death_share",
    "home_death_share_sphs", "non_cancer_share_specialised",
}  # fmt: skip


def _lean_catalogue() -> Catalogue:
    raw = tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    raw["indicator"] = [
        i for i in raw["indicator"] if i["id"] in LEAN_SHARES or i["kind"] in OFFICIAL_KINDS
    ]
    return parse_catalogue(raw, "lean catalogue")


LEAN = _lean_catalogue()

SIM = settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
FAST = settings(max_examples=100, deadline=None)

FIGURES = ("value", "numerator", "denominator", "n", "ci_low", "ci_high", "nowcast")
ALL_FIELDS = tuple(f.name for f in fields(IndicatorValue))


# ---- running the engine ---------------------------------------------------------------------


def run(
    batches: Iterable[tuple[Sequence[DeathSurvey], int]],
    offs: Sequence[OfficialDeaths] = (),
    cat: Catalogue = LEAN,
    partitions: int = 3,
) -> EngineSim:
    """Officials first (one batch), then the survey batches (records, redelivered tail)."""
    sim = EngineSim(cat, partitions=partitions)
    if offs:
        sim.official(offs, AS_OF)
    for batch, redeliver in batches:
        sim.surveys(list(batch), AS_OF, redeliver=redeliver)
    return sim


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def row_diffs(
    got: Mapping[Any, IndicatorValue],
    want: Mapping[Any, IndicatorValue],
    names: Sequence[str],
    keys: Iterable[Any] | None = None,
) -> list[str]:
    out = []
    for k in sorted(keys if keys is not None else want, key=repr):
        if k not in got:
            out.append(f"{k}: missing")
            continue
        for name in names:
            a, b = getattr(got[k], name), getattr(want[k], name)
            if not _same(a, b):
                out.append(f"{k}: {name} {a!r} != {b!r}")
    return out[:20]


def empty(row: IndicatorValue) -> bool:
    """A row that counts nobody: n = 0, suppressed with every figure null, or (need, received,
    unmet without data) a zero value."""
    if row.suppressed:
        return all(getattr(row, f) is None for f in FIGURES)
    if row.n is not None:
        return row.n == 0
    return row.numerator == 0 and row.value == 0


# ---- an independent count over the surveys' final revisions --------------------------------


def revision_outcome(records: Iterable[DeathSurvey]) -> tuple[list[DeathSurvey], list[DeathSurvey]]:
    """(final active revisions, every applied active revision = the touches) per the spec:
    a revision is applied when higher than every revision applied before it."""
    highest: dict[str, int] = {}
    final: dict[str, DeathSurvey | None] = {}
    touches = []
    for s in records:
        if s.survey_id in highest and s.revision <= highest[s.survey_id]:
            continue
        highest[s.survey_id] = s.revision
        final[s.survey_id] = s if s.status == "active" else None
        if s.status == "active":
            touches.append(s)
    return [s for s in final.values() if s is not None], touches


def bounds(ptype: str, end: date) -> tuple[date, date]:
    if ptype in ROLLING_DAYS:
        return end - timedelta(days=ROLLING_DAYS[ptype] - 1), end
    months = {"month": 1, "quarter": 3, "year": 12, "rolling_12m": 12}[ptype]
    first = add_months(end.strftime("%Y-%m"), -(months - 1))
    return date(int(first[:4]), int(first[5:7]), 1), end


def months_of(start: date, end: date) -> list[str]:
    out, m = [], start.strftime("%Y-%m")
    while m <= end.strftime("%Y-%m"):
        out.append(m)
        m = add_months(m, 1)
    return out


def in_scope(s: DeathSurvey, stype: str, code: str) -> bool:
    if stype == "nation":
        return code == NATION
    if stype == "region":
        return s.region_code == code
    return s.municipality_code == code


def calendar_ends(month: str) -> list[tuple[str, date]]:
    q_last = add_months(month, 2 - (int(month[5:7]) - 1) % 3)
    out = [
        ("month", month_last_day(month)),
        ("quarter", month_last_day(q_last)),
        ("year", date(int(month[:4]), 12, 31)),
    ]
    out += [
        ("rolling_12m", month_last_day(add_months(month, k)))
        for k in range(12)
        if add_months(month, k) <= AS_OF.strftime("%Y-%m")
    ]
    return out


def expected_keys(
    touches: Sequence[DeathSurvey], offs: Sequence[OfficialDeaths], cat: Catalogue
) -> set[tuple[Any, ...]]:
    """Which rows exist (docs/indicators.md, "Which rows exist"), from the touches alone."""
    settled = AS_OF - timedelta(days=cat.settled_after_days)
    keys: set[tuple[Any, ...]] = set()
    month_touch: set[tuple[str, str, str]] = set()  # (scope type, code, month)
    for s in touches:
        d = s.date_of_death
        month = d.strftime("%Y-%m")
        scopes = [("nation", NATION), ("region", s.region_code),
                  ("municipality", s.municipality_code)]  # fmt: skip
        for stype, code in scopes:
            month_touch.add((stype, code, month))
        for ind in cat.of_kind(frozenset({"share"})):
            for stype, code in scopes:
                if stype not in ind.scopes:
                    continue
                for ptype in ind.periods:
                    if stype not in cat.scopes_for(ind, ptype):
                        continue
                    dims = cat.breakdowns_for(ind, stype, ptype)
                    labels = [TOTAL, *(c for c in cat.cells(s) if c.split(":")[0] in dims)]
                    if ptype in ROLLING_DAYS:
                        ends = [
                            e
                            for e in (d + timedelta(days=k) for k in range(ROLLING_DAYS[ptype]))
                            if settled <= e <= AS_OF
                        ]
                    else:
                        ends = [e for p, e in calendar_ends(month) if p == ptype]
                    keys.update((ind.id, stype, code, lb, ptype, e) for lb in labels for e in ends)
    for o in offs:
        month_touch.add(("nation", NATION, o.month))
        month_touch.add(("region", o.region_code, o.month))
    for ind in cat.of_kind(OFFICIAL_KINDS):
        for stype, code, month in month_touch:
            if stype not in ind.scopes:
                continue
            for ptype, end in calendar_ends(month):
                if ptype in ind.periods and stype in cat.scopes_for(ind, ptype):
                    keys.add((ind.id, stype, code, TOTAL, ptype, end))
    return keys


def check_against_counts(
    sim: EngineSim,
    records: Sequence[DeathSurvey],
    offs: Sequence[OfficialDeaths],
    cat: Catalogue,
) -> None:
    """Every row equals a count over the final active revisions (and the latest official
    deaths); rows exist exactly where the spec says; suppression is exactly as specified."""
    finals, touches = revision_outcome(records)
    official: dict[tuple[str, str], int] = {}
    for o in offs:
        official[(o.region_code, o.month)] = o.deaths
    missing = expected_keys(touches, offs, cat) - set(sim.rows)
    extra = set(sim.rows) - expected_keys(touches, offs, cat)
    assert not missing, sorted(missing, key=repr)[:10]
    assert not extra, sorted(extra, key=repr)[:10]
    vectors = {id(s): cat.survey_vector(s) for s in finals}
    cells = {id(s): cat.cells(s) for s in finals}
    for row in sim.rows.values():
        ind = cat.indicators[row.indicator_id]
        start, end = bounds(row.period_type, row.period_end)
        assert row.period_start == start, row
        if row.suppressed:
            assert all(getattr(row, f) is None for f in FIGURES), row
        members = [
            s
            for s in finals
            if in_scope(s, row.scope_type, row.scope_code)
            and start <= s.date_of_death <= end
            and (row.breakdown == TOTAL or row.breakdown in cells[id(s)])
        ]

        def total(counter: str) -> int:
            return sum(vectors[id(s)].get(counter, 0) for s in members)  # noqa: B023

        if ind.kind == "share":
            den, num = total(ind.den_counter), total(ind.num_counter)
            assert row.suppressed == (den < ind.min_n), (row, den)
            if not row.suppressed:
                assert (row.n, row.denominator, row.numerator) == (den, den, num), (row, num, den)
                assert row.value == num / den
            continue
        months = months_of(start, end)
        deaths = sum(
            c
            for (r, m), c in official.items()
            if m in months and (row.scope_type == "nation" or r == row.scope_code)
        )
        received = total(f"pop.{ind.population}") if ind.population else 0
        need = cat.need_share * deaths
        small = 0 < received < ind.min_n
        if ind.kind == "coverage":
            assert row.suppressed == (deaths < ind.min_n), (row, deaths)
            if not row.suppressed:
                assert (row.numerator, row.denominator, row.n) == (total("registered"), deaths,
                                                                   deaths), row  # fmt: skip
        elif ind.kind == "need":
            assert not row.suppressed and _same(row.value, need), (row, need)
        elif ind.kind == "received":
            assert row.suppressed == small, (row, received)
            if not row.suppressed:
                assert row.value == received, (row, received)
        elif ind.kind == "unmet":
            assert row.suppressed == small, (row, received)
            if not row.suppressed:
                assert _same(row.value, need - received), (row, need, received)
        else:  # unmet_share
            assert row.suppressed == (small or deaths < ind.min_n), (row, received, deaths)
            if not row.suppressed:
                assert _same(row.numerator, need - received) and _same(row.denominator, need)


# ---- 1. retraction symmetry -----------------------------------------------------------------


def all_zero(sm: Mapping[str, Any]) -> bool:
    vectors = [*sm["cells"].values(), *sm["days"].values()]
    return (
        all(x == 0 for v in vectors for x in v)
        and all(c == 0 for c in sm["delays"].values())
        and all(all_zero(sub) for sub in sm["sub"].values())
    )


@FAST
@given(
    st.lists(bodies(), min_size=1, max_size=12).flatmap(
        lambda bs: st.tuples(st.just(bs), st.permutations(range(len(bs))))
    ),
    st.sampled_from(["nation", "region", "municipality"]),
)
def test_adding_then_subtracting_contributions_leaves_every_counter_zero(
    case: tuple[list[dict[str, Any]], list[int]], scope_type: str
) -> None:
    """apply_contribution(+1) then (-1), in any order, leaves every counter (cells, days,
    delays, municipalities' sub-states) zero — for every scope type's layout."""
    bs, removal_order = case
    cat = FULL
    lays = layouts(cat)
    width = len(cat.counters())
    cs = []
    for i, b in enumerate(bs):
        s = make_survey(f"c{i}", 1, b)
        c = contribution(s, s.submitted_at.date(), cat, KEYS)
        assert c is not None
        cs.append(c)
    direct, via_delta = new_scope_month(), new_scope_month()
    for c in cs:
        apply_contribution(direct, c, +1, lays[scope_type], width)
        apply_survey_delta(via_delta, scope_type, c, +1, lays, width)
    assert not all_zero(direct)
    for i in removal_order:
        apply_contribution(direct, cs[i], -1, lays[scope_type], width)
        apply_survey_delta(via_delta, scope_type, cs[i], -1, lays, width)
    assert all_zero(direct)
    assert all_zero(via_delta)


@settings(SIM, max_examples=10)
@given(
    many_histories(max_size=10).flatmap(
        lambda hs: st.tuples(
            st.just(hs),
            st.lists(st.booleans(), min_size=len(hs), max_size=len(hs)).filter(any),
            interleavings(hs),
        )
    ),
    officials(),
    st.booleans(),
)
def test_a_withdrawal_equals_never_having_sent_the_survey(
    case: tuple[list[list[DeathSurvey]], list[bool], list[DeathSurvey]],
    offs: list[OfficialDeaths],
    same_batch: bool,
) -> None:
    """Surveys (with their own corrections) followed by the withdrawal of some of them (in the
    same batch or a later one) give, on every row of the run that never sent those, the same
    row — counts, value, interval, completeness and nowcast; the rows only the first run has
    (touched cells keep existing) count nobody: n = 0, or suppressed with every figure null."""
    histories, withdrawn, order = case
    gone = {h[0].survey_id for h, w in zip(histories, withdrawn, strict=True) if w}
    withdrawals = [
        make_survey(h[-1].survey_id, h[-1].revision + 1, _body(h[-1]), "withdrawn")
        for h in histories
        if h[0].survey_id in gone
    ]
    if same_batch:
        with_them = run([(order + withdrawals, 0)], offs)
    else:
        with_them = run([(order, 0), (withdrawals, 0)], offs)
    without = run([([s for s in order if s.survey_id not in gone], 0)], offs)
    assert row_diffs(with_them.rows, without.rows, ALL_FIELDS) == []
    extra = [r for k, r in with_them.rows.items() if k not in without.rows]
    assert [r for r in extra if not empty(r)] == []


def _body(s: DeathSurvey) -> dict[str, Any]:
    d = s.model_dump(mode="json")
    for k in ("schema_version", "survey_id", "revision", "status", "person_ref"):
        d.pop(k)
    return d


# ---- 2. order independence ------------------------------------------------------------------


@settings(SIM, max_examples=14)
@given(
    many_histories(max_size=12).flatmap(
        lambda hs: st.tuples(
            st.just(hs),
            interleavings(hs).flatmap(lambda order: batchings(order)),
        )
    ),
    officials(),
    st.sampled_from([1, 3]),
)
def test_final_rows_do_not_depend_on_arrival_order_batches_or_redelivery(
    case: tuple[list[list[DeathSurvey]], list[tuple[list[DeathSurvey], int]]],
    offs: list[OfficialDeaths],
    partitions: int,
) -> None:
    """Distinct surveys permuted (each survey's revisions kept in order), split into batches
    at random points, with the tail of each batch redelivered: every row equals that of one
    batch in the canonical order — all fields, nowcast included."""
    histories, batches = case
    canonical = run([([s for h in histories for s in h], 0)], offs, partitions=partitions)
    shuffled = run(batches, offs, partitions=partitions)
    assert set(shuffled.rows) == set(canonical.rows)
    assert row_diffs(shuffled.rows, canonical.rows, ALL_FIELDS) == []


# ---- 3. corrections and stale revisions ----------------------------------------------------


@settings(SIM, max_examples=10)
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.tuples(
            st.tuples(*[survey_histories(f"c{i}", max_followups=3) for i in range(n)]).filter(
                lambda hs: any(len(h) > 1 for h in hs)
            ),
            many_histories(min_size=0, max_size=8, prefix="b", max_followups=0),
        )
    ),
    officials(),
    st.data(),
)
def test_a_correction_equals_sending_only_the_final_revision_and_stale_ones_change_nothing(
    case: tuple[tuple[list[DeathSurvey], ...], list[list[DeathSurvey]]],
    offs: list[OfficialDeaths],
    data: st.DataObject,
) -> None:
    """Corrections (moving region, municipality, month, measures), withdrawals and
    re-activations equal having sent only each survey's final revision, on every row key of
    that run (all counts; the nowcast legitimately differs, the registration date being that
    of the first applied revision); the rows only the corrected run has count nobody. Lower or
    equal revisions arriving afterwards, whatever they say, change no row at all."""
    corrected, background = list(case[0]), case[1]
    everything = [*corrected, *background]
    order = data.draw(interleavings(everything), label="order")
    batches = data.draw(batchings(order), label="batches")
    sim = run(batches, offs)
    finals = [h[-1] for h in corrected]
    final_only = run([([s for h in background for s in h] + finals, 0)], offs)
    names = [f for f in ALL_FIELDS if f != "nowcast"]
    assert row_diffs(sim.rows, final_only.rows, names) == []
    extra = [r for k, r in sim.rows.items() if k not in final_only.rows]
    assert [r for r in extra if not empty(r)] == []

    before = dict(sim.rows)
    stale = []
    for h in everything:
        top = h[-1].revision
        if data.draw(st.booleans(), label=f"stale {h[0].survey_id}"):
            revision = data.draw(st.integers(1, top), label="stale revision")
            body = data.draw(bodies(), label="stale body")
            status = data.draw(st.sampled_from(["active", "withdrawn"]), label="stale status")
            stale.append(make_survey(h[0].survey_id, revision, body, status))
    sim.surveys(stale, AS_OF, redeliver=data.draw(st.integers(0, len(stale)), label="redo"))
    assert sim.rows == before


# ---- 4. window boundaries ------------------------------------------------------------------


@FAST
@given(
    st.dates(date(2024, 6, 1), date(2027, 6, 30)),
    st.dates(date(2025, 6, 1), date(2027, 6, 30)),
)
@example(date(2026, 5, 14), AS_OF)  # the first day still open at AS_OF
@example(date(2026, 5, 13), AS_OF)
@example(AS_OF, AS_OF)
def test_day_window_ends_are_exactly_the_open_windows_holding_the_day(
    day: date, as_of: date
) -> None:
    """day_window_ends(day) = {(rolling_Nd, e): day <= e <= day + N - 1, e <= as_of,
    e >= as_of - settled_after_days}, each once; periods_for_changes carries them."""
    cat = FULL
    got = day_window_ends(day, as_of, cat)
    lo = as_of - timedelta(days=cat.settled_after_days)
    want = {
        (ptype, day + timedelta(days=k))
        for ptype, n in ROLLING_DAYS.items()
        for k in range(n)
        if lo <= day + timedelta(days=k) <= as_of
    }
    assert len(got) == len(set(got))
    assert set(got) == want
    for ptype, e in got:
        start, end = bounds(ptype, e)
        assert start <= day <= end
    assert want <= periods_for_changes([], [day], as_of, cat)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dates(date(2024, 6, 1), date(2027, 6, 30)), max_size=40),
    st.dates(date(2025, 6, 1), date(2027, 6, 30)),
)
@example([date(2026, 5, 13), date(2026, 5, 14), AS_OF], AS_OF)
def test_the_window_ends_of_many_days_are_the_union_of_each_days(
    days: list[date], as_of: date
) -> None:
    """day_windows_ends (runs of ends merged) = the union of day_window_ends, day by day."""
    want = {p for d in days for p in day_window_ends(d, as_of, FULL)}
    assert day_windows_ends(days, as_of, FULL) == want


def _group(prefix: str, n: int, day: date, region: str) -> st.SearchStrategy[list[DeathSurvey]]:
    return st.tuples(*[bodies(day=day, region=region) for _ in range(n)]).map(
        lambda bs: [make_survey(f"{prefix}{i}", 1, b) for i, b in enumerate(bs)]
    )


def _n(sim: EngineSim, scope: tuple[str, str], ptype: str, end: date) -> int | None:
    row = sim.rows[("home_death_share", *scope, TOTAL, ptype, end)]
    assert not row.suppressed
    return row.n


OPEN_FROM = AS_OF - timedelta(days=LEAN.settled_after_days)  # the first window end still open


@settings(SIM, max_examples=8)
@given(
    st.one_of(
        st.sampled_from([OPEN_FROM - timedelta(days=29), OPEN_FROM, AS_OF - timedelta(days=30)]),
        st.dates(OPEN_FROM - timedelta(days=29), AS_OF - timedelta(days=30)),
    ),
    st.sampled_from(REGIONS),
    st.integers(5, 8),
    st.integers(5, 8),
    st.booleans(),
    st.data(),
)
def test_a_death_counts_in_the_30_day_window_ending_29_days_later_not_30(
    d: date, region: str, na: int, nb: int, one_batch: bool, data: st.DataObject
) -> None:
    """a deaths on day d and b on d + 30 (home_death_share counts everyone): at the nation
    and the region, the window ending d + 29 holds exactly the a, the one ending d + 30 exactly
    the b, none ends on d - 1, and the 90-day window ending d + 89 holds both."""
    a = data.draw(_group("a", na, d, region), label="a")
    b = data.draw(_group("b", nb, d + timedelta(days=30), region), label="b")
    sim = run([(a + b, 0)] if one_batch else [(a, 0), (b, 0)])
    for scope in (("nation", NATION), ("region", region)):
        assert _n(sim, scope, "rolling_30d", d + timedelta(days=29)) == len(a)
        assert _n(sim, scope, "rolling_30d", d + timedelta(days=30)) == len(b)
        if d - timedelta(days=1) >= OPEN_FROM:
            assert ("home_death_share", *scope, TOTAL, "rolling_30d",
                    d - timedelta(days=1)) not in sim.rows  # fmt: skip
        if d + timedelta(days=89) <= AS_OF:
            assert _n(sim, scope, "rolling_90d", d + timedelta(days=89)) == len(a) + len(b)


@pytest.mark.parametrize(
    "last",
    [date(2025, 12, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30),
     date(2026, 9, 30), date(2026, 10, 31)],
)  # fmt: skip
@settings(SIM, max_examples=2)
@given(st.data())
def test_a_death_on_the_last_day_of_a_period_counts_in_it_and_not_the_next(
    last: date, data: st.DataObject
) -> None:
    """a deaths on the last day of a month, b on the next day: month (and, at a quarter's or
    year's end, quarter and year) rows hold a and b apart; otherwise the quarter holds both."""
    nxt = last + timedelta(days=1)
    a = data.draw(st.integers(5, 7).flatmap(lambda n: _group("a", n, last, "25")), label="a")
    b = data.draw(st.integers(5, 7).flatmap(lambda n: _group("b", n, nxt, "25")), label="b")
    sim = run([(a + b, 0)])
    for scope in (("nation", NATION), ("region", "25")):
        assert _n(sim, scope, "month", last) == len(a)
        assert _n(sim, scope, "month", month_last_day(nxt.strftime("%Y-%m"))) == len(b)
        q_last = month_last_day(add_months(nxt.strftime("%Y-%m"), 2 - (nxt.month - 1) % 3))
        if nxt.month in (1, 4, 7, 10):
            assert _n(sim, scope, "quarter", last) == len(a)
            assert _n(sim, scope, "quarter", q_last) == len(b)
        else:
            assert _n(sim, scope, "quarter", q_last) == len(a) + len(b)
        if nxt.month == 1:
            assert _n(sim, scope, "year", last) == len(a)
            assert _n(sim, scope, "year", date(nxt.year, 12, 31)) == len(b)
        else:
            assert _n(sim, scope, "year", date(last.year, 12, 31)) == len(a) + len(b)


# ---- 5. suppression, and every row against an independent count ---------------------------


def _suppression_case(max_size: int) -> st.SearchStrategy[Any]:
    return many_histories(max_size=max_size).flatmap(
        lambda hs: interleavings(hs).flatmap(lambda o: st.tuples(st.just(o), batchings(o)))
    )


def _check_suppression(sim: EngineSim) -> None:
    for row in sim.rows.values():
        if row.suppressed:
            assert all(getattr(row, f) is None for f in FIGURES), row


@settings(SIM, max_examples=5)
@given(_suppression_case(max_size=10), officials(max_size=10))
def test_full_catalogue_rows_match_counts_and_suppress_exactly_below_min_n(
    case: tuple[list[DeathSurvey], list[tuple[list[DeathSurvey], int]]],
    offs: list[OfficialDeaths],
) -> None:
    """With the packaged catalogue: suppressed rows have value, numerator, denominator, n,
    interval and nowcast all null; a share is suppressed exactly when n < 5; received and unmet
    exactly when 0 < received < 5; unmet_share also when official deaths < 5; coverage when
    official deaths < 5; need never. Every row's figures equal an independent count over the
    final active revisions, and rows exist exactly for the touched (scope, cell, period)s."""
    order, batches = case
    sim = run(batches, offs, cat=FULL)
    _check_suppression(sim)
    check_against_counts(sim, order, offs, FULL)


@settings(SIM, max_examples=10)
@given(_suppression_case(max_size=25), officials(max_size=12))
def test_lean_catalogue_rows_match_counts_and_suppress_exactly_below_min_n(
    case: tuple[list[DeathSurvey], list[tuple[list[DeathSurvey], int]]],
    offs: list[OfficialDeaths],
) -> None:
    """The same as above on larger histories (up to 25 surveys), with the lean catalogue."""
    order, batches = case
    sim = run(batches, offs)
    _check_suppression(sim)
    check_against_counts(sim, order, offs, LEAN)


# ---- 6. Wilson intervals -------------------------------------------------------------------

counts = st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@FAST
@given(counts)
def test_wilson_interval_lies_in_the_unit_interval_and_holds_k_over_n_up_to_rounding(
    kn: tuple[int, int],
) -> None:
    k, n = kn
    interval = wilson_interval(k, n)
    assert interval is not None
    low, high = interval
    assert 0.0 <= low <= high <= 1.0
    assert low - 1e-12 <= k / n <= high + 1e-12


@FAST
@given(counts)
@example((0, 3))
@example((10, 10))
def test_wilson_interval_contains_k_over_n(kn: tuple[int, int]) -> None:
    k, n = kn
    interval = wilson_interval(k, n)
    assert interval is not None
    assert interval[0] <= k / n <= interval[1]


@FAST
@given(
    st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(2, 50),
)
def test_wilson_interval_narrows_as_n_grows_at_a_fixed_proportion(
    kn: tuple[int, int], factor: int
) -> None:
    k, n = kn
    small, large = wilson_interval(k, n), wilson_interval(k * factor, n * factor)
    assert small is not None and large is not None
    assert large[1] - large[0] < small[1] - small[0]


def test_wilson_interval_is_none_outside_its_domain() -> None:
    assert wilson_interval(0, 0) is None
    assert wilson_interval(3, 2) is None
    assert wilson_interval(-1, 2) is None
