"""The column-wise share rows (processors/columnar.py) equal the per-row definitions bit for
bit: core.wilson_interval, disclosure.perturb and disclosure.public_share, which the oracle
calls. Floats are compared exactly (``==`` on the rows' fields), not within a tolerance."""

from __future__ import annotations

from datetime import date

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from processors import columnar
from processors.core import IndicatorValue, wilson_interval
from processors.disclosure import KEY_MASK, perturb, public_share

COUNTS = st.integers(-3, 5000)
KEYS = st.integers(0, (1 << 40) - 1)  # key sums run past 2**32: only their value mod 2**32 counts


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(COUNTS, COUNTS), min_size=1, max_size=50))
@example([(0, 0), (0, 5), (5, 5), (1, 1), (3, 2), (-1, 4), (4, -1)])
def test_wilson_equals_the_scalar_interval(pairs: list[tuple[int, int]]) -> None:
    s = np.array([a for a, _ in pairs], dtype=np.int64)
    n = np.array([b for _, b in pairs], dtype=np.int64)
    low, high, applies = columnar.wilson(s, n)
    for k, (a, b) in enumerate(pairs):
        want = wilson_interval(a, b)
        assert bool(applies[k]) == (want is not None)
        if want is not None:
            assert (float(low[k]), float(high[k])) == want


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 60), KEYS), min_size=1, max_size=50))
@example([(0, 123), (1, 0), (1, KEY_MASK), (4, 1 << 33), (60, 7)])
def test_perturb_equals_the_scalar_perturbation(cells: list[tuple[int, int]]) -> None:
    count = np.array([c for c, _ in cells], dtype=np.int64)
    key = np.array([k for _, k in cells], dtype=np.int64)
    got = columnar.perturb(count, key).tolist()
    assert got == [perturb(c, k) for c, k in cells]


def _scalar_row(
    iid: str,
    min_n: int,
    label: str,
    start: date,
    end: date,
    done: bool,
    counts: tuple[int, ...],
    public: bool,
) -> IndicatorValue:
    """The row as processors/engine built it before (one by one) and as the oracle builds it."""
    num, den, nk, dk = counts
    if den < min_n:
        row = IndicatorValue(iid, "region", "01", "month", start, end, None, None, None, None,
                             True, None, None, label, done, None)  # fmt: skip
    else:
        ci = wilson_interval(num, den) if 0 <= num <= den and den > 0 else None
        row = IndicatorValue(iid, "region", "01", "month", start, end, num / den, num, den, den,
                             False, None if ci is None else ci[0], None if ci is None else ci[1],
                             label, done, None)  # fmt: skip
    return row.set_public(public_share(num, den, nk, dk, min_n)) if public else row


BLOCK = st.tuples(
    st.sampled_from([1, 5, 10]),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300), KEYS, KEYS), max_size=30),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(BLOCK, max_size=6))
def test_share_rows_equal_the_rows_built_one_by_one(
    blocks: list[tuple[int, bool, list[tuple[int, int, int, int]]]],
) -> None:
    start, end = date(2026, 1, 1), date(2026, 1, 31)
    acc = columnar.ShareRows(("region", "01"))
    want: list[IndicatorValue] = []
    for b, (min_n, public, cells) in enumerate(blocks):
        cells = [(min(a, d), d, nk, dk) for a, d, nk, dk in cells]  # a share: num <= den
        labels = [f"sex:{k}" for k in range(len(cells))]
        counts = np.array(cells, dtype=np.int64).reshape(len(cells), 4)
        acc.add(f"ind{b}", min_n, "month", labels, [start] * len(cells), [end] * len(cells),
                [b % 2 == 0] * len(cells), counts, public)  # fmt: skip
        want += [
            _scalar_row(f"ind{b}", min_n, label, start, end, b % 2 == 0, c, public)
            for label, c in zip(labels, cells, strict=True)
        ]
    got = acc.rows()
    assert got == want
    # The same Python types as the scalar code: ints stay ints (the sink's binary COPY).
    for g, w in zip(got, want, strict=True):
        assert [type(x) for x in (g.numerator, g.n, g.pub_n, g.pub_numerator)] == [
            type(x) for x in (w.numerator, w.n, w.pub_n, w.pub_numerator)
        ]
