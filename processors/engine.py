"""The streaming indicator engine's pure core: contributions, scope state, periods, values.

No Kafka, no database, no clock: the Faust agents in streams/agents/ move records and call these
functions; docs/indicators.md is the specification, processors/oracle.py its independent batch
implementation, and the tests hold the two equal.

State is kept per *scope-month*: everything one scope (the nation, a region with its
municipalities) knows about the deaths of one calendar month. Counters are integer vectors in the
catalogue's counter order. A survey revision's effect is its contribution added; a correction
subtracts the old contribution and adds the new one; a withdrawal only subtracts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from processors import columnar
from processors.catalogue import (
    OFFICIAL_KINDS,
    ROLLING_DAYS,
    SURVEY_KINDS,
    TOTAL,
    Catalogue,
    Indicator,
    _get,
)
from processors.core import (
    IndicatorValue,
    add_months,
    month_first_day,
    month_index,
    month_last_day,
    wilson_interval,
)
from processors.disclosure import (
    METHOD,
    count_figures,
    public_coverage,
    public_received,
    public_unmet_share,
)
from schemas.codes import municipalities, municipalities_by_region, regions

NATION = "SE"
Vector = list[int]
RecordKeyFn = Callable[[str], int]


# ---- contributions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Contribution:
    """What one active survey revision adds: where it counts and its counter vector."""

    region: str
    municipality: str
    day: str  # ISO date of death
    cells: tuple[str, ...]  # one breakdown label per dimension
    vector: tuple[int, ...]
    delay: int  # registration delay in days
    key: int  # the record key (processors/disclosure.py): summed beside every counter

    def to_wire(self) -> list[Any]:
        return [self.region, self.municipality, self.day, list(self.cells), list(self.vector),
                self.delay, self.key]  # fmt: skip

    @classmethod
    def from_wire(cls, w: list[Any]) -> Contribution:
        return cls(w[0], w[1], w[2], tuple(w[3]), tuple(w[4]), int(w[5]), int(w[6]))


def contribution(
    survey: Any, registration_date: date, cat: Catalogue, record_keys: RecordKeyFn
) -> Contribution | None:
    """A survey revision's contribution; a withdrawn revision contributes nothing.
    ``record_keys``: person_ref -> record key (processors/disclosure.RecordKeys)."""
    if survey.status == "withdrawn":
        return None
    names = cat.counters()
    vec = cat.survey_vector(survey)
    return Contribution(
        survey.region_code,
        survey.municipality_code,
        survey.date_of_death.isoformat(),
        cat.cells(survey),
        tuple(vec.get(n, 0) for n in names),
        max(0, (registration_date - survey.date_of_death).days),
        record_keys(survey.person_ref),
    )


def catalogue_fingerprint(cat: Catalogue) -> str:
    """Identifies the counter layout state was built with: a catalogue edit needs a replay."""
    layout = "|".join(cat.counters()) + "|keys:" + METHOD
    return hashlib.sha256(layout.encode()).hexdigest()[:12]


# ---- scope-month state ------------------------------------------------------------------------


def new_scope_month() -> dict[str, Any]:
    """cells: label -> vector (month grain, "all" included): the counters, then the key sum of
    each counter (processors/disclosure.py); days: DD -> vector of counters only (totals, only
    for scope types with daily windows, which the public layer does not hold); delays: days ->
    registered count; official: region -> deaths; sub: municipality -> scope-month (in a
    region's state); src: source partition -> highest delta position applied (redelivery
    guard)."""
    return {"cells": {}, "days": {}, "delays": {}, "official": {}, "sub": {}, "src": {}}


@dataclass(frozen=True)
class Layout:
    """What a scope type's state keeps, from the catalogue's applicability."""

    breakdowns: bool
    days: bool


def layouts(cat: Catalogue) -> dict[str, Layout]:
    out = {}
    for scope in ("nation", "region", "municipality"):
        days = any(
            p in ROLLING_DAYS and scope in cat.scopes_for(i, p)
            for i in cat.indicators.values()
            for p in i.periods
        )
        out[scope] = Layout(scope in cat.breakdown_scopes, days)
    return out


def _add_sparse(
    target: dict[str, Vector], key: str, changes: list[tuple[int, int]], width: int
) -> None:
    cur = target.get(key)
    if cur is None:
        cur = target[key] = [0] * width
    for i, d in changes:
        cur[i] += d


def apply_contribution(
    sm: dict[str, Any], c: Contribution, sign: int, layout: Layout, width: int
) -> None:
    """Add (sign=+1) or subtract (-1) a contribution to one scope's month state (``width``:
    the number of counters)."""
    # A survey counts towards a handful of the counters: only those are touched, in every
    # vector the contribution reaches (the hot loop of the aggregation).
    changes = [(i, sign * x) for i, x in enumerate(c.vector) if x]
    keyed = changes + [(width + i, d * c.key) for i, d in changes]
    cells = sm["cells"]
    _add_sparse(cells, TOTAL, keyed, 2 * width)
    if layout.breakdowns:
        for label in c.cells:
            _add_sparse(cells, label, keyed, 2 * width)
    if layout.days:
        _add_sparse(sm["days"], c.day[8:10], changes, width)
    if c.vector[0]:  # registered: its delay feeds the nowcast
        key = str(c.delay)
        sm["delays"][key] = sm["delays"].get(key, 0) + sign


def apply_survey_delta(
    state: dict[str, Any],
    scope_type: str,
    c: Contribution,
    sign: int,
    lays: Mapping[str, Layout],
    width: int,
) -> None:
    """Apply a contribution to a scope key's month state (a region's includes its
    municipalities)."""
    apply_contribution(state, c, sign, lays[scope_type], width)
    if scope_type == "region":
        sub = state["sub"].get(c.municipality)
        if sub is None:
            sub = state["sub"][c.municipality] = new_scope_month()
        apply_contribution(sub, c, sign, lays["municipality"], width)


# ---- periods ----------------------------------------------------------------------------------


Period = tuple[str, date]  # (period_type, period_end)


def quarter_of(month: str) -> str:
    q_start = (int(month[5:7]) - 1) // 3 * 3 + 1
    return f"{month[:4]}-{q_start:02d}"


@lru_cache(maxsize=65536)
def period_months(period_type: str, end: date) -> tuple[str, ...]:
    """The calendar months a month-based period covers."""
    last = end.strftime("%Y-%m")
    n = {"month": 1, "quarter": 3, "year": 12, "rolling_12m": 12}[period_type]
    return tuple(add_months(last, -k) for k in range(n - 1, -1, -1))


@lru_cache(maxsize=65536)
def period_start(period_type: str, end: date) -> date:
    if period_type in ROLLING_DAYS:
        return end - timedelta(days=ROLLING_DAYS[period_type] - 1)
    return month_first_day(period_months(period_type, end)[0])


def calendar_periods_of_month(month: str, as_of_month: str) -> list[Period]:
    """The month, quarter, year and rolling-12-month periods that contain ``month``."""
    q = quarter_of(month)
    out: list[Period] = [
        ("month", month_last_day(month)),
        ("quarter", month_last_day(add_months(q, 2))),
        ("year", date(int(month[:4]), 12, 31)),
    ]
    for k in range(12):
        e = add_months(month, k)
        if month_index(e) > month_index(as_of_month):
            break
        out.append(("rolling_12m", month_last_day(e)))
    return out


def day_window_ends(day: date, as_of: date, cat: Catalogue) -> list[Period]:
    """Daily rolling windows that contain ``day`` and are still open to change."""
    lo = as_of - timedelta(days=cat.settled_after_days)
    out: list[Period] = []
    for ptype, n in ROLLING_DAYS.items():
        first = max(day, lo)
        last = min(day + timedelta(days=n - 1), as_of)
        d = first
        while d <= last:
            out.append((ptype, d))
            d += timedelta(days=1)
    return out


def periods_for_changes(
    months: Iterable[str], days: Iterable[date], as_of: date, cat: Catalogue
) -> set[Period]:
    as_of_month = as_of.strftime("%Y-%m")
    out: set[Period] = set()
    for m in months:
        out.update(calendar_periods_of_month(m, as_of_month))
    out.update(day_windows_ends(days, as_of, cat))
    return out


def day_windows_ends(days: Iterable[date], as_of: date, cat: Catalogue) -> set[Period]:
    """The union of ``day_window_ends`` over ``days``, each window end made once: the ends
    holding a day form one run of dates per window length, and runs of nearby days overlap
    (a backfill touches hundreds of days, each in up to 365 windows of a length)."""
    lo = (as_of - timedelta(days=cat.settled_after_days)).toordinal()
    top = as_of.toordinal()
    ordinals = sorted({d.toordinal() for d in days})
    out: set[Period] = set()
    for ptype, n in ROLLING_DAYS.items():
        ends: set[int] = set()
        reached = lo - 1  # ends up to here are in ``ends`` already
        for d in ordinals:
            first, last = max(d, lo, reached + 1), min(d + n - 1, top)
            ends.update(range(first, last + 1))
            reached = max(reached, last)
        out.update((ptype, date.fromordinal(e)) for e in ends)
    return out


def headline_periods(
    months: Iterable[str], days: Iterable[date], as_of: date, cat: Catalogue
) -> set[Period]:
    """The periods a change shows in first (see ``evaluate_scope``'s ``total_only``): the
    calendar month, quarter and year holding each touched month, the rolling 12 months ending
    this month, and the daily windows ending today — not every later window end."""
    as_of_month = as_of.strftime("%Y-%m")
    current_12m = ("rolling_12m", month_last_day(as_of_month))
    out: set[Period] = set()
    for m in months:
        for p in calendar_periods_of_month(m, as_of_month):
            if p[0] != "rolling_12m" or p == current_12m:
                out.add(p)
    for d in days:
        age = (as_of - d).days
        for ptype, n in ROLLING_DAYS.items():
            if 0 <= age < n:
                out.add((ptype, as_of))
    return out


def periods_for_day(
    months: Iterable[str], as_of: date, since: date | None, cat: Catalogue
) -> set[Period]:
    """What the daily re-evaluation recomputes when the date moves from ``since`` to ``as_of``:
    calendar periods whose completeness or nowcast can have changed, the rolling 12 months
    ending this month, and the daily windows ending on the new days."""
    as_of_month = as_of.strftime("%Y-%m")
    gap = (as_of - since).days if since else 366
    threshold = as_of - timedelta(days=cat.registration_window_days + gap + 1)
    out: set[Period] = set()
    for m in months:
        for p in calendar_periods_of_month(m, as_of_month):
            if p[1] >= threshold:
                out.add(p)
    horizon = as_of - timedelta(days=cat.settled_after_days)
    # New window ends, and ends whose period became complete since the last evaluation.
    ranges = [
        (as_of - timedelta(days=gap - 1), as_of),
        (
            as_of - timedelta(days=cat.registration_window_days + gap),
            as_of - timedelta(days=cat.registration_window_days + 1),
        ),
    ]
    for lo, hi in ranges:
        d = max(lo, horizon)
        while d <= hi:
            for ptype in ROLLING_DAYS:
                out.add((ptype, d))
            d += timedelta(days=1)
    return out


# ---- values -----------------------------------------------------------------------------------


def _row(
    ind: Indicator,
    scope: tuple[str, str],
    breakdown: str,
    period: Period,
    as_of: date,
    cat: Catalogue,
    *,
    value: float | None,
    numerator: float | None,
    denominator: float | None,
    n: int | None,
    suppressed: bool,
    interval: tuple[float, float] | None = None,
    nowcast: float | None = None,
    complete: bool | None = None,
) -> IndicatorValue:
    ptype, end = period
    if complete is None:
        complete = (as_of - end).days > cat.registration_window_days
    if suppressed:
        value = numerator = denominator = nowcast = None
        n = None
        interval = None
    return IndicatorValue(
        ind.id,
        scope[0],
        scope[1],
        ptype,
        period_start(ptype, end),
        end,
        value=value,
        numerator=numerator,
        denominator=denominator,
        n=n,
        suppressed=suppressed,
        ci_low=None if interval is None else interval[0],
        ci_high=None if interval is None else interval[1],
        breakdown=breakdown,
        period_complete=complete,
        nowcast=nowcast,
    )


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _interval(num: float, den: float) -> tuple[float, float] | None:
    return wilson_interval(num, den) if 0 <= num <= den and den > 0 else None


@dataclass
class ScopeView:
    """One scope's month states, as the evaluation reads them."""

    scope_type: str
    code: str
    months: Mapping[str, Mapping[str, Any]]  # month -> scope-month state

    def official(self, month: str) -> int:
        sm = self.months.get(month)
        return sum(sm["official"].values()) if sm else 0


def learning_months(as_of: date, cat: Catalogue) -> list[str]:
    """The latest complete months, from which the nowcast learns the registration delay."""
    last = as_of.strftime("%Y-%m")
    while (as_of - month_last_day(last)).days <= cat.registration_window_days:
        last = add_months(last, -1)
    return [add_months(last, -k) for k in range(cat.nowcast_months)]


def open_periods(months: Iterable[str], as_of: date, cat: Catalogue) -> set[Period]:
    """Calendar periods holding any of ``months`` that are not complete yet (their nowcast
    depends on the delay distribution, so a change to the learning months moves them all)."""
    as_of_month = as_of.strftime("%Y-%m")
    return {
        p
        for m in months
        for p in calendar_periods_of_month(m, as_of_month)
        if (as_of - p[1]).days <= cat.registration_window_days
    }


def delay_distribution(view: ScopeView, as_of: date, cat: Catalogue) -> list[float] | None:
    """F(a): share of registrations with delay <= a days, learned from the latest complete
    months; None without learning data."""
    counts: dict[int, int] = {}
    for month in learning_months(as_of, cat):
        sm = view.months.get(month)
        if sm:
            for delay, c in sm["delays"].items():
                counts[int(delay)] = counts.get(int(delay), 0) + c
    total = sum(counts.values())
    if total <= 0:
        return None
    horizon = max(cat.settled_after_days, max(counts, default=0)) + 1
    cdf, running = [], 0
    for a in range(horizon):
        running += counts.get(a, 0)
        cdf.append(running / total)
    return cdf


def _nowcast(
    view: ScopeView, months: Iterable[str], as_of: date, official: int, cdf: list[float] | None
) -> float | None:
    if cdf is None or official <= 0:
        return None
    estimate = 0.0
    for m in months:
        sm = view.months.get(m)
        if not sm:
            continue
        for dd, vec in sm["days"].items():
            d = date(int(m[:4]), int(m[5:7]), int(dd))
            if d > as_of or not vec[0]:
                continue
            age = (as_of - d).days
            f = cdf[age] if age < len(cdf) else 1.0
            estimate += vec[0] / f if f > 0 else vec[0]
    return estimate / official


def _day_prefix(
    view: ScopeView, first: date, last: date, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ordinals of the touched days in [first, last], in order, and prefix sums of their
    vectors (so a window's total is a difference of two prefixes, not a sum over up to 365
    days): (days,), (days + 1, counters)."""
    days: list[tuple[int, Vector]] = []
    lo, hi = first.toordinal(), last.toordinal()
    m = first.strftime("%Y-%m")
    end_month = last.strftime("%Y-%m")
    while m <= end_month:
        sm = view.months.get(m)
        if sm:
            base = month_first_day(m).toordinal() - 1
            for dd, vec in sm["days"].items():
                d = base + int(dd)
                if lo <= d <= hi:
                    days.append((d, vec))
        m = add_months(m, 1)
    days.sort(key=lambda x: x[0])
    prefix = np.zeros((len(days) + 1, width), dtype=np.int64)
    if days:
        prefix[1:] = np.cumsum(np.array([v for _, v in days], dtype=np.int64), axis=0)
    return np.array([d for d, _ in days], dtype=np.int64), prefix


def evaluate_scope(
    view: ScopeView,
    periods: Iterable[Period],
    as_of: date,
    cat: Catalogue,
    total_only: bool = False,
) -> list[IndicatorValue]:
    """Every row of one scope for the requested periods (rows exist only where data does);
    ``total_only``: only breakdown ``all`` (the headline rows, computed first in live traffic).
    Share rows are computed a column at a time (processors/columnar.py)."""
    width = len(cat.counters())
    index = {name: i for i, name in enumerate(cat.counters())}
    stype = view.scope_type
    scope = (stype, view.code)
    periods = sorted(periods)
    # What applies, decided once per call rather than once per row.
    shares: dict[str, list[tuple[Indicator, int, int, frozenset[str]]]] = {}
    officials: dict[str, list[Indicator]] = {}
    for ptype in {p for p, _ in periods}:
        shares[ptype] = [
            (i, index[i.num_counter], index[i.den_counter],
             frozenset(cat.breakdowns_for(i, stype, ptype)))
            for i in cat.of_kind(SURVEY_KINDS)
            if ptype in i.periods and stype in cat.scopes_for(i, ptype)
        ]  # fmt: skip
        officials[ptype] = [
            i for i in cat.of_kind(OFFICIAL_KINDS)
            if ptype in i.periods and stype in cat.scopes_for(i, ptype)
        ]  # fmt: skip
    out: list[IndicatorValue] = []
    block = columnar.ShareRows(scope)
    window = cat.registration_window_days

    day_periods = [p for p in periods if p[0] in ROLLING_DAYS and shares[p[0]]]
    if day_periods:
        first = min(period_start(p, e) for p, e in day_periods)
        last = max(e for _, e in day_periods)
        ordinals, prefix = _day_prefix(view, first, last, width)
        for ptype in sorted({p for p, _ in day_periods}):
            ends = [e for p, e in day_periods if p == ptype]
            sums, touched = columnar.day_sums(
                ordinals, prefix, [period_start(ptype, e) for e in ends], ends
            )
            at = np.flatnonzero(touched)
            chosen = [ends[k] for k in at.tolist()]
            starts = [period_start(ptype, e) for e in chosen]
            complete = [(as_of - e).days > window for e in chosen]
            zeros = np.zeros(len(chosen), dtype=np.int64)
            for ind, ni, di, _ in shares[ptype]:
                # Daily windows are exact-layer only: no public figures.
                counts = np.stack([sums[at, ni], sums[at, di], zeros, zeros], axis=1)
                block.add(ind.id, ind.min_n, ptype, [TOTAL] * len(chosen), starts, chosen,
                          complete, counts, public=False)  # fmt: skip

    calendar = [
        p for p in periods if p[0] not in ROLLING_DAYS and (shares[p[0]] or officials[p[0]])
    ]
    if not calendar:
        return block.rows()
    spans = {p: period_months(*p) for p in calendar}
    edges = [m for months in spans.values() for m in (months[0], months[-1])]
    cube = columnar.MonthCube.build(view.months, edges, width, TOTAL if total_only else None)
    total_at = cube.labels.index(TOTAL) if TOTAL in cube.labels else None
    cdf: list[float] | None = None
    cdf_done = False
    for ptype in sorted({p for p, _ in calendar}):
        group = [p for p in calendar if p[0] == ptype]
        sums, seen, present = cube.window(
            [spans[p][0] for p in group], [spans[p][-1] for p in group]
        )
        starts = [month_first_day(spans[p][0]) for p in group]
        complete = [(as_of - e).days > window for _, e in group]
        for ind, ni, di, dims in shares[ptype]:
            allowed = np.array(
                [label == TOTAL or label.split(":", 1)[0] in dims for label in cube.labels],
                dtype=bool,
            )
            at, li = np.nonzero(seen & allowed)
            ats, lis = at.tolist(), li.tolist()
            counts = sums[at, li][:, [ni, di, width + ni, width + di]]
            block.add(ind.id, ind.min_n, ptype, [cube.labels[k] for k in lis],
                      [starts[k] for k in ats], [group[k][1] for k in ats],
                      [complete[k] for k in ats], counts, public=True)  # fmt: skip
        if not officials[ptype]:
            continue
        for k, period in enumerate(group):
            if not present[k]:
                continue
            official = sum(view.official(m) for m in spans[period] if m in view.months)
            total = [0] * (2 * width) if total_at is None else sums[k, total_at].tolist()
            for ind in officials[ptype]:
                if ind.kind == "coverage" and not cdf_done:
                    cdf, cdf_done = delay_distribution(view, as_of, cat), True
                out.append(
                    _official_row(ind, scope, period, total, official, index, as_of, cat, view,
                                  cdf)
                )  # fmt: skip
    return block.rows() + out


def _official_row(
    ind: Indicator,
    scope: tuple[str, str],
    period: Period,
    total: Vector,
    official: int,
    index: Mapping[str, int],
    as_of: date,
    cat: Catalogue,
    view: ScopeView,
    cdf: list[float] | None,
) -> IndicatorValue:
    width = len(index)
    need = cat.need_share * official
    pop = index[f"pop.{ind.population}"] if ind.population else None
    received = total[pop] if pop is not None else 0
    received_key = total[width + pop] if pop is not None else 0
    unmet = need - received
    small_received = 0 < received < ind.min_n
    kw: dict[str, Any]
    if ind.kind == "coverage":
        registered = total[index["registered"]]
        public = public_coverage(registered, total[width + index["registered"]], official,
                                 ind.min_n)  # fmt: skip
        complete = (as_of - period[1]).days > cat.registration_window_days
        nowcast = None if complete else _nowcast(view, period_months(*period), as_of, official, cdf)
        kw = dict(
            value=_ratio(registered, official), numerator=registered, denominator=official,
            n=official, suppressed=official < ind.min_n,
            interval=_interval(registered, official), nowcast=nowcast,
        )  # fmt: skip
        return _row(ind, scope, TOTAL, period, as_of, cat, **kw).set_public(public)
    if ind.kind == "need":  # from official deaths, public already
        kw = dict(value=need, numerator=need, denominator=None, n=None, suppressed=False)
        return _row(ind, scope, TOTAL, period, as_of, cat, **kw).public_as_exact()
    p_received = public_received(received, received_key, ind.min_n)
    if ind.kind == "received":
        kw = dict(value=received, numerator=received, denominator=None, n=None,
                  suppressed=small_received)  # fmt: skip
        public = count_figures(p_received)
    elif ind.kind == "unmet":
        kw = dict(value=unmet, numerator=unmet, denominator=None, n=None,
                  suppressed=small_received)  # fmt: skip
        public = count_figures(None if p_received is None else need - p_received)
    else:  # unmet_share
        kw = dict(
            value=_ratio(unmet, need), numerator=unmet, denominator=need, n=official,
            suppressed=small_received or official < ind.min_n, interval=_interval(unmet, need),
        )  # fmt: skip
        public = public_unmet_share(need, p_received, official, ind.min_n)
    return _row(ind, scope, TOTAL, period, as_of, cat, **kw).set_public(public)


# ---- structure --------------------------------------------------------------------------------


def new_structure() -> dict[str, Any]:
    """units: unit_id -> events in arrival order (validated unit-event dicts); population:
    municipality -> year -> residents; first_month: earliest month with data; offset: last
    applied message position (redelivery guard)."""
    return {"units": {}, "population": {}, "first_month": None, "offset": -1}


def structure_add_unit(st: dict[str, Any], event: Mapping[str, Any]) -> str:
    st["units"].setdefault(event["unit_id"], []).append(dict(event))
    month = str(event["effective_date"])[:7]
    _extend_first_month(st, month)
    return month


def structure_add_population(st: dict[str, Any], municipality: str, year: int, pop: int) -> str:
    st["population"].setdefault(municipality, {})[str(year)] = pop
    month = f"{year:04d}-01"
    _extend_first_month(st, month)
    return month


def _extend_first_month(st: dict[str, Any], month: str) -> None:
    if st["first_month"] is None or month < st["first_month"]:
        st["first_month"] = month


def open_units(st: Mapping[str, Any], t: date) -> list[Mapping[str, Any]]:
    """Units whose latest event on or before ``t`` is an upsert (ties: the last to arrive)."""
    out = []
    iso = t.isoformat()
    for events in st["units"].values():
        latest = None
        for e in events:
            if str(e["effective_date"]) <= iso and (
                latest is None or str(e["effective_date"]) >= str(latest["effective_date"])
            ):
                latest = e
        if latest is not None and latest["event"] == "upsert":
            out.append(latest)
    return out


def _population(st: Mapping[str, Any], municipality: str, year: int) -> int:
    years = st["population"].get(municipality)
    if not years:
        return 0
    known = [int(y) for y in years if int(y) <= year]
    return int(years[str(max(known))]) if known else 0


def evaluate_structure(
    st: Mapping[str, Any], months: Iterable[str], as_of: date, cat: Catalogue
) -> list[IndicatorValue]:
    """Structural rows for the given months, at every scope they apply to."""
    inds = [i for i in cat.indicators.values() if i.kind in ("per_100k", "availability")]
    by_region = municipalities_by_region()
    all_munis = list(municipalities())
    out: list[IndicatorValue] = []
    for month in sorted(set(months)):
        end = month_last_day(month)
        t = min(end, as_of)
        if month_first_day(month) > as_of:
            continue
        units = open_units(st, t)
        period: Period = ("month", end)
        complete = end < as_of
        pops = {m: _population(st, m, t.year) for m in all_munis}
        for ind in inds:
            chosen = [
                u for u in units
                if u["kind"] in ind.unit_kinds
                and (ind.requirement is None or ind.requirement(u))
            ]  # fmt: skip
            if ind.kind == "per_100k":
                field = ind.unit_field or ""
                per_region: dict[str, float] = {}
                for u in chosen:
                    per_region[u["region_code"]] = per_region.get(u["region_code"], 0.0) + float(
                        _get(u, field) or 0
                    )
                scopes: list[tuple[str, str, float, int]] = []
                if "nation" in ind.scopes:
                    scopes.append(("nation", NATION, sum(per_region.values()), sum(pops.values())))
                if "region" in ind.scopes:
                    for r in regions():
                        pop = sum(pops[m] for m in by_region[r])
                        scopes.append(("region", r, per_region.get(r, 0.0), pop))
                for stype, code, num, pop in scopes:
                    out.append(_row(
                        ind, (stype, code), TOTAL, period, as_of, cat,
                        value=None if pop == 0 else num / pop * 100_000, numerator=num,
                        denominator=pop, n=None, suppressed=False, complete=complete,
                    ).public_as_exact())  # fmt: skip
            else:
                covered: set[str] = set()
                for u in chosen:
                    covered.update(u["catchment_municipalities"] or [u["municipality_code"]])
                scopes2: list[tuple[str, str, list[str]]] = []
                if "nation" in ind.scopes:
                    scopes2.append(("nation", NATION, all_munis))
                if "region" in ind.scopes:
                    scopes2 += [("region", r, list(by_region[r])) for r in regions()]
                if "municipality" in ind.scopes:
                    scopes2 += [("municipality", m, [m]) for m in all_munis]
                for stype, code, members in scopes2:
                    num = sum(1 for m in members if m in covered)
                    out.append(_row(
                        ind, (stype, code), TOTAL, period, as_of, cat,
                        value=num / len(members), numerator=num, denominator=len(members),
                        n=None, suppressed=False, complete=complete,
                    ).public_as_exact())  # fmt: skip
    return out


def structure_months(st: Mapping[str, Any], since_month: str | None, as_of: date) -> list[str]:
    """Months to (re)evaluate: from ``since_month`` (or the first with data) to as_of's."""
    first = since_month or st["first_month"]
    if first is None:
        return []
    if st["first_month"] is not None and first < st["first_month"]:
        first = st["first_month"]
    last = as_of.strftime("%Y-%m")
    n = month_index(last) - month_index(first)
    return [add_months(first, k) for k in range(n + 1)] if n >= 0 else []
