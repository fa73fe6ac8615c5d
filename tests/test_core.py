"""Unit tests of the pure month arithmetic (processors/core.py): no Kafka, no database.

The indicator arithmetic itself is covered by tests/test_engine_properties.py (hypothesis),
tests/test_oracle.py (hand-computed) and tests/test_engine_vs_oracle.py (streaming == batch).
"""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.core import (
    add_months,
    month_first_day,
    month_from_index,
    month_index,
    month_last_day,
)
from processors.engine import calendar_periods_of_month, period_months

FAST = settings(max_examples=200, deadline=None)
months_any = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(1900, 2200), st.integers(1, 12))

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


def test_rolling_12m_months_across_a_year_boundary() -> None:
    assert period_months("rolling_12m", date(2025, 2, 28)) == (
        "2024-03", "2024-04", "2024-05", "2024-06", "2024-07", "2024-08",
        "2024-09", "2024-10", "2024-11", "2024-12", "2025-01", "2025-02",
    )  # fmt: skip
    assert period_months("quarter", date(2025, 6, 30)) == ("2025-04", "2025-05", "2025-06")
    ends = [e for p, e in calendar_periods_of_month("2024-12", "2025-02") if p == "rolling_12m"]
    assert ends == [date(2024, 12, 31), date(2025, 1, 31), date(2025, 2, 28)]


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
@given(months_any, st.integers(-30, 30))
def test_rolling_12m_ends_are_exactly_the_windows_holding_the_month(
    month: str, offset: int
) -> None:
    last = add_months(month, offset)
    got = [e for p, e in calendar_periods_of_month(month, last) if p == "rolling_12m"]
    candidates = [month_last_day(add_months(month, k)) for k in range(-40, 41)]
    expected = [
        e
        for e in candidates
        if month in period_months("rolling_12m", e) and e <= month_last_day(last)
    ]
    assert got == expected
    assert len(got) == max(0, min(12, offset + 1))
    kinds = {p for p, _ in calendar_periods_of_month(month, last)}
    assert {"month", "quarter", "year"} <= kinds


def test_stored_json_keeps_only_its_own_bytes() -> None:
    """Table state is kept for every person: orjson's own bytes carry a 4 kB buffer each."""
    import tracemalloc

    import orjson

    from processors.core import stored_json

    state = {"sid": "s-1", "rev": 2, "st": "active", "adm": [1, 2], "rs": {"s-1": {"h": []}}}
    assert orjson.loads(stored_json(state)) == state
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [stored_json(state) for _ in range(1000)]
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_value < 4 * len(stored_json(state)), per_value
