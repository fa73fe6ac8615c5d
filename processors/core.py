"""Small pure building blocks shared by the engine and the oracle: months, the Wilson
interval, the indicator row type and stored JSON. No Kafka, no database, no clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson


def stored_json(value: Any) -> bytes:
    """Compact JSON for a value that is *kept* (table state), in a bytes object of its own
    size. ``orjson.dumps`` returns bytes that keep orjson's 4 kB output buffer whatever the
    length: a million 300-byte person states held 4 GB (found with memray). Messages sent
    and dropped can use ``orjson.dumps`` directly."""
    return bytes(memoryview(orjson.dumps(value)))


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


# ---- indicator values ----------------------------------------------------------------------


Z_95 = 1.959963984540054


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion; None where it does not apply."""
    if n <= 0 or successes < 0 or successes > n:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # centre ± half does not cancel exactly in floating point: at k = 0 or k = n the bound
    # would miss the observed share by an ulp. The interval always holds k/n.
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if successes == n else min(1.0, max(p, centre + half))
    return low, high


@dataclass(slots=True)
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
    # The public layer's figures (processors/disclosure.py): perturbed counts, the share and
    # interval computed from them. Rows the public layer does not hold stay suppressed here.
    pub_value: float | None = None
    pub_numerator: float | None = None
    pub_denominator: float | None = None
    pub_n: int | None = None
    pub_ci_low: float | None = None
    pub_ci_high: float | None = None
    pub_suppressed: bool = True

    def set_public(self, figures: tuple[Any, ...]) -> IndicatorValue:
        """Set the public figures from (value, numerator, denominator, n, ci_low, ci_high,
        suppressed), as processors/disclosure.py computes them."""
        (self.pub_value, self.pub_numerator, self.pub_denominator, self.pub_n,
         self.pub_ci_low, self.pub_ci_high, self.pub_suppressed) = figures  # fmt: skip
        return self

    def public_as_exact(self) -> IndicatorValue:
        """Figures that count no persons (beds, staff, need from official deaths) are public
        as they are."""
        return self.set_public((self.value, self.numerator, self.denominator, self.n,
                                self.ci_low, self.ci_high, self.suppressed))  # fmt: skip

    @property
    def key(self) -> tuple[str, str, str, str, str, date]:
        """The row's identity, as the database's primary key has it."""
        return (
            self.indicator_id, self.scope_type, self.scope_code, self.breakdown,
            self.period_type, self.period_end,
        )  # fmt: skip
