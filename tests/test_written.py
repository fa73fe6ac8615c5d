"""Only rows whose values changed are written again (processors/written.py): checked against a
plain dict of what was last written, through merges, lost writes and rebalances."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import written as written_module
from processors.core import IndicatorValue
from processors.written import Written, digests


def row(scope: str = "01", value: float | None = 0.5, end: int = 1, **kw: object) -> IndicatorValue:
    v = IndicatorValue(
        "pain_assessed", "region", scope, "month", date(2025, end, 1), date(2025, end, 28),
        value, 5.0, 10.0, 10, False,
    )  # fmt: skip
    return replace(v, **kw) if kw else v


def test_a_row_is_written_once_until_its_values_change() -> None:
    w = Written()
    rows = [row("01"), row("03"), row("01", end=2)]
    fresh, marks = w.changed(rows)
    assert fresh == rows
    w.mark(marks)
    assert w.changed(rows) == ([], [])
    moved = row("03", value=0.6)
    assert w.changed([row("01"), moved])[0] == [moved]


@pytest.mark.parametrize(
    "field,value",
    [
        ("value", 0.25), ("numerator", 4.0), ("denominator", 11.0), ("n", 11),
        ("suppressed", True), ("ci_low", 0.1), ("ci_high", 0.9), ("period_complete", True),
        ("nowcast", 0.7), ("pub_value", 0.4), ("pub_numerator", 6.0), ("pub_denominator", 9.0),
        ("pub_n", 9), ("pub_ci_low", 0.2), ("pub_ci_high", 0.8), ("pub_suppressed", False),
        ("period_start", date(2025, 1, 2)),
    ],
)  # fmt: skip
def test_every_stored_figure_counts_as_a_change(field: str, value: object) -> None:
    w = Written()
    w.mark(w.changed([row()])[1])
    changed = row(**{field: value})
    assert w.changed([changed])[0] == [changed]


def test_a_write_that_failed_is_written_again() -> None:
    w = Written()
    w.changed([row()])  # never marked: the write did not become durable
    assert w.changed([row()])[0] == [row()]


def test_a_rebalance_forgets_everything() -> None:
    w = Written()
    w.mark(w.changed([row()])[1])
    w.forget()
    assert w.changed([row()])[0] == [row()]
    assert len(w) == 0


def test_a_digest_of_zero_is_never_taken_for_a_row_never_written() -> None:
    # _stored answers 0 for an unknown key: a value digest may never be 0.
    assert all(digests(row(value=x / 7))[1] != 0 for x in range(1000))


def test_a_key_digest_that_collides_still_tells_values_apart() -> None:
    # Two rows confused by their key digest are kept apart by their value digests, unless both
    # collide (about 2**-64).
    w = Written()
    a, b = row("01"), row("03", value=0.9)
    w.mark([(digests(a)[0], digests(b)[1])])  # as if b's key digest were a's
    assert w.changed([a])[0] == [a]


KEYS = st.sampled_from(["01", "03", "04", "05"])
VALUES = st.sampled_from([None, 0.0, 0.25, 0.5, 1.0])
BATCH = st.lists(st.tuples(KEYS, st.integers(1, 3), VALUES), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(BATCH, st.sampled_from(["mark", "lost", "forget"])), max_size=25))
def test_changed_rows_are_those_that_differ_from_the_last_durable_write(
    batches: list[tuple[list[tuple[str, int, float | None]], str]],
) -> None:
    old = written_module.MERGE_AT
    written_module.MERGE_AT = 3  # merges after every few marks
    try:
        w = Written()
        durable: dict[tuple[object, ...], IndicatorValue] = {}  # what the database holds
        for batch, outcome in batches:
            rows = [row(scope, value=value, end=end) for scope, end, value in batch]
            fresh, marks = w.changed(rows)
            expected = [r for r in rows if durable.get(r.key) != r]
            assert fresh == expected
            if outcome == "mark":
                for r in fresh:
                    durable[r.key] = r
                w.mark(marks)
            elif outcome == "forget":
                w.forget()
                # The database keeps its rows; this worker no longer knows them.
                durable.clear()
    finally:
        written_module.MERGE_AT = old


def test_merging_keeps_the_latest_mark_of_a_key() -> None:
    old = written_module.MERGE_AT
    written_module.MERGE_AT = 2
    try:
        w = Written()
        w.mark(w.changed([row("01"), row("03")])[1])  # merged
        w.mark(w.changed([row("01", value=0.1)])[1])
        w.mark(w.changed([row("04")])[1])  # merged again: 01's newer mark must win
        assert w.changed([row("01", value=0.1), row("03"), row("04")]) == ([], [])
        assert w.changed([row("01")])[0] == [row("01")]
        assert len(w) == 3
    finally:
        written_module.MERGE_AT = old
