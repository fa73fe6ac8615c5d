"""An attacker on the public layer: it tries to learn small counts (1-4 persons) by combining
published cells.

What it reads: only the ``published`` schema, as the public role ``palliwatch_reader``
(``read_public``): ``indicator_series`` and ``indicator_latest``, ``municipalities`` (which
municipality belongs to which region) and ``survey_arrivals_daily``. Columns are read by name
from ``SELECT *``, so a view with or without ``suppressed``, ``nowcast`` or the daily rolling
windows works the same. What it knows besides: the documented method (docs/indicators.md: the
catalogue, which rows exist, the suppression rules, the registration horizon of 193 days) and,
when counts are perturbed, the Cell Key Method's table (``processors.disclosure``): for a true
count c, the distribution of the published count. It does not know the secret, so it cannot
compute a cell's key or its noise.

The method it assumes is read from the data: where a breakdown's total and all its cells are
published, exact counts add up; perturbed ones (almost) never all do. It assumes exact counts
when at least ``MIN_ADDITIVITY_CHECKS`` such sums all hold, else the perturbation table.
Arrivals: exact when the view shows counts under 5 (it never suppressed them), else perturbed.

A *cell* is a count of persons: a catalogue counter (``pop.expected_deaths``, the numerator
``eol_conversation.num``, ...) in a scope, breakdown cell and range of days of death. Counters
with the same definition are one cell: every process indicator's denominator is
``pop.expected_deaths``; coverage's numerator and ``home_death_share``'s denominator are
``pop.all_deaths``; ``spec_received``, ``need - spec_unmet`` and the denominator of
``non_cancer_share_specialised`` are ``pop.specialised_support``. A month is the same cell
whatever row publishes it (a 30-day window covering exactly April is April; the rolling 12
months ending December are the year).

What one published row says about its cell (``obs``):
- published count p: the true counts c from which p is reachable (``perturbation_distribution``
  of each candidate c, the truncated rows of small c included; exact publication: c = p), and
  not those the rule would have suppressed (a published denominator is at least min_n);
  a numerator published equal to its denominator may have been capped there;
- suppressed: the true counts that are suppressed (under min_n) or whose published count could
  fall under min_n; received counts are suppressed only when positive;
- no row where the documentation says a row would exist if anything were there: zero.

Routes, each a set of linear relations between cells (signed sums that are zero):
- ``breakdown``: a total is the sum of the cells of each of its breakdown dimensions
  (all = female + male; a suppressed cell is the total minus the others);
- ``scope``: a region is the sum of its municipalities, the nation the sum of the regions;
- ``period``: a quarter or a year is the sum of its months, a year the sum of its quarters,
  a rolling 12 months the sum of its months, and two consecutive rolling 12 months differ by
  one month in and one month out;
- ``daily``: a daily window is the sum of its days; two consecutive windows differ by the day
  that enters and the day that leaves (rolling_30d, _90d, _365d); a window missing inside the
  published horizon is zero, and so is each of its days; a month is the sum of its days. The
  days are unknowns ("latent" cells) the attacker solves for;
- ``arrivals``: each region's arrivals per day as published (no relation links them to
  anything else the public layer shows);
- ``nowcast``: registered surveys of a coverage row are at most nowcast x official deaths
  and at least 1 when that is positive (the nowcast scales them up by 1 / F >= 1);
- ``figures``: value and Wilson interval are recomputed from the published counts; where they
  do not match, the counts they were computed from are solved for.
``direct`` is a cell's own published observation alone.

For each route (with the direct observations) and for all routes together it computes:
(a) the consistent set of each target: an interval narrowed by propagating every relation
    (interval arithmetic until nothing changes, with non-negativity and numerator <=
    denominator): sound, so the true count is always inside; a singleton is a count
    determined with certainty;
(b) a best guess: the likelihood of the cell's own observations (under the table) times, for
    each relation through the cell, a normal approximation of the other cells' signed sum
    (their means and variances given their own observations, within their consistent sets):
    the averaging of several routes to one count a real attacker would do. The guess is the
    mode among 1..4 (the question is "if this is a small count, which one?"; the no-data
    baseline answers it with the most common small count), flat prior, ties to the smaller.

What it does not try: it treats different relations to one cell as independent evidence
(they can share cells and noise); iterating that (loopy belief propagation, ``rounds`` > 1)
and a decreasing prior over 1..4 were tried against the Cell Key Method and did not guess
better (more rounds: worse; the true distribution of small counts as prior: +0.01). It does
not exploit that cells counting the same records get the same noise (equal published values
of two cells hint that their records are the same); no joint (non-interval) reasoning over
several unknowns beyond the propagation; no use of ``computed_at`` (which rows changed
together) or of a row's mere existence beyond "missing means zero"; nothing outside the
``published`` schema, no links of arrivals (by submission day) to deaths (by date of death),
no snapshots over time, no prior knowledge of any individual.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from processors.catalogue import ROLLING_DAYS, TOTAL, Catalogue, Indicator, default_catalogue
from processors.core import add_months, month_first_day, month_index, month_last_day

DIRECT = "direct"
BREAKDOWN = "breakdown"
SCOPE = "scope"
PERIOD = "period"
DAILY = "daily"
ARRIVALS = "arrivals"
NOWCAST = "nowcast"
FIGURES = "figures"
ROUTES = (DIRECT, BREAKDOWN, SCOPE, PERIOD, DAILY, ARRIVALS, NOWCAST, FIGURES)
POOLED = "pooled"
RELATION_ROUTES = frozenset({BREAKDOWN, SCOPE, PERIOD, DAILY})

ARRIVALS_COUNTER = "arrivals"
ARRIVALS_MIN_N = 5
SMALL = (1, 4)  # the counts that identify people
MIN_ADDITIVITY_CHECKS = 10
INF = 10**9
MIN_VARIANCE = 0.05  # an exact route still leaves a little room (a normal of sd 0.22)
# Rounds of Gaussian belief propagation for the best guesses. One round combines each cell's
# own observations with one message per relation from the other cells' own observations;
# more rounds (loopy propagation) were tried and guessed worse (0.34-0.42 against 0.43-0.47
# under the Cell Key Method): the routes share cells and noise, so it grows overconfident.
BP_ROUNDS = 1
MAX_FIGURE_SEARCHES = 2000  # rows whose figures are solved for (the rest are only counted)


class Cell(NamedTuple):
    counter: str
    scope_type: str
    scope_code: str
    breakdown: str
    start: date
    end: date


# ---- reading the public layer -----------------------------------------------------------


@dataclass
class PublicLayer:
    """What the public role could read, as rows of dicts keyed by column name."""

    rows: list[dict[str, Any]]  # indicator_series, then indicator_latest
    arrivals: list[dict[str, Any]]
    arrival_columns: frozenset[str]
    municipalities: dict[str, str]  # municipality code -> region code


def read_public(conn: Any) -> PublicLayer:
    """Read the public layer over ``conn`` (a psycopg connection as ``palliwatch_reader``).
    Every query names a ``published`` view; nothing else is read."""
    conn.execute("SET TIME ZONE 'UTC'")  # day buckets as UTC days, like the registry's dates

    def rows(sql: str) -> tuple[list[dict[str, Any]], frozenset[str]]:
        cur = conn.execute(sql)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()], frozenset(names)

    series, _ = rows("SELECT * FROM published.indicator_series")
    latest, _ = rows("SELECT * FROM published.indicator_latest")
    arrivals, arrival_columns = rows("SELECT * FROM published.survey_arrivals_daily")
    munis, _ = rows("SELECT municipality_code, region_code FROM published.municipalities")
    return PublicLayer(
        rows=series + latest,
        arrivals=arrivals,
        arrival_columns=arrival_columns,
        municipalities={m["municipality_code"]: m["region_code"] for m in munis},
    )


# ---- the noise model --------------------------------------------------------------------


class Noise:
    """P(published = c + e | true count c): exact publication, or the perturbation table."""

    def __init__(self, name: str, dist: Callable[[int], Mapping[int, float]], shift: int):
        self.name = name
        self._dist = cache(dist)
        self.shift = shift

    def dist(self, c: int) -> Mapping[int, float]:
        return self._dist(c)

    @staticmethod
    def exact() -> Noise:
        return Noise("exact", lambda c: {0: 1.0}, 0)

    @staticmethod
    def ckm() -> Noise:
        from processors.disclosure import MAX_PERTURBATION, perturbation_distribution

        return Noise("ckm", lambda c: dict(perturbation_distribution(c)), MAX_PERTURBATION)


# Observations are hashable tuples (so the same one read twice counts once):
#   ("pub", p, rule, min_n, cap)   a published count (cap: its denominator, or -1)
#   ("supp", rule, min_n)          a suppressed count
#   ("range", lo, hi)              lo <= c <= hi
#   ("exact", v)                   c = v (a missing row: 0)
# Rules: "den" (a share's denominator: suppressed when true or published < min_n), "num",
# "count" (never suppressed for its own sake), "received" (suppressed when true or published
# count is between 1 and min_n - 1), "arrivals" (a row exists only for a day with arrivals;
# suppressed when the true or the published count is under min_n).
Obs = tuple[Any, ...]


def _true_suppressed(rule: str, c: int, min_n: int) -> bool:
    if rule in ("den", "arrivals"):
        return c < min_n
    if rule == "received":
        return 0 < c < min_n
    return False


def _pub_suppressed(rule: str, p: int, min_n: int) -> bool:
    if rule in ("den", "arrivals"):
        return p < min_n
    if rule == "received":
        return 0 < p < min_n
    return False


def likelihood(obs: Obs, c: int, noise: Noise) -> float:
    kind = obs[0]
    if kind == "exact":
        return 1.0 if c == obs[1] else 0.0
    if kind == "range":
        return 1.0 if obs[1] <= c <= obs[2] else 0.0
    if kind == "pub":
        _, p, rule, min_n, cap = obs
        if _true_suppressed(rule, c, min_n) or (rule == "arrivals" and c < 1):
            return 0.0
        d = noise.dist(c)
        if cap >= 0 and p == cap and noise.shift > 0:
            return sum(q for e, q in d.items() if c + e >= cap)
        return d.get(p - c, 0.0)
    assert kind == "supp", obs
    _, rule, min_n = obs
    if rule == "arrivals" and c < 1:
        return 0.0
    if _true_suppressed(rule, c, min_n):
        return 1.0
    return sum(q for e, q in noise.dist(c).items() if _pub_suppressed(rule, c + e, min_n))


def obs_interval(obs: Obs, noise: Noise) -> tuple[int, int]:
    """The smallest interval holding every true count the observation allows (hi may be INF)."""
    kind = obs[0]
    if kind == "exact":
        return obs[1], obs[1]
    if kind == "range":
        return obs[1], obs[2]
    if kind == "pub":
        p, cap = obs[1], obs[4]
        lo_scan, hi_scan = max(0, p - noise.shift), p + noise.shift
        open_top = cap >= 0 and p == cap and noise.shift > 0
    else:
        min_n = obs[2]
        lo_scan, hi_scan, open_top = 0, min_n - 1 + noise.shift, False
    ok = [c for c in range(lo_scan, hi_scan + 1) if likelihood(obs, c, noise) > 0]
    if not ok:
        return 1, 0  # impossible: the model does not fit (reported as a contradiction)
    return ok[0], INF if open_top else ok[-1]


# ---- the result -------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    lo: int
    hi: int  # INF when unbounded
    guess: int | None  # the mode among 1..4 within [lo, hi]; None when they do not meet

    @property
    def certain(self) -> bool:
        return self.lo == self.hi


@dataclass
class AttackResult:
    method: str  # the noise model assumed for indicator rows: "exact" or "ckm"
    arrivals_method: str
    # target cell -> route (or POOLED) -> what that route (with the direct observations)
    # concludes; only targets the route reached, only cells whose consistent set meets 1..4
    targets: dict[Cell, dict[str, Estimate]]
    offered: dict[str, int]  # published rows per period type, and "arrivals"
    additivity: tuple[int, int]  # (sums checked, sums that did not hold)
    figures_mismatches: int
    contradictions: int  # relations the model could not satisfy (should be 0)
    seconds: dict[str, float] = field(default_factory=dict)


# ---- building the system ----------------------------------------------------------------


class _System:
    def __init__(self) -> None:
        self.index: dict[Cell, int] = {}
        self.cells: list[Cell] = []
        self.obs: list[dict[Obs, str]] = []  # per cell: observation -> route
        self.relations: list[tuple[tuple[int, ...], tuple[int, ...], str]] = []
        self._relation_keys: set[frozenset[tuple[int, int]]] = set()
        self.le: list[tuple[int, int]] = []  # (a, b): a <= b

    def cell(self, c: Cell) -> int:
        i = self.index.get(c)
        if i is None:
            i = self.index[c] = len(self.cells)
            self.cells.append(c)
            self.obs.append({})
        return i

    def observe(self, c: Cell, obs: Obs, route: str) -> None:
        i = self.cell(c)
        self.obs[i].setdefault(obs, route)

    def relate(self, terms: Iterable[tuple[int, Cell]], route: str) -> None:
        """sum(coef * cell) = 0; cells with the same key cancel."""
        acc: dict[int, int] = defaultdict(int)
        for coef, c in terms:
            acc[self.cell(c)] += coef
        items = [(i, a) for i, a in acc.items() if a != 0]
        if len(items) < 2 or any(abs(a) != 1 for _, a in items):
            return
        key = frozenset(items)
        neg = frozenset((i, -a) for i, a in items)
        if key in self._relation_keys or neg in self._relation_keys:
            return
        self._relation_keys.add(key)
        self.relations.append((tuple(a for _, a in items), tuple(i for i, _ in items), route))

    def less_or_equal(self, a: Cell, b: Cell) -> None:
        ia, ib = self.index.get(a), self.index.get(b)
        if ia is not None and ib is not None:
            self.le.append((ia, ib))


def _den_counter(ind: Indicator) -> str:
    return ind.den_counter if ind.denominator is not None else f"pop.{ind.population}"


def _to_date(v: Any) -> date:
    if isinstance(v, datetime):
        return (v.astimezone(UTC) if v.tzinfo else v).date()
    assert isinstance(v, date), v
    return v


def _num(v: Any) -> int | None:
    if v is None:
        return None
    f = float(v)
    r = round(f)
    return r if abs(f - r) < 1e-6 else None


def _month(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _wilson_matches(num: int, den: int, lo: Any, hi: Any) -> bool:
    from processors.core import wilson_interval

    ci = wilson_interval(num, den)
    if ci is None or lo is None or hi is None:
        return (ci is None) == (lo is None and hi is None)
    return abs(ci[0] - float(lo)) < 1e-9 and abs(ci[1] - float(hi)) < 1e-9


class _Builder:
    """Turns the public layer into cells, observations and relations."""

    def __init__(self, layer: PublicLayer, cat: Catalogue) -> None:
        self.layer = layer
        self.cat = cat
        self.sys = _System()
        # indicator -> (scope_type, code, breakdown) -> period type -> {(start, end)}
        self.present: dict[str, dict[tuple[str, str, str], dict[str, set[tuple[date, date]]]]]
        self.present = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
        self.need: dict[tuple[str, str, date, date], float] = {}
        self.figures_mismatches = 0
        self.offered: dict[str, int] = defaultdict(int)
        self.regions: dict[str, list[str]] = defaultdict(list)
        for m, r in sorted(layer.municipalities.items()):
            self.regions[r].append(m)

    def counters(self, ind: Indicator) -> list[str]:
        if ind.kind == "share":
            return [_den_counter(ind), ind.num_counter]
        if ind.kind in ("coverage", "received", "unmet", "unmet_share"):
            return [f"pop.{ind.population}"]
        return []

    # -- observations ------------------------------------------------------------------

    def read_rows(self) -> None:
        for r in self.layer.rows:
            ind = self.cat.indicators.get(r["indicator_id"])
            if ind is not None and ind.kind == "need" and r.get("value") is not None:
                key = (r["scope_type"], r["scope_code"], _to_date(r["period_start"]),
                       _to_date(r["period_end"]))  # fmt: skip
                self.need[key] = float(r["value"])
        seen: set[tuple[Any, ...]] = set()
        for r in self.layer.rows:
            ident = (r["indicator_id"], r["scope_type"], r["scope_code"], r["breakdown"],
                     r["period_type"], r["period_end"])  # fmt: skip
            if ident not in seen:
                seen.add(ident)
                self.offered[r["period_type"]] += 1
            ind = self.cat.indicators.get(r["indicator_id"])
            if ind is None or not self.counters(ind):
                continue
            self.read_row(ind, r)

    def read_row(self, ind: Indicator, r: dict[str, Any]) -> None:
        st, code, bd = r["scope_type"], r["scope_code"], r["breakdown"]
        start, end = _to_date(r["period_start"]), _to_date(r["period_end"])
        self.present[ind.id][(st, code, bd)][r["period_type"]].add((start, end))
        suppressed = bool(r.get("suppressed"))
        min_n = ind.min_n
        counter = self.counters(ind)[0]
        cell = Cell(counter, st, code, bd, start, end)
        self.sys.cell(cell)
        if ind.kind == "share":
            num_cell = Cell(ind.num_counter, st, code, bd, start, end)
            self.sys.cell(num_cell)
            if suppressed:
                self.sys.observe(cell, ("supp", "den", min_n), DIRECT)
                return
            den = _num(r.get("n") if r.get("n") is not None else r.get("denominator"))
            num = _num(r.get("numerator"))
            if den is None:
                return
            self.sys.observe(cell, ("pub", den, "den", min_n, -1), DIRECT)
            if num is not None:
                self.sys.observe(num_cell, ("pub", num, "num", min_n, den), DIRECT)
                self.check_share_figures(cell, num_cell, num, den, r)
        elif ind.kind == "coverage":
            registered = _num(r.get("numerator"))
            if suppressed or registered is None:
                return
            self.sys.observe(cell, ("pub", registered, "count", min_n, -1), DIRECT)
            official = _num(r.get("denominator"))
            if official is not None:
                self.check_coverage_figures(cell, registered, official, r)
            nowcast = r.get("nowcast")
            if nowcast is not None and official:
                v = float(nowcast) * official
                lo = 1 if v > 1e-9 else 0
                self.sys.observe(cell, ("range", lo, math.floor(v + 1e-6)), NOWCAST)
        elif ind.kind == "received":
            if suppressed:
                self.sys.observe(cell, ("supp", "received", min_n), DIRECT)
                return
            p = _num(r.get("numerator") if r.get("numerator") is not None else r.get("value"))
            if p is not None:
                self.sys.observe(cell, ("pub", p, "received", min_n, -1), DIRECT)
        elif ind.kind == "unmet":
            # (Its suppression is left to spec_received's row, whose rule is documented.)
            need = self.need.get((st, code, start, end))
            if not suppressed and need is not None and r.get("value") is not None:
                p = _num(need - float(r["value"]))
                if p is not None:
                    self.sys.observe(cell, ("pub", p, "received", min_n, -1), DIRECT)
        elif (
            ind.kind == "unmet_share"
            and not suppressed
            and r.get("numerator") is not None
            and r.get("denominator") is not None
        ):
            p = _num(float(r["denominator"]) - float(r["numerator"]))
            if p is not None:
                self.sys.observe(cell, ("pub", p, "received", min_n, -1), DIRECT)

    def check_share_figures(
        self, den_cell: Cell, num_cell: Cell, num: int, den: int, r: dict[str, Any]
    ) -> None:
        """Value and interval should follow from the published counts; if they do not, they
        were computed from other counts: find those."""
        value = r.get("value")
        value_ok = value is None if den == 0 else (
            value is not None and abs(float(value) - num / den) < 1e-9)  # fmt: skip
        if value_ok and _wilson_matches(num, den, r.get("ci_low"), r.get("ci_high")):
            return
        self.figures_mismatches += 1
        if self.figures_mismatches > MAX_FIGURE_SEARCHES:
            return
        found = []
        for b in range(max(1, den - 12), den + 13):
            for a in range(0, b + 1):
                if value is not None and abs(float(value) - a / b) > 1e-9:
                    continue
                if _wilson_matches(a, b, r.get("ci_low"), r.get("ci_high")):
                    found.append((a, b))
        if found:
            a_lo, a_hi = min(a for a, _ in found), max(a for a, _ in found)
            b_lo, b_hi = min(b for _, b in found), max(b for _, b in found)
            self.sys.observe(num_cell, ("range", a_lo, a_hi), FIGURES)
            self.sys.observe(den_cell, ("range", b_lo, b_hi), FIGURES)

    def check_coverage_figures(
        self, cell: Cell, registered: int, official: int, r: dict[str, Any]
    ) -> None:
        value = r.get("value")
        if official == 0 or value is None:
            return
        ci_ok = registered > official or _wilson_matches(
            registered, official, r.get("ci_low"), r.get("ci_high"))  # fmt: skip
        if abs(float(value) - registered / official) < 1e-9 and ci_ok:
            return
        self.figures_mismatches += 1
        v = _num(float(value) * official)
        if v is not None:
            self.sys.observe(cell, ("exact", v), FIGURES)

    def read_arrivals(self) -> str:
        rows = self.layer.arrivals
        has_flag = "suppressed" in self.layer.arrival_columns
        values = [_num(a.get("revisions")) for a in rows]
        small_shown = any(v is not None and 1 <= v < ARRIVALS_MIN_N for v in values)
        method = "exact" if (not has_flag or small_shown) else "ckm"
        # Exact arrivals (before the Cell Key Method) were never suppressed.
        min_n = ARRIVALS_MIN_N if method == "ckm" else 0
        for a, v in zip(rows, values, strict=True):
            day = _to_date(a["day"])
            cell = Cell(ARRIVALS_COUNTER, "region", a["region_code"], TOTAL, day, day)
            if bool(a.get("suppressed")) or v is None:
                self.sys.observe(cell, ("supp", "arrivals", min_n), ARRIVALS)
            else:
                self.sys.observe(cell, ("pub", v, "arrivals", min_n, -1), ARRIVALS)
        self.offered["arrivals"] = len(rows)
        return method

    # -- relations ---------------------------------------------------------------------

    def has(
        self, ind: str, scope: tuple[str, str, str], pt: str, period: tuple[date, date]
    ) -> bool:
        return period in self.present[ind].get(scope, {}).get(pt, ())

    def relations(self) -> None:
        r12_ends = [e for ind in self.present.values() for s in ind.values()
                    for (_, e) in s.get("rolling_12m", ())]  # fmt: skip
        self.last_month = _month(max(r12_ends)) if r12_ends else None
        for ind_id, scopes in list(self.present.items()):
            ind = self.cat.indicators[ind_id]
            for counter in self.counters(ind):
                self.breakdown_relations(ind, counter, scopes)
                self.scope_relations(ind, counter, scopes)
                self.period_relations(ind, counter, scopes)
                self.daily_relations(ind, counter, scopes)
        # A numerator within its denominator; populations within all deaths; a conditional
        # denominator within its population (rows and latent days alike).
        above: dict[str, list[str]] = defaultdict(list)
        for ind in self.cat.of_kind(frozenset({"share"})):
            above[ind.num_counter].append(_den_counter(ind))
            if ind.denominator is not None:
                above[ind.den_counter].append(f"pop.{ind.population}")
        for name in self.cat.populations:
            if name != "all_deaths":
                above[f"pop.{name}"].append("pop.all_deaths")
        for c in list(self.sys.cells):
            for bigger in above.get(c.counter, ()):
                self.sys.less_or_equal(c, c._replace(counter=bigger))

    def breakdown_relations(self, ind: Indicator, counter: str, scopes: Any) -> None:
        for (st, code, bd), pts in scopes.items():
            if bd != TOTAL:
                continue
            for pt, periods in pts.items():
                dims = self.cat.breakdowns_for(ind, st, pt)
                for s, e in periods:
                    for dim in dims:
                        children = [
                            b for (st2, code2, b), p2 in scopes.items()
                            if st2 == st and code2 == code and b.startswith(dim + ":")
                            and (s, e) in p2.get(pt, ())
                        ]  # fmt: skip
                        terms = [(1, Cell(counter, st, code, TOTAL, s, e))]
                        terms += [(-1, Cell(counter, st, code, b, s, e)) for b in children]
                        self.sys.relate(terms, BREAKDOWN)

    def scope_relations(self, ind: Indicator, counter: str, scopes: Any) -> None:
        for (st, code, bd), pts in scopes.items():
            for pt, periods in pts.items():
                if st == "nation":
                    kids = [("region", r) for r in self.regions]
                elif st == "region" and bd == TOTAL:
                    kids = [("municipality", m) for m in self.regions.get(code, [])]
                    if "municipality" not in self.cat.scopes_for(ind, pt):
                        continue
                else:
                    continue
                for s, e in periods:
                    terms = [(1, Cell(counter, st, code, bd, s, e))]
                    for kst, kcode in kids:
                        if self.has(ind.id, (kst, kcode, bd), pt, (s, e)):
                            terms.append((-1, Cell(counter, kst, kcode, bd, s, e)))
                    self.sys.relate(terms, SCOPE)

    def period_relations(self, ind: Indicator, counter: str, scopes: Any) -> None:
        for (st, code, bd), pts in scopes.items():

            def cell(s: date, e: date, st: str = st, code: str = code, bd: str = bd) -> Cell:
                return Cell(counter, st, code, bd, s, e)

            months = {_month(s): (s, e) for s, e in pts.get("month", ())}
            quarters = sorted(pts.get("quarter", ()))

            def months_in(s: date, e: date, months: Any = months) -> list[tuple[int, Cell]]:
                return [(-1, cell(*p)) for m, p in months.items() if s <= p[0] and p[1] <= e]

            for s, e in quarters:
                self.sys.relate([(1, cell(s, e)), *months_in(s, e)], PERIOD)
            for s, e in pts.get("year", ()):
                self.sys.relate([(1, cell(s, e)), *months_in(s, e)], PERIOD)
                qs = [(-1, cell(*q)) for q in quarters if s <= q[0] and q[1] <= e]
                self.sys.relate([(1, cell(s, e)), *qs], PERIOD)
            r12 = pts.get("rolling_12m", set())
            for s, e in r12:
                self.sys.relate([(1, cell(s, e)), *months_in(s, e)], PERIOD)
            if not r12 or self.last_month is None:
                continue
            ends = sorted(_month(e) for _, e in r12)
            first = add_months(ends[0], 0)
            for i in range(month_index(self.last_month) - month_index(first) + 1):
                m = add_months(first, i)
                prev = add_months(m, -1)
                w = (month_first_day(add_months(m, -11)), month_last_day(m))
                wp = (month_first_day(add_months(prev, -11)), month_last_day(prev))
                terms: list[tuple[int, Cell]] = []
                if w in r12:
                    terms.append((1, cell(*w)))
                if wp in r12:
                    terms.append((-1, cell(*wp)))
                if not terms:
                    continue
                if m in months:
                    terms.append((-1, cell(*months[m])))
                old = add_months(m, -12)
                if old in months:
                    terms.append((1, cell(*months[old])))
                self.sys.relate(terms, PERIOD)

    def daily_relations(self, ind: Indicator, counter: str, scopes: Any) -> None:
        if ind.kind != "share":
            return
        for (st, code, bd), pts in scopes.items():
            for pt, size in ROLLING_DAYS.items():
                periods = pts.get(pt)
                if not periods or bd != TOTAL or pt not in self.horizon:
                    continue
                lo_end, hi_end = self.horizon[pt]

                def window(e: date, st: str = st, code: str = code, size: int = size) -> Cell:
                    return Cell(counter, st, code, TOTAL, e - timedelta(days=size - 1), e)

                def day(d: date, st: str = st, code: str = code) -> Cell:
                    return Cell(counter, st, code, TOTAL, d, d)

                e = lo_end
                while e <= hi_end:
                    w = window(e)
                    if (w.start, w.end) not in periods:
                        # No row inside the horizon: nothing was there, on any of its days.
                        self.sys.observe(w, ("exact", 0), DAILY)
                        for k in range(size):
                            self.sys.observe(day(e - timedelta(days=k)), ("exact", 0), DAILY)
                    if e > lo_end:
                        self.sys.relate(
                            [(1, w), (-1, window(e - timedelta(days=1))), (-1, day(e)),
                             (1, day(e - timedelta(days=size)))],
                            DAILY,
                        )  # fmt: skip
                    if size == 30:
                        days = [(-1, day(e - timedelta(days=k))) for k in range(size)]
                        self.sys.relate([(1, w), *days], DAILY)
                    e += timedelta(days=1)
            # A month inside the horizon's days is the sum of its days.
            windows = [pt for pt in ROLLING_DAYS if pts.get(pt) and pt in self.horizon]
            if bd == TOTAL and windows:
                first_day = min(self.horizon[pt][0] - timedelta(days=ROLLING_DAYS[pt] - 1)
                                for pt in windows)  # fmt: skip
                last_day = max(self.horizon[pt][1] for pt in windows)
                for s, e in pts.get("month", ()):
                    if first_day <= s and e <= last_day:
                        days = []
                        d = s
                        while d <= e:
                            days.append((-1, Cell(counter, st, code, TOTAL, d, d)))
                            d += timedelta(days=1)
                        self.sys.relate([(1, Cell(counter, st, code, TOTAL, s, e)), *days],
                                        DAILY)  # fmt: skip

    def set_horizon(self) -> None:
        """The window ends the public layer holds rows for where anything was there: from
        as_of - settled_after_days to as_of; estimated from the rows, narrowed to be safe."""
        self.horizon: dict[str, tuple[date, date]] = {}
        ends: dict[str, list[date]] = defaultdict(list)
        for r in self.layer.rows:
            if r["period_type"] in ROLLING_DAYS:
                ends[r["period_type"]].append(_to_date(r["period_end"]))
        if not ends:
            return
        top = max(max(v) for v in ends.values())
        for pt in ROLLING_DAYS:
            if ends.get(pt):
                first = max(top - timedelta(days=self.cat.settled_after_days), min(ends[pt]))
                self.horizon[pt] = (first, top)

    def additivity(self) -> tuple[int, int]:
        """Breakdown sums over cells that are all published: how many hold exactly."""
        checked = failed = 0
        for coefs, idx, route in self.sys.relations:
            if route != BREAKDOWN or not self.sys.cells[idx[0]].counter.startswith("pop."):
                continue
            values = []
            for i in idx:
                pubs = [o for o in self.sys.obs[i] if o[0] == "pub"]
                if len(pubs) != 1 or any(o[0] == "supp" for o in self.sys.obs[i]):
                    break
                values.append(pubs[0][1])
            else:
                checked += 1
                if sum(a * v for a, v in zip(coefs, values, strict=True)) != 0:
                    failed += 1
        return checked, failed


# ---- solving ----------------------------------------------------------------------------


class _Analysis:
    """Consistent intervals and best guesses from a subset of the routes."""

    def __init__(
        self,
        sys: _System,
        noise_of: Callable[[int], Noise],
        obs_routes: frozenset[str],
        relation_routes: frozenset[str],
    ) -> None:
        self.sys = sys
        self.noise_of = noise_of
        self.obs_routes = obs_routes | {DIRECT}
        self.rel_ids = [k for k, r in enumerate(sys.relations) if r[2] in relation_routes]
        self.contradictions = 0
        n = len(sys.cells)
        self.lo = [0] * n
        self.hi = [INF] * n
        intervals: dict[tuple[Obs, str], tuple[int, int]] = {}
        for i in range(n):
            for o, route in sys.obs[i].items():
                if route in self.obs_routes:
                    noise = noise_of(i)
                    key = (o, noise.name)
                    if key not in intervals:
                        intervals[key] = obs_interval(o, noise)
                    self._narrow(i, *intervals[key])

    def observations(self, i: int) -> list[Obs]:
        return [o for o, r in self.sys.obs[i].items() if r in self.obs_routes]

    def _narrow(self, i: int, a: int, b: int) -> bool:
        lo, hi = max(self.lo[i], a), min(self.hi[i], b)
        if lo > hi:
            self.contradictions += 1
            return False
        changed = lo != self.lo[i] or hi != self.hi[i]
        self.lo[i], self.hi[i] = lo, hi
        return changed

    def propagate(self, budget: int = 50_000_000) -> None:
        sys, lo, hi = self.sys, self.lo, self.hi
        by_cell: dict[int, list[int]] = defaultdict(list)
        for k in self.rel_ids:
            for i in sys.relations[k][1]:
                by_cell[i].append(k)
        le_by_cell: dict[int, list[int]] = defaultdict(list)
        for k, (a, b) in enumerate(sys.le):
            le_by_cell[a].append(k)
            le_by_cell[b].append(k)
        queue = list(self.rel_ids)
        queued = set(queue)
        le_queue = list(range(len(sys.le)))
        le_queued = set(le_queue)
        work = 0

        def touched(i: int) -> None:
            for k in by_cell.get(i, ()):
                if k not in queued:
                    queued.add(k)
                    queue.append(k)
            for k in le_by_cell.get(i, ()):
                if k not in le_queued:
                    le_queued.add(k)
                    le_queue.append(k)

        while (queue or le_queue) and work < budget:
            while le_queue:
                k = le_queue.pop()
                le_queued.discard(k)
                a, b = sys.le[k]
                if hi[a] > hi[b] and self._narrow(a, lo[a], hi[b]):
                    touched(a)
                if lo[b] < lo[a] and self._narrow(b, lo[a], hi[b]):
                    touched(b)
            if not queue:
                break
            k = queue.pop()
            queued.discard(k)
            coefs, idx, _ = sys.relations[k]
            work += len(idx)
            # Each term's range: coef * [lo, hi].
            s_lo = s_hi = 0
            inf_lo = inf_hi = 0
            for a, i in zip(coefs, idx, strict=True):
                if a > 0:
                    s_lo += lo[i]
                    if hi[i] >= INF:
                        inf_hi += 1
                    else:
                        s_hi += hi[i]
                else:
                    s_hi -= lo[i]
                    if hi[i] >= INF:
                        inf_lo += 1
                    else:
                        s_lo -= hi[i]
            for a, i in zip(coefs, idx, strict=True):
                # the others' range
                if a > 0:
                    t_lo, t_hi_inf, t_hi = lo[i], hi[i] >= INF, hi[i]
                    o_lo_inf = inf_lo > 0
                    o_lo = s_lo - t_lo
                    o_hi_inf = inf_hi - (1 if t_hi_inf else 0) > 0
                    o_hi = s_hi - (0 if t_hi_inf else t_hi)
                    # x = -(others): [-o_hi, -o_lo]
                    new_lo = 0 if o_hi_inf else -o_hi
                    new_hi = INF if o_lo_inf else -o_lo
                else:
                    t_hi_inf = hi[i] >= INF
                    o_lo_inf = inf_lo - (1 if t_hi_inf else 0) > 0
                    o_lo = s_lo + (0 if t_hi_inf else hi[i])
                    o_hi_inf = inf_hi > 0
                    o_hi = s_hi + lo[i]
                    # -x = -(others) -> x = others: [o_lo, o_hi]
                    new_lo = 0 if o_lo_inf else o_lo
                    new_hi = INF if o_hi_inf else o_hi
                if (new_lo > lo[i] or new_hi < hi[i]) and self._narrow(
                    i, max(lo[i], new_lo), min(hi[i], new_hi)
                ):
                    touched(i)
        if queue:
            self.contradictions += 1  # the budget ran out: report it rather than loop

    # -- best guesses ----------------------------------------------------------------------

    def is_target(self, i: int) -> bool:
        return self.lo[i] <= SMALL[1] and self.hi[i] >= SMALL[0] and self.hi[i] < INF

    def _log_likelihood(self, i: int) -> list[float]:
        """log P(the cell's observations | c) for c in its consistent interval (bounded)."""
        obs = self.observations(i)
        noise = self.noise_of(i)
        out = []
        for c in range(self.lo[i], self.hi[i] + 1):
            lw = 0.0
            for o in obs:
                q = likelihood(o, c, noise)
                lw += math.log(q) if q > 0 else -1e9
            out.append(lw)
        return out

    def beliefs(self, rounds: int) -> dict[int, list[float]]:
        """Log-beliefs over each bounded cell's interval: its observations' likelihood times
        one normal message per relation through it (the other cells' signed sum, from their
        beliefs without that relation's message: Gaussian belief propagation, ``rounds``
        times; one round uses the other cells' own observations only)."""
        sys, lo, hi = self.sys, self.lo, self.hi
        rels = []
        self.reached_by_relation: set[int] = set()
        for k in self.rel_ids:
            coefs, idx, _ = sys.relations[k]
            if all(hi[i] < INF for i in idx):
                self.reached_by_relation.update(idx)
                if any(lo[i] != hi[i] for i in idx):
                    rels.append((coefs, idx))
        base: dict[int, list[float]] = {}
        for _, idx in rels:
            for i in idx:
                if i not in base:
                    base[i] = self._log_likelihood(i)
        for i in range(len(sys.cells)):
            if i not in base and self.is_target(i):
                base[i] = self._log_likelihood(i)

        def add(lw: list[float], i: int, msg: tuple[float, float], sign: float) -> None:
            mean, var = msg
            two_var = 2 * max(var, MIN_VARIANCE)
            for j in range(len(lw)):
                lw[j] -= sign * (lo[i] + j - mean) ** 2 / two_var

        def moments(i: int, lw: list[float]) -> tuple[float, float]:
            if lo[i] == hi[i]:
                return float(lo[i]), 0.0
            top = max(lw)
            ws = [math.exp(x - top) for x in lw]
            total = sum(ws)
            mean = sum((lo[i] + j) * w for j, w in enumerate(ws)) / total
            var = sum((lo[i] + j - mean) ** 2 * w for j, w in enumerate(ws)) / total
            return mean, var

        msgs: list[list[tuple[float, float]] | None] = [None] * len(rels)
        total = base
        for _ in range(rounds):
            new: list[list[tuple[float, float]] | None] = []
            for r, (coefs, idx) in enumerate(rels):
                moms = []
                for pos, i in enumerate(idx):
                    lw = list(total[i])
                    old = msgs[r]
                    if old is not None:
                        add(lw, i, old[pos], -1.0)  # the cavity: without this relation
                    moms.append(moments(i, lw))
                s = sum(a * m[0] for a, m in zip(coefs, moms, strict=True))
                v = sum(m[1] for m in moms)
                new.append([(-a * (s - a * m[0]), v - m[1])
                            for a, m in zip(coefs, moms, strict=True)])  # fmt: skip
            msgs = new
            total = {i: list(lw) for i, lw in base.items()}
            for r, (_, idx) in enumerate(rels):
                out = msgs[r]
                assert out is not None
                for pos, i in enumerate(idx):
                    add(total[i], i, out[pos], 1.0)
        return total

    def small_posterior(self, i: int, lw: list[float]) -> dict[int, float]:
        """Log-weights of the values 1..4 within the consistent interval."""
        a, b = max(SMALL[0], self.lo[i]), min(SMALL[1], self.hi[i])
        return {c: lw[c - self.lo[i]] for c in range(a, b + 1)}


def _mode(post: dict[int, float]) -> int | None:
    """The most probable value (a flat prior); ties to the smaller."""
    best, best_v = -math.inf, None
    for c in sorted(post):
        x = post[c]
        if x > best + 1e-9:
            best, best_v = x, c
    return best_v


def attack(
    layer: PublicLayer,
    catalogue: Catalogue | None = None,
    rounds: int = BP_ROUNDS,
) -> AttackResult:
    """Every route against the public layer; see the module docstring."""
    import time

    t0 = time.monotonic()
    cat = catalogue or default_catalogue()
    b = _Builder(layer, cat)
    b.read_rows()
    arrivals_method = b.read_arrivals()
    b.set_horizon()
    b.relations()
    sys = b.sys
    checked, failed = b.additivity()
    if checked >= MIN_ADDITIVITY_CHECKS:
        method = "exact" if failed == 0 else "ckm"
    else:
        try:
            import processors.disclosure  # noqa: F401

            method = "ckm"
        except ImportError:
            method = "exact"
    noises = {"exact": Noise.exact()}
    if "ckm" in (method, arrivals_method):
        noises["ckm"] = Noise.ckm()
    indicator_noise, arrival_noise = noises[method], noises[arrivals_method]

    def noise_of(i: int) -> Noise:
        return arrival_noise if sys.cells[i].counter == ARRIVALS_COUNTER else indicator_noise

    seconds = {"build": time.monotonic() - t0}
    targets: dict[Cell, dict[str, Estimate]] = defaultdict(dict)
    contradictions = 0
    plans: list[tuple[str, frozenset[str], frozenset[str]]] = [
        (POOLED, frozenset(ROUTES), RELATION_ROUTES)
    ]
    for route in ROUTES:
        # A route with the direct observations and its own (the daily route's zeros).
        plans.append((route, frozenset({route}), frozenset({route}) & RELATION_ROUTES))
    for name, obs_routes, rel_routes in plans:
        t = time.monotonic()
        an = _Analysis(sys, noise_of, obs_routes, rel_routes)
        an.propagate()
        contradictions += an.contradictions if name == POOLED else 0
        beliefs = an.beliefs(rounds)
        found: list[tuple[int, int, int, dict[int, float]]] = []
        by_relation = an.reached_by_relation
        for i in range(len(sys.cells)):
            if not an.is_target(i):
                continue
            own = [r for r, route in sys.obs[i].items() if route in an.obs_routes]
            if name == POOLED:
                reached = bool(own) or i in by_relation or an.lo[i] == an.hi[i]
            elif name in RELATION_ROUTES:
                reached = i in by_relation or (an.lo[i] == an.hi[i] and not own)
            else:
                reached = any(route == name for route in sys.obs[i].values())
            if reached:
                lw = beliefs.get(i) or an._log_likelihood(i)
                found.append((i, an.lo[i], an.hi[i], an.small_posterior(i, lw)))
        for i, lo, hi, post in found:
            targets[sys.cells[i]][name] = Estimate(lo, hi, _mode(post))
        seconds[name] = time.monotonic() - t
    return AttackResult(
        method=method,
        arrivals_method=arrivals_method,
        targets=dict(targets),
        offered=dict(b.offered),
        additivity=(checked, failed),
        figures_mismatches=b.figures_mismatches,
        contradictions=contradictions,
        seconds=seconds,
    )
