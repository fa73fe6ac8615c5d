"""The batch oracle: every indicator row recomputed from the raw event history.

An independent, deliberately plain implementation of docs/indicators.md. It never looks at the
streaming engine's state: it replays the revisions of each survey, finds the current active
revision of every survey and every (scope, cell, day) that any applied active revision ever
touched, and then, for every row that should exist, sums the contributions of the current
active surveys that fall in it. Used by the tests (streaming == batch) and for repairs.

Readings of the spec where it leaves room (each also marked ``# Reading:`` where it applies):

1. Registration date: the first applied revision of a survey is the first record of its
   ``survey_id`` to arrive (nothing was applied before it), even when that record is a
   withdrawal. Its ``submitted_at`` date (UTC) is the registration date for good.
2. Share rows exist for every touched (scope, cell, period) where the indicator applies, even
   when the touching surveys were never in the indicator's population: n = 0, suppressed.
3. Calendar periods (month, quarter, year) are not limited by ``as_of``; only rolling windows
   are, as the spec says.
4. Official family: "has an official death count" means an official record exists for that
   (region, month), even one of 0 deaths. At a municipality scope (not in the packaged
   catalogue) there are no official counts: Σ official deaths is 0.
5. ``received`` and ``unmet`` rows: the spec names only value and numerator, so n, denominator
   and the interval are null.
6. Nowcast: "registrations so far" r_d is Σ ``registered`` of the current active surveys of
   the scope that died on day d (every survey given to the oracle has arrived). "No learning
   data" is an empty learning set; "no official deaths" is Σ official deaths of the period = 0.
   The latest complete calendar month is the latest month m with
   ``as_of − last day of m > registration_window_days``; the learning months are it and the
   ``nowcast_months − 1`` months before it.
7. Structural rows start at the first month of any unit event (of any kind) or any population
   year's January, the same first month for every structural indicator and scope. A unit's
   region, municipality, kind and fields are those of its latest event at ``t``. A
   ``per_100k`` at a municipality scope (not in the packaged catalogue) sums the units located
   in that municipality. A unit field that is missing counts 0.
8. Availability: a unit's catchment may list municipalities of other regions; each counts for
   the region it belongs to in the code list.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from processors.catalogue import (
    OFFICIAL_KINDS,
    ROLLING_DAYS,
    STRUCTURAL_KINDS,
    SURVEY_KINDS,
    TOTAL,
    Catalogue,
    Indicator,
    _get,
    default_catalogue,
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
    count_figures,
    public_coverage,
    public_received,
    public_share,
    public_unmet_share,
)
from schemas.codes import municipalities, municipalities_by_region, regions
from schemas.models import DeathSurvey, OfficialDeaths, Population, UnitEvent

Key = tuple[str, str, str, str, str, date]
Scope = tuple[str, str]  # (scope_type, scope_code)
CellKey = tuple[str, str, str]  # (scope_type, scope_code, breakdown label)
Period = tuple[date, date]  # (period_start, period_end)

NATION = "SE"
KEY = "#key"  # suffix of a counter's key sum


# ---- small date helpers ---------------------------------------------------------------------


def _month_of(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _months_of_period(start: date, end: date) -> list[str]:
    first, last = _month_of(start), _month_of(end)
    return [add_months(first, i) for i in range(month_index(last) - month_index(first) + 1)]


def _calendar_period(period_type: str, month: str) -> Period:
    """The month, quarter or year containing ``month``."""
    if period_type == "month":
        return month_first_day(month), month_last_day(month)
    year, mon = int(month[:4]), int(month[5:7])
    if period_type == "quarter":
        first = f"{year:04d}-{(mon - 1) // 3 * 3 + 1:02d}"
        return month_first_day(first), month_last_day(add_months(first, 2))
    if period_type == "year":
        return date(year, 1, 1), date(year, 12, 31)
    raise ValueError(f"not a calendar period: {period_type}")


def _rolling_12m(end_month: str) -> Period:
    return month_first_day(add_months(end_month, -11)), month_last_day(end_month)


def _month_periods(period_type: str, months: Iterable[str], as_of: date) -> set[Period]:
    """Calendar and rolling-12-month periods containing any of ``months``."""
    out: set[Period] = set()
    last_end = month_index(_month_of(as_of))
    for m in months:
        if period_type == "rolling_12m":
            # Ends from the touched month to 11 months later, not after the month of as_of.
            for i in range(12):
                e = add_months(m, i)
                if month_index(e) <= last_end:
                    out.add(_rolling_12m(e))
        else:
            out.add(_calendar_period(period_type, m))
    return out


# ---- revisions ------------------------------------------------------------------------------


@dataclass
class _SurveyState:
    max_revision: int
    registration_date: date
    current: DeathSurvey  # the latest applied revision


def _replay(
    surveys: Iterable[DeathSurvey],
) -> tuple[list[tuple[DeathSurvey, date]], list[DeathSurvey]]:
    """(current active revisions with their registration dates, every applied active revision)."""
    states: dict[str, _SurveyState] = {}
    touching: list[DeathSurvey] = []
    for s in surveys:
        st = states.get(s.survey_id)
        if st is not None and s.revision <= st.max_revision:
            continue  # stale or duplicate: changes nothing
        if st is None:
            # Reading 1: the first record to arrive is the first applied revision.
            states[s.survey_id] = _SurveyState(s.revision, s.submitted_at.date(), s)
        else:
            st.max_revision = s.revision
            st.current = s
        if s.status == "active":
            touching.append(s)
    current = [(st.current, st.registration_date) for st in states.values()]
    return [(s, reg) for s, reg in current if s.status == "active"], touching


def _scopes_of(s: DeathSurvey) -> list[Scope]:
    return [("nation", NATION), ("region", s.region_code), ("municipality", s.municipality_code)]


# ---- survey aggregates ----------------------------------------------------------------------


class _SurveyData:
    """Current contributions and touches of the surveys, by (scope, cell) and day."""

    def __init__(
        self, surveys: Iterable[DeathSurvey], cat: Catalogue, record_keys: Callable[[str], int]
    ) -> None:
        self.cat = cat
        active, touching = _replay(surveys)
        self.active = active
        # Touches: every applied active revision, including superseded and withdrawn ones.
        touched: dict[CellKey, set[date]] = defaultdict(set)
        for rev in touching:
            for st, code in _scopes_of(rev):
                for cell in self._cells(rev):
                    touched[(st, code, cell)].add(rev.date_of_death)
        self.touched_days: dict[CellKey, list[date]] = {k: sorted(v) for k, v in touched.items()}
        # Current contributions of the active surveys, per cell and day.
        by_day: dict[CellKey, dict[date, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for s, _reg in active:
            vec = cat.survey_vector(s)
            # Beside each counter, the sum of the record keys it counts (the Cell Key Method).
            k = record_keys(s.person_ref)
            vec.update({name + KEY: k * x for name, x in list(vec.items())})
            for st, code in _scopes_of(s):
                for cell in self._cells(s):
                    by_day[(st, code, cell)][s.date_of_death].update(vec)
        self.by_day = by_day
        self.days_sorted: dict[CellKey, list[date]] = {k: sorted(v) for k, v in by_day.items()}
        by_month: dict[CellKey, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for key, days in by_day.items():
            for d, vec in days.items():
                by_month[key][_month_of(d)].update(vec)
        self.by_month = by_month
        self._sums: dict[tuple[CellKey, str, Period], Counter[str]] = {}
        self._running: dict[CellKey, list[Counter[str]]] = {}

    def _cells(self, s: DeathSurvey) -> list[str]:
        return [TOTAL] + [b.label(s) for b in self.cat.breakdowns.values()]

    def _running_totals(self, key: CellKey) -> list[Counter[str]]:
        """running[i] = Σ of the cell's first i days (in date order)."""
        if key not in self._running:
            running = [Counter[str]()]
            for d in self.days_sorted.get(key, []):
                running.append(running[-1] + self.by_day[key][d])
            self._running[key] = running
        return self._running[key]

    def total(self, key: CellKey, period_type: str, period: Period) -> Counter[str]:
        """Σ of the current contributions over the period's days in the cell."""
        cache_key = (key, "days" if period_type in ROLLING_DAYS else "months", period)
        found = self._sums.get(cache_key)
        if found is not None:
            return found
        out: Counter[str] = Counter()
        start, end = period
        if period_type in ROLLING_DAYS:
            # Σ over the days in [start, end], as a difference of running totals.
            days = self.days_sorted.get(key, [])
            running = self._running_totals(key)
            out = running[bisect_right(days, end)] - running[bisect_left(days, start)]
        else:
            per_month = self.by_month.get(key, {})
            for m in _months_of_period(start, end):
                if m in per_month:
                    out.update(per_month[m])
        self._sums[cache_key] = out
        return out


# ---- rows -----------------------------------------------------------------------------------


def _row(
    ind: Indicator,
    scope: Scope,
    cell: str,
    period_type: str,
    period: Period,
    *,
    value: float | None,
    numerator: float | None,
    denominator: float | None,
    n: int | None,
    suppressed: bool,
    complete: bool,
    ci: tuple[float, float] | None = None,
    nowcast: float | None = None,
) -> IndicatorValue:
    if suppressed:
        value = numerator = denominator = nowcast = None
        n = None
        ci = None
    return IndicatorValue(
        indicator_id=ind.id,
        scope_type=scope[0],
        scope_code=scope[1],
        period_type=period_type,
        period_start=period[0],
        period_end=period[1],
        value=value,
        numerator=numerator,
        denominator=denominator,
        n=n,
        suppressed=suppressed,
        ci_low=None if ci is None else ci[0],
        ci_high=None if ci is None else ci[1],
        breakdown=cell,
        period_complete=complete,
        nowcast=nowcast,
    )


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


class _Oracle:
    def __init__(
        self,
        surveys: Iterable[DeathSurvey],
        official: Iterable[OfficialDeaths],
        units: Iterable[UnitEvent],
        population: Iterable[Population],
        as_of: date,
        cat: Catalogue,
        record_keys: Callable[[str], int],
    ) -> None:
        self.cat = cat
        self.as_of = as_of
        self.data = _SurveyData(surveys, cat, record_keys)
        self.official: dict[tuple[str, str], int] = {}
        for o in official:  # a later record for the same (region, month) replaces
            self.official[(o.region_code, o.month)] = o.deaths
        self.unit_events: list[UnitEvent] = list(units)
        self.population: dict[tuple[str, int], int] = {}
        for p in population:  # a later (municipality, year) replaces
            self.population[(p.municipality_code, p.year)] = p.population
        self.rows: dict[Key, IndicatorValue] = {}
        self._delays: dict[Scope, list[int]] = {}

    def add(self, row: IndicatorValue) -> None:
        assert row.key not in self.rows, row.key
        self.rows[row.key] = row

    def complete(self, period_end: date) -> bool:
        return (self.as_of - period_end).days > self.cat.registration_window_days

    # ---- share ------------------------------------------------------------------------------

    def share_periods(self, period_type: str, days: list[date]) -> set[Period]:
        if period_type in ROLLING_DAYS:
            size = ROLLING_DAYS[period_type]
            out: set[Period] = set()
            # Ends from a touched day to size − 1 days later, limited to
            # [as_of − settled_after_days, as_of]: an end e exists when [e − size + 1, e]
            # holds a touched day.
            first_end = self.as_of - timedelta(days=self.cat.settled_after_days)
            e = first_end
            while e <= self.as_of:
                start = e - timedelta(days=size - 1)
                if bisect_right(days, e) > bisect_left(days, start):
                    out.add((start, e))
                e += timedelta(days=1)
            return out
        return _month_periods(period_type, {_month_of(d) for d in days}, self.as_of)

    def shares(self) -> None:
        cat = self.cat
        period_cache: dict[tuple[CellKey, str], set[Period]] = {}
        for ind in cat.of_kind(SURVEY_KINDS):
            for pt in ind.periods:
                for st in cat.scopes_for(ind, pt):
                    dims = set(cat.breakdowns_for(ind, st, pt))
                    for key, days in self.data.touched_days.items():
                        if key[0] != st:
                            continue
                        cell = key[2]
                        # Reading 2: any touch makes the row, whatever the population.
                        if cell != TOTAL and cell.split(":", 1)[0] not in dims:
                            continue
                        if (key, pt) not in period_cache:
                            period_cache[(key, pt)] = self.share_periods(pt, days)
                        for period in period_cache[(key, pt)]:
                            self.add(self.share_row(ind, key, pt, period))

    def share_row(
        self, ind: Indicator, key: CellKey, period_type: str, period: Period
    ) -> IndicatorValue:
        sums = self.data.total(key, period_type, period)
        num = sums[ind.num_counter]
        den = sums[ind.den_counter]
        row = _row(
            ind,
            (key[0], key[1]),
            key[2],
            period_type,
            period,
            value=_ratio(num, den),
            numerator=float(num),
            denominator=float(den),
            n=den,
            suppressed=den < ind.min_n,
            complete=self.complete(period[1]),
            ci=wilson_interval(num, den),
        )
        if period_type in ROLLING_DAYS:
            return row  # daily windows: the exact layer only
        keys = sums[ind.num_counter + KEY], sums[ind.den_counter + KEY]
        return row.set_public(public_share(num, den, *keys, ind.min_n))

    # ---- official-deaths family -------------------------------------------------------------

    def official_deaths(self, scope: Scope, months: list[str]) -> int:
        st, code = scope
        if st == "nation":
            return sum(d for (_r, m), d in self.official.items() if m in months)
        if st == "region":
            return sum(self.official.get((code, m), 0) for m in months)
        return 0  # Reading 4: no official counts per municipality

    def official_scopes(self, scope_type: str) -> dict[Scope, set[str]]:
        """Scopes of a type with the months that a survey touched or that have an official count."""
        out: dict[Scope, set[str]] = defaultdict(set)
        for (st, code, cell), days in self.data.touched_days.items():
            if st == scope_type and cell == TOTAL:
                out[(st, code)].update(_month_of(d) for d in days)
        for region, month in self.official:
            if scope_type == "nation":
                out[("nation", NATION)].add(month)
            elif scope_type == "region":
                out[("region", region)].add(month)
        return out

    def officials(self) -> None:
        cat = self.cat
        for ind in cat.of_kind(OFFICIAL_KINDS):
            for pt in ind.periods:
                for st in cat.scopes_for(ind, pt):
                    for scope, months in self.official_scopes(st).items():
                        for period in _month_periods(pt, months, self.as_of):
                            self.add(self.official_row(ind, scope, pt, period))

    def official_row(
        self, ind: Indicator, scope: Scope, period_type: str, period: Period
    ) -> IndicatorValue:
        cat = self.cat
        key = (scope[0], scope[1], TOTAL)
        sums = self.data.total(key, period_type, period)
        deaths = self.official_deaths(scope, _months_of_period(*period))
        complete = self.complete(period[1])
        common: dict[str, Any] = {"complete": complete}
        if ind.kind == "coverage":
            registered = sums["registered"]
            suppressed = deaths < ind.min_n
            nowcast = None
            if not complete and not suppressed:
                nowcast = self.nowcast(scope, period, deaths)
            return _row(
                ind, scope, TOTAL, period_type, period,
                value=_ratio(registered, deaths),
                numerator=float(registered),
                denominator=float(deaths),
                n=deaths,
                suppressed=suppressed,
                ci=wilson_interval(registered, deaths) if registered <= deaths else None,
                nowcast=nowcast,
                **common,
            ).set_public(public_coverage(registered, sums["registered" + KEY], deaths,
                                         ind.min_n))  # fmt: skip
        need = cat.need_share * float(deaths)
        if ind.kind == "need":
            return _row(
                ind, scope, TOTAL, period_type, period,
                value=need, numerator=need, denominator=None, n=None, suppressed=False, **common,
            ).public_as_exact()  # fmt: skip
        assert ind.population is not None
        received = sums[f"pop.{ind.population}"]
        p_received = public_received(received, sums[f"pop.{ind.population}" + KEY], ind.min_n)
        # Complementary suppression: need − unmet would reveal received.
        small_received = 0 < received < ind.min_n
        if ind.kind == "received":
            return _row(
                ind, scope, TOTAL, period_type, period,
                value=float(received), numerator=float(received), denominator=None, n=None,
                suppressed=small_received, **common,
            ).set_public(count_figures(p_received))  # fmt: skip
        unmet = need - received
        p_unmet = None if p_received is None else need - p_received
        if ind.kind == "unmet":
            return _row(
                ind, scope, TOTAL, period_type, period,
                value=unmet, numerator=unmet, denominator=None, n=None,
                suppressed=small_received, **common,
            ).set_public(count_figures(p_unmet))  # fmt: skip
        assert ind.kind == "unmet_share", ind.kind
        return _row(
            ind, scope, TOTAL, period_type, period,
            value=_ratio(unmet, need),
            numerator=unmet,
            denominator=need,
            n=deaths,
            suppressed=small_received or deaths < ind.min_n,
            ci=wilson_interval(unmet, need) if 0 <= unmet <= need else None,
            **common,
        ).set_public(public_unmet_share(need, p_received, deaths, ind.min_n))  # fmt: skip

    # ---- nowcast ----------------------------------------------------------------------------

    def learning_months(self) -> set[str]:
        m = _month_of(self.as_of)
        while not self.complete(month_last_day(m)):
            m = add_months(m, -1)
        return {add_months(m, -i) for i in range(self.cat.nowcast_months)}

    def delays(self, scope: Scope) -> list[int]:
        """Sorted registration delays of the scope's active surveys in the learning months."""
        if scope in self._delays:
            return self._delays[scope]
        months = self.learning_months()
        out = []
        for s, reg in self.data.active:
            if scope in _scopes_of(s) and _month_of(s.date_of_death) in months:
                out.append(max(0, (reg - s.date_of_death).days))
        self._delays[scope] = sorted(out)
        return self._delays[scope]

    def nowcast(self, scope: Scope, period: Period, deaths: int) -> float | None:
        delays = self.delays(scope)
        if not delays or deaths == 0:
            return None
        per_day = self.data.by_day.get((scope[0], scope[1], TOTAL), {})
        total = 0.0
        d, last = period[0], min(period[1], self.as_of)
        while d <= last:
            r = per_day[d]["registered"] if d in per_day else 0
            f = bisect_right(delays, (self.as_of - d).days) / len(delays)  # F(as_of − d)
            total += r / f if f > 0 else r
            d += timedelta(days=1)
        return total / deaths

    # ---- structural -------------------------------------------------------------------------

    def structural_months(self) -> list[str]:
        firsts = [_month_of(u.effective_date) for u in self.unit_events]
        firsts += [f"{year:04d}-01" for (_m, year) in self.population]
        if not firsts:
            return []
        first = min(firsts, key=month_index)
        last = _month_of(self.as_of)
        return [add_months(first, i) for i in range(month_index(last) - month_index(first) + 1)]

    def open_units(self, t: date) -> list[UnitEvent]:
        """The latest event of each unit with effective_date ≤ t, where it is an upsert."""
        latest: dict[str, UnitEvent] = {}
        for e in self.unit_events:  # arrival order: on the same date the later one wins
            if e.effective_date > t:
                continue
            seen = latest.get(e.unit_id)
            if seen is None or e.effective_date >= seen.effective_date:
                latest[e.unit_id] = e
        return [e for e in latest.values() if e.event == "upsert"]

    def scope_population(self, munis: Iterable[str], year: int) -> int:
        total = 0
        for m in munis:
            years = [y for (mm, y) in self.population if mm == m and y <= year]
            if years:  # municipalities without a year ≤ year(t) count 0
                total += self.population[(m, max(years))]
        return total

    def structurals(self) -> None:
        cat = self.cat
        all_munis = sorted(municipalities())
        by_region = municipalities_by_region()
        codes = {"nation": [NATION], "region": list(regions()), "municipality": all_munis}
        months = self.structural_months()
        open_cache: dict[date, list[UnitEvent]] = {}
        pop_cache: dict[int, dict[str, int]] = {}
        for ind in cat.of_kind(STRUCTURAL_KINDS):
            for pt in ind.periods:
                assert pt == "month"
                for st in cat.scopes_for(ind, pt):
                    for m in months:
                        period = (month_first_day(m), month_last_day(m))
                        t = min(period[1], self.as_of)
                        if t not in open_cache:
                            open_cache[t] = self.open_units(t)
                        units = [u for u in open_cache[t] if u.kind in ind.unit_kinds]
                        if t.year not in pop_cache:
                            pop_cache[t.year] = {
                                mu: self.scope_population([mu], t.year) for mu in all_munis
                            }
                        pops = pop_cache[t.year]
                        for code in codes[st]:
                            if st == "nation":
                                munis = all_munis
                            elif st == "region":
                                munis = list(by_region[code])
                            else:
                                munis = [code]
                            self.add(
                                self.structural_row(ind, (st, code), munis, period, units, pops)
                            )

    def structural_row(
        self,
        ind: Indicator,
        scope: Scope,
        munis: list[str],
        period: Period,
        units: list[UnitEvent],
        pops: dict[str, int],
    ) -> IndicatorValue:
        st, code = scope
        complete = period[1] < self.as_of
        if ind.kind == "per_100k":
            assert ind.unit_field is not None

            def in_scope(u: UnitEvent) -> bool:
                if st == "nation":
                    return True
                if st == "region":
                    return u.region_code == code
                return u.municipality_code == code  # Reading 7

            numerator = 0.0
            for u in units:
                if in_scope(u):
                    numerator += float(_get(u, ind.unit_field) or 0)
            pop = sum(pops[m] for m in munis)
            value = None if pop == 0 else numerator / pop * 100000
            return _row(
                ind, scope, TOTAL, "month", period,
                value=value, numerator=numerator, denominator=float(pop), n=None,
                suppressed=False, complete=complete,
            )  # fmt: skip
        assert ind.kind == "availability", ind.kind
        assert ind.requirement is not None
        covered: set[str] = set()
        for u in units:
            if ind.requirement(u):
                covered.update(u.catchment_municipalities or [u.municipality_code])
        numerator = float(sum(1 for m in munis if m in covered))
        denominator = float(len(munis))
        return _row(
            ind, scope, TOTAL, "month", period,
            value=_ratio(numerator, denominator), numerator=numerator, denominator=denominator,
            n=None, suppressed=False, complete=complete,
        )  # fmt: skip


def oracle(
    surveys: Iterable[DeathSurvey],
    official: Iterable[OfficialDeaths],
    units: Iterable[UnitEvent],
    population: Iterable[Population],
    as_of: date,
    catalogue: Catalogue | None = None,
    *,
    record_keys: Callable[[str], int],
) -> dict[Key, IndicatorValue]:
    """Every indicator row, keyed by IndicatorValue.key, recomputed from the raw history.

    Each input is in arrival order. ``as_of`` is the evaluation date. ``record_keys``: the
    deployment's person_ref -> record key (processors/disclosure.RecordKeys).
    """
    cat = catalogue or default_catalogue()
    o = _Oracle(surveys, official, units, population, as_of, cat, record_keys)
    o.shares()
    o.officials()
    o.structurals()
    for row in o.rows.values():
        if cat.indicators[row.indicator_id].kind in STRUCTURAL_KINDS:
            row.public_as_exact()  # beds, staff and coverage of municipalities: no persons
    return o.rows
