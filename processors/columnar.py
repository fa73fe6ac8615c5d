"""The engine's share rows computed column-wise with numpy: a scope's month states as one dense
array, every period's sums as differences of prefix sums over months (or days), and the Wilson
interval and the Cell Key Method's perturbation on whole columns.

The per-row functions (processors/core.wilson_interval, processors/disclosure.public_share) stay
the definition: the oracle calls them, and tests/test_columnar.py holds these equal to them bit
for bit. numpy's float64 ``+ - * / sqrt`` round as Python's do, and every expression keeps the
order of operations of its scalar twin, so the floats are identical, not merely close. Counts
are below 2**53, so converting them to float64 is exact.

Evaluating one row with the per-row functions took 9.6 µs (a full cube of 880 000 rows in 8.5 s);
see the README's Benchmarks for what this module takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import repeat
from typing import Any

import numpy as np

from processors.core import Z_95, IndicatorValue, month_index
from processors.disclosure import KEY_MASK, MAX_PERTURBATION, PTABLE

Z2 = Z_95 * Z_95
Ints = np.ndarray
Floats = np.ndarray

# The perturbation table as arrays: bounds and perturbations of rows 1 .. MAX_PERTURBATION
# (a count of 0 is never perturbed; larger counts use the last row).
_TABLE = [
    (np.array(row.bounds, dtype=np.int64), np.array(row.perturbations, dtype=np.int64))
    for row in PTABLE
]


def wilson(successes: np.ndarray, n: np.ndarray) -> tuple[Floats, Floats, np.ndarray]:
    """processors/core.wilson_interval on columns: (low, high, applies); where ``applies`` is
    False the scalar function returns None and low/high are meaningless."""
    s = np.asarray(successes, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    applies = (nn > 0) & (s >= 0) & (s <= nn)
    nn = np.where(applies, nn, 1.0)
    s = np.where(applies, s, 0.0)
    p = s / nn
    denom = 1 + Z2 / nn
    centre = (p + Z2 / (2 * nn)) / denom
    half = Z_95 * np.sqrt(p * (1 - p) / nn + Z2 / (4 * nn * nn)) / denom
    low = np.where(s == 0, 0.0, np.maximum(0.0, np.minimum(p, centre - half)))
    high = np.where(s == nn, 1.0, np.minimum(1.0, np.maximum(p, centre + half)))
    return low, high, applies


def perturb(count: Ints, key_sum: Ints) -> Ints:
    """processors/disclosure.perturb on columns."""
    out = count.copy()
    keys = key_sum & KEY_MASK
    for c in range(1, MAX_PERTURBATION + 1):
        sel = count == c if c < MAX_PERTURBATION else count >= c
        if sel.any():
            bounds, perturbations = _TABLE[c]
            out[sel] = count[sel] + perturbations[np.searchsorted(bounds, keys[sel], "right")]
    return out


class ShareRows:
    """Share rows gathered a block at a time, then computed in one pass (numpy's cost is per
    call: a block of a few dozen rows costs as much as one of thousands). A block is one
    indicator's rows in one period type: row k counts num[k] of den[k] (and their key sums) in
    breakdown labels[k] of the period [starts[k], ends[k]]."""

    def __init__(self, scope: tuple[str, str]) -> None:
        self.scope = scope
        self.ids: list[str] = []
        self.period_types: list[str] = []
        self.labels: list[str] = []
        self.starts: list[date] = []
        self.ends: list[date] = []
        self.complete: list[bool] = []
        self._min_n: list[Ints] = []
        self._public: list[Ints] = []
        self._counts: list[Ints] = []  # (rows, 4): num, den, num key, den key

    def add(
        self,
        indicator_id: str,
        min_n: int,
        period_type: str,
        labels: Sequence[str],
        starts: Sequence[date],
        ends: Sequence[date],
        complete: Sequence[bool],
        counts: Ints,
        public: bool,
    ) -> None:
        """A block; ``counts``: (rows, 4) num, den, num key sum, den key sum; ``public``: False
        for rows the public layer does not hold (their public figures stay suppressed)."""
        n = len(labels)
        if n == 0:
            return
        self.ids += [indicator_id] * n
        self.period_types += [period_type] * n
        self.labels += labels
        self.starts += starts
        self.ends += ends
        self.complete += complete
        self._min_n.append(np.full(n, min_n, dtype=np.int64))
        self._public.append(np.full(n, public, dtype=bool))
        self._counts.append(counts)

    def rows(self) -> list[IndicatorValue]:
        """The rows processors/engine built one by one with core.wilson_interval, with
        disclosure.public_share's figures on public rows. Every column is made in numpy (None
        where the scalar code has None) and the rows by one ``map``: building them in a Python
        loop cost more than all the arithmetic."""
        if not self._counts:
            return []
        counts = np.concatenate(self._counts)
        n = len(counts)
        num, den = counts[:, 0], counts[:, 1]
        min_n = np.concatenate(self._min_n)
        hidden = den < min_n
        low, high, applies = wilson(num, den)
        value = num / np.where(den == 0, 1, den)
        dens = _masked(den, hidden)
        public = _public_columns(np.concatenate(self._public), counts, min_n)
        stype, code = self.scope
        return list(
            map(
                IndicatorValue,
                self.ids,
                repeat(stype, n),
                repeat(code, n),
                self.period_types,
                self.starts,
                self.ends,
                _masked(value, hidden),
                _masked(num, hidden),
                dens,
                dens,
                hidden.tolist(),
                _masked(low, hidden | ~applies),
                _masked(high, hidden | ~applies),
                self.labels,
                self.complete,
                repeat(None, n),
                *public,
            )  # fmt: skip
        )


def _masked(column: np.ndarray, none: np.ndarray) -> list[Any]:
    """The column as Python numbers, None where ``none``."""
    out = column.astype(object)
    out[none] = None
    return out.tolist()


def _public_columns(public: np.ndarray, counts: Ints, min_n: Ints) -> list[list[Any]]:
    """processors/disclosure.public_share on columns: pub_value, pub_numerator,
    pub_denominator, pub_n, pub_ci_low, pub_ci_high, pub_suppressed of every row (suppressed
    where the row is not public)."""
    num, den, num_key, den_key = (counts[:, j] for j in range(4))
    p_den = perturb(den, den_key)
    hidden = ~public | (den < min_n) | (p_den < min_n)
    p_num = np.minimum(perturb(num, num_key), p_den)
    low, high, applies = wilson(p_num, p_den)
    value = p_num / np.where(p_den == 0, 1, p_den)
    no_ci = hidden | ~applies
    return [
        _masked(value, hidden), _masked(p_num.astype(np.float64), hidden),
        _masked(p_den.astype(np.float64), hidden), _masked(p_den, hidden),
        _masked(low, no_ci), _masked(high, no_ci), hidden.tolist(),
    ]  # fmt: skip


# ---- a scope's months as one array ------------------------------------------------------------


@dataclass(frozen=True)
class MonthCube:
    """The cells of a run of consecutive months: ``sums(first, last)`` gives every label's
    counter vector (counters, then key sums) over months [first, last], and ``seen`` whether the
    label had a cell in any of them (a row exists wherever a cell does, zero counts or not)."""

    first: int  # month index of the first month
    labels: list[str]
    prefix: Ints  # (months + 1, labels, 2 * counters): prefix sums over months
    seen: Ints  # (months + 1, labels): prefix counts of months holding the label's cell
    present: Ints  # (months + 1,): prefix counts of months with a state

    @classmethod
    def build(
        cls,
        months: Mapping[str, Mapping[str, Any]],
        wanted: Iterable[str],
        width: int,
        only: str | None = None,
    ) -> MonthCube:
        """From month -> scope-month state, over the span of ``wanted`` months; ``only``: keep
        just this label (the headline's total)."""
        indices = [month_index(m) for m in wanted]
        first = min(indices, default=0)
        span = max(indices, default=-1) - first + 1
        labels: dict[str, int] = {}
        cells: list[tuple[int, int, list[int]]] = []
        present = np.zeros(span + 1, dtype=np.int64)
        for m, sm in months.items():
            t = month_index(m) - first
            if not 0 <= t < span:
                continue
            present[t + 1] = 1
            for label, vec in sm["cells"].items():
                if only is not None and label != only:
                    continue
                li = labels.setdefault(label, len(labels))
                cells.append((t, li, vec))
        dense = np.zeros((span + 1, len(labels), 2 * width), dtype=np.int64)
        seen = np.zeros((span + 1, len(labels)), dtype=np.int64)
        if cells:
            ts = np.fromiter((c[0] for c in cells), dtype=np.int64, count=len(cells)) + 1
            ls = np.fromiter((c[1] for c in cells), dtype=np.int64, count=len(cells))
            dense[ts, ls] = _vectors([c[2] for c in cells], width)
            seen[ts, ls] = 1
        return cls(
            first,
            list(labels),
            np.cumsum(dense, axis=0),
            np.cumsum(seen, axis=0),
            np.cumsum(present),
        )

    def window(
        self, first_months: Sequence[str], last_months: Sequence[str]
    ) -> tuple[Ints, Ints, Ints]:
        """For periods [first_months[k], last_months[k]]: their sums (periods, labels, 2 *
        counters), whether each label was seen (periods, labels), whether any month state
        exists (periods,)."""
        span = len(self.present) - 1
        lo = np.array([month_index(m) for m in first_months], dtype=np.int64) - self.first
        hi = np.array([month_index(m) for m in last_months], dtype=np.int64) - self.first + 1
        lo, hi = np.clip(lo, 0, span), np.clip(hi, 0, span)
        sums = self.prefix[hi] - self.prefix[lo]
        seen = (self.seen[hi] - self.seen[lo]) > 0
        present = (self.present[hi] - self.present[lo]) > 0
        return sums, seen, present


def _vectors(vectors: list[list[int]], width: int) -> Ints:
    """Counter vectors as int64 rows; key sums are reduced modulo 2**32 first if a state holds
    one past int64 (only their value modulo 2**32 is ever used)."""
    try:
        return np.array(vectors, dtype=np.int64).reshape(len(vectors), 2 * width)
    except OverflowError:
        reduced = [v[:width] + [k & KEY_MASK for k in v[width:]] for v in vectors]
        return np.array(reduced, dtype=np.int64).reshape(len(vectors), 2 * width)


def day_sums(
    ordinals: Ints, prefix: Ints, starts: Sequence[date], ends: Sequence[date]
) -> tuple[Ints, Ints]:
    """Sums over days [starts[k], ends[k]] from prefix sums over sorted touched days
    (``ordinals``: their date ordinals), and which windows hold any touched day."""
    lo = np.searchsorted(ordinals, np.array([d.toordinal() for d in starts]), "left")
    hi = np.searchsorted(ordinals, np.array([d.toordinal() for d in ends]), "right")
    return prefix[hi] - prefix[lo], hi > lo
