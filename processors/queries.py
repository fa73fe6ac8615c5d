"""Read queries over the published indicator table (used by `palliwatch indicators`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import psycopg

PERIOD_ROLLING_12M = "rolling_12m"

# Per region, the rolling window ending with the latest month that has official deaths: later
# windows lack their denominator and would overstate coverage.
CURRENT_REGION_VALUES = """
WITH latest AS (
    SELECT region_code,
           (date_trunc('month', max(month)) + interval '1 month - 1 day')::date AS period_end
    FROM official_deaths
    GROUP BY region_code
)
SELECT v.scope_code, v.indicator_id, v.period_start, v.period_end, v.value, v.numerator,
       v.denominator, v.n, v.suppressed
FROM indicator_values v
JOIN latest l ON l.region_code = v.scope_code AND l.period_end = v.period_end
WHERE v.scope_type = 'region' AND v.period_type = %s AND v.breakdown = 'all'
ORDER BY v.scope_code, v.indicator_id
"""


@dataclass(frozen=True)
class Cell:
    value: float | None
    numerator: float | None
    denominator: float | None
    n: int | None
    suppressed: bool


@dataclass(frozen=True)
class RegionRow:
    region_code: str
    period_start: date
    period_end: date
    cells: dict[str, Cell]


def current_region_values(conn: psycopg.Connection) -> list[RegionRow]:
    rows: dict[str, RegionRow] = {}
    for code, ind, start, end, value, num, den, n, supp in conn.execute(
        CURRENT_REGION_VALUES, (PERIOD_ROLLING_12M,)
    ):
        row = rows.setdefault(code, RegionRow(code, start, end, {}))
        row.cells[ind] = Cell(value, num, den, n, supp)
    return list(rows.values())
