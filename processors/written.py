"""What this worker last wrote to each indicator row, so that only rows whose values changed
are written again.

Every evaluation recomputes every row of the periods it touches: in live traffic one survey
re-evaluates tens of thousands of open rows of its region and the nation, nearly all unchanged;
the headline pass writes rows that the full evaluation then computes again with the same values;
a backfill rewrote its cube about twice (2.1 million rows written for a cube of about a million
at 100 000 surveys). The sink's upsert leaves an identical row alone, but only after the row has
been built, copied and compared in the database.

Kept per row: a 64-bit digest of its key and one of its values (Python's ``hash``, stable within
the process), in a sorted numpy array (16 bytes a row: a million rows in 16 MB, where a dict of
ints took 135 MB) with a dict of recent marks merged into it now and then. Two rows would be
confused only if both digests collided (about 2**-64 per changed row).

The marks are in memory only, and set only once a write is durable, so a crash or a restart
costs one rewrite of what is evaluated next, never a lost row. A rebalance forgets them
(``forget``): while a scope was another worker's, that worker may have written other values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from processors.core import IndicatorValue

MASK = (1 << 64) - 1
# Recent marks are merged into the sorted arrays once this many have gathered, or a quarter as
# many as the arrays hold if that is more (up to MERGE_AT_MOST): a merge sorts every mark (about
# 10 ms a million), and merging every 65 536 marks cost a 30 000-survey backfill 2 % of the
# worker (py-spy). The cap bounds the dict of recent marks (about 100 bytes a mark) at 1 M.
MERGE_AT = 1 << 16
MERGE_AT_MOST = 1 << 18

Marks = list[tuple[int, int]]  # (key digest, value digest) of rows to mark once durable


def digests(row: IndicatorValue) -> tuple[int, int]:
    """The row's key digest and the digest of everything the database stores of it (except
    the time it was computed)."""
    values = (
        row.period_start, row.value, row.numerator, row.denominator, row.n, row.suppressed,
        row.ci_low, row.ci_high, row.period_complete, row.nowcast, row.pub_value,
        row.pub_numerator, row.pub_denominator, row.pub_n, row.pub_ci_low, row.pub_ci_high,
        row.pub_suppressed,
    )  # fmt: skip
    # Never 0: ``Written._stored`` says 0 for a row never written.
    return hash(row.key) & MASK, (hash(values) & MASK) or 1


class Written:
    """Digests of the rows last written, by key digest."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self._keys = np.empty(0, dtype=np.uint64)  # sorted
        self._values = np.empty(0, dtype=np.uint64)
        self._recent: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys) + sum(1 for k in self._recent if not self._in_main(k))

    def _in_main(self, key: int) -> bool:
        i = int(np.searchsorted(self._keys, np.uint64(key)))
        return i < len(self._keys) and int(self._keys[i]) == key

    def _stored(self, keys: np.ndarray) -> np.ndarray:
        """The value digests stored for ``keys`` in the sorted arrays; 0 where none (a value
        digest is never 0)."""
        if not len(self._keys):
            return np.zeros(len(keys), dtype=np.uint64)
        at = np.searchsorted(self._keys, keys)
        inside = at < len(self._keys)
        at[~inside] = 0
        found = inside & (self._keys[at] == keys)
        return np.where(found, self._values[at], np.uint64(0))

    def changed(self, rows: Sequence[IndicatorValue]) -> tuple[list[IndicatorValue], Marks]:
        """The rows whose values differ from what was last written (or that were never
        written), and the marks to set with ``mark`` once they are durable."""
        if not rows:
            return [], []
        pairs = [digests(row) for row in rows]
        keys = np.fromiter((k for k, _ in pairs), dtype=np.uint64, count=len(pairs))
        stored = self._stored(keys).tolist()
        recent = self._recent
        fresh: list[IndicatorValue] = []
        marks: Marks = []
        for row, (key, value), old in zip(rows, pairs, stored, strict=True):
            if recent.get(key, old) != value:
                fresh.append(row)
                marks.append((key, value))
        return fresh, marks

    def mark(self, marks: Marks) -> None:
        """Rows now durable in the database with these values."""
        for key, value in marks:
            self._recent[key] = value
        if len(self._recent) >= max(MERGE_AT, min(len(self._keys) // 4, MERGE_AT_MOST)):
            self._merge()

    def _merge(self) -> None:
        keys = np.fromiter(self._recent.keys(), dtype=np.uint64, count=len(self._recent))
        values = np.fromiter(self._recent.values(), dtype=np.uint64, count=len(self._recent))
        # Recent marks first: a stable sort keeps them ahead of the older mark of the same key.
        all_keys = np.concatenate([keys, self._keys])
        all_values = np.concatenate([values, self._values])
        order = np.argsort(all_keys, kind="stable")
        all_keys, all_values = all_keys[order], all_values[order]
        first = np.ones(len(all_keys), dtype=bool)
        first[1:] = all_keys[1:] != all_keys[:-1]
        self._keys, self._values = all_keys[first], all_values[first]
        self._recent = {}
