"""The pure indicator core: no Kafka, no database, no clock.

A survey maps to a *contribution*: the counters it adds to one (region, month of death) bucket.
A correction is the old contribution subtracted and the new one added; a withdrawal subtracts the
old one. A rolling indicator is a sum of monthly buckets. Everything here is deterministic and is
what the batch oracle and the streaming worker both call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date

from processors.catalogue import MIN_CELL_N, SPECIALISED_NEED_SHARE
from schemas.enums import SPECIALISED_CARE_SETTINGS
from schemas.models import DeathSurvey

ROLLING_MONTHS = 12
PERIOD_ROLLING_12M = "rolling_12m"


@dataclass(frozen=True)
class Counts:
    """Survey counters of one bucket. Values may be negative in a delta."""

    registered: int = 0
    own_home: int = 0
    spec_received: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __neg__(self) -> Counts:
        return Counts(*(-getattr(self, f.name) for f in fields(self)))

    def is_zero(self) -> bool:
        return all(getattr(self, f.name) == 0 for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, int]) -> Counts:
        return cls(**{f.name: int(d.get(f.name, 0)) for f in fields(cls)})


@dataclass(frozen=True)
class Contribution:
    region_code: str
    month: str  # YYYY-MM of date of death
    counts: Counts

    def as_dict(self) -> dict[str, object]:
        return {"region_code": self.region_code, "month": self.month, **self.counts.as_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Contribution:
        return cls(str(d["region_code"]), str(d["month"]), Counts.from_dict(d))  # type: ignore[arg-type]


def received_specialised_care(s: DeathSurvey) -> bool:
    """Reported by a specialised palliative unit, or died elsewhere with consult support."""
    return s.care_setting in SPECIALISED_CARE_SETTINGS or s.palliative_consult


def survey_contribution(s: DeathSurvey) -> Contribution | None:
    """What one survey revision adds; a withdrawn survey adds nothing."""
    if s.status == "withdrawn":
        return None
    return Contribution(
        s.region_code,
        s.death_month,
        Counts(
            registered=1,
            own_home=int(s.place_of_death == "own_home"),
            spec_received=int(received_specialised_care(s)),
        ),
    )


def revision_deltas(old: Contribution | None, new: Contribution | None) -> list[Contribution]:
    """Signed bucket deltas that turn ``old``'s contribution into ``new``'s.

    One delta when both land in the same bucket (and none if they are equal); two when a
    correction moves the survey to another region or month.
    """
    if (
        old is not None
        and new is not None
        and (old.region_code, old.month)
        == (
            new.region_code,
            new.month,
        )
    ):
        diff = new.counts + -old.counts
        return [] if diff.is_zero() else [Contribution(new.region_code, new.month, diff)]
    out: list[Contribution] = []
    if old is not None:
        out.append(Contribution(old.region_code, old.month, -old.counts))
    if new is not None:
        out.append(new)
    return out


# ---- months -------------------------------------------------------------------------------


def month_index(month: str) -> int:
    y, m = month.split("-")
    return int(y) * 12 + int(m) - 1


def month_from_index(i: int) -> str:
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def add_months(month: str, n: int) -> str:
    return month_from_index(month_index(month) + n)


def month_first_day(month: str) -> date:
    return date(int(month[:4]), int(month[5:7]), 1)


def month_last_day(month: str) -> date:
    nxt = month_first_day(add_months(month, 1))
    return date.fromordinal(nxt.toordinal() - 1)


def window_months(end_month: str, length: int = ROLLING_MONTHS) -> list[str]:
    """The months of the rolling window that ends with (and includes) ``end_month``."""
    return [add_months(end_month, -k) for k in range(length - 1, -1, -1)]


def affected_window_ends(month: str, last_month: str, length: int = ROLLING_MONTHS) -> list[str]:
    """Rolling windows that include ``month``, ending no later than ``last_month``."""
    ends = [add_months(month, k) for k in range(length)]
    return [e for e in ends if month_index(e) <= month_index(last_month)]


# ---- indicator values ----------------------------------------------------------------------


@dataclass(frozen=True)
class MonthTotals:
    """Everything known about one region and month: survey counters and official deaths."""

    counts: Counts = Counts()
    official_deaths: int | None = None


Z_95 = 1.959963984540054


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion; None where it does not apply."""
    if n <= 0 or successes < 0 or successes > n:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class IndicatorValue:
    indicator_id: str
    scope_type: str
    scope_code: str
    period_type: str
    period_start: date
    period_end: date
    value: float | None
    numerator: float | None
    denominator: float | None
    n: int | None
    suppressed: bool
    ci_low: float | None = None
    ci_high: float | None = None
    breakdown: str = "all"
    period_complete: bool = False
    nowcast: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str, date]:
        """The row's identity, as the database's primary key has it."""
        return (
            self.indicator_id, self.scope_type, self.scope_code, self.breakdown,
            self.period_type, self.period_end,
        )  # fmt: skip


def _proportion(
    ind: str,
    scope: tuple[str, str],
    period: tuple[str, date, date],
    numerator: float,
    denominator: float,
    n: int,
    force_suppress: bool = False,
) -> IndicatorValue:
    suppressed = force_suppress or n < MIN_CELL_N
    value = None if suppressed or denominator == 0 else numerator / denominator
    interval = None if suppressed else wilson_interval(numerator, denominator)
    return IndicatorValue(
        ind,
        scope[0],
        scope[1],
        period[0],
        period[1],
        period[2],
        value=value,
        numerator=None if suppressed else numerator,
        denominator=None if suppressed else denominator,
        n=None if suppressed else n,
        suppressed=suppressed,
        ci_low=None if interval is None else interval[0],
        ci_high=None if interval is None else interval[1],
    )


def _count(
    ind: str, scope: tuple[str, str], period: tuple[str, date, date], value: float, suppress: bool
) -> IndicatorValue:
    return IndicatorValue(
        ind,
        scope[0],
        scope[1],
        period[0],
        period[1],
        period[2],
        value=None if suppress else value,
        numerator=None if suppress else value,
        denominator=None,
        n=None,
        suppressed=suppress,
    )


def rolling_region_indicators(
    region_code: str, end_month: str, totals: Mapping[str, MonthTotals]
) -> list[IndicatorValue]:
    """The rolling 12-month population indicators of one region, ending with ``end_month``.

    ``totals`` maps month -> MonthTotals; months absent from it count as empty.
    """
    months = window_months(end_month)
    counts = Counts()
    official = 0
    for m in months:
        t = totals.get(m)
        if t is None:
            continue
        counts = counts + t.counts
        official += t.official_deaths or 0
    scope = ("region", region_code)
    period = (PERIOD_ROLLING_12M, month_first_day(months[0]), month_last_day(end_month))

    need = SPECIALISED_NEED_SHARE * official
    received = counts.spec_received
    unmet = need - received
    # A received count of 1-4 identifies people, and need - unmet would reveal it: suppress all
    # three together (complementary suppression).
    small_received = 0 < received < MIN_CELL_N
    return [
        _proportion("registry_coverage", scope, period, counts.registered, official, official),
        _count("spec_need", scope, period, need, suppress=False),
        _count("spec_received", scope, period, received, suppress=small_received),
        _count("spec_unmet", scope, period, unmet, suppress=small_received),
        _proportion(
            "spec_unmet_share", scope, period, unmet, need, official, force_suppress=small_received
        ),
        _proportion(
            "home_death_share", scope, period, counts.own_home, counts.registered, counts.registered
        ),
    ]


def batch_recompute(
    surveys: Iterable[DeathSurvey],
    official: Mapping[tuple[str, str], int],
    last_month: str,
) -> dict[tuple[str, str, str], IndicatorValue]:
    """The oracle: indicators straight from the event history, no streaming involved.

    ``surveys`` in arrival order (later revisions supersede earlier, lower or equal revisions
    are stale); ``official`` maps (region, month) to the latest official death count.
    Returns {(indicator_id, region, period_end YYYY-MM): value} for every window that holds data.
    """
    latest: dict[str, DeathSurvey] = {}
    touched: set[tuple[str, str]] = set()  # buckets any applied revision contributed to
    for s in surveys:
        prev = latest.get(s.survey_id)
        if prev is not None and s.revision <= prev.revision:
            continue  # stale: not re-applied
        latest[s.survey_id] = s
        c = survey_contribution(s)
        if c is not None:
            touched.add((c.region_code, c.month))
    buckets: dict[tuple[str, str], Counts] = {key: Counts() for key in touched}
    for s in latest.values():
        c = survey_contribution(s)
        if c is not None:
            key = (c.region_code, c.month)
            buckets[key] = buckets[key] + c.counts
    per_region: dict[str, dict[str, MonthTotals]] = {}
    for r, m in set(buckets) | set(official):
        per_region.setdefault(r, {})[m] = MonthTotals(
            buckets.get((r, m), Counts()), official.get((r, m))
        )
    out: dict[tuple[str, str, str], IndicatorValue] = {}
    for r, months in per_region.items():
        ends = {e for m in months for e in affected_window_ends(m, last_month)}
        for e in ends:
            for v in rolling_region_indicators(r, e, months):
                out[(v.indicator_id, r, e)] = v
    return out
