"""The aggregation across a rebalance, in memory: two workers' ``Aggregator`` over one dict,
which stands for the table a worker restores from the changelog when a scope comes (back) to it.

A worker keeps decoded scope state between batches while it works through a backlog. A scope
that was another worker's for a while and then came back (the other worker died) must be read
from the table again: a copy from before would overwrite what the other worker wrote.
"""

from __future__ import annotations

from datetime import date

import orjson

from processors.aggregate import Aggregator
from processors.catalogue import default_catalogue
from processors.engine import NATION

MONTH = "2026-01"
AS_OF = date(2026, 3, 1)


def _official(table: dict[bytes, bytes]) -> dict[str, int]:
    state = orjson.loads(table[f"{NATION}|{MONTH}".encode()])
    return dict(state["official"])


def test_a_scope_that_comes_back_is_read_from_the_table_again() -> None:
    table: dict[bytes, bytes] = {}
    cat = default_catalogue()
    a, b = Aggregator(table, cat), Aggregator(table, cat)
    a.apply_official(NATION, "01", MONTH, 100)
    a.commit()  # a keeps the decoded month in memory (no evaluation yet: a backlog)
    # The nation moves to b, which applies deaths of another region, then dies; it comes back.
    b.apply_official(NATION, "25", MONTH, 40)
    b.commit()
    a.forget([NATION])
    a.apply_official(NATION, "03", MONTH, 70)
    a.commit()
    assert _official(table) == {"01": 100, "25": 40, "03": 70}


def test_without_forget_the_copy_from_before_overwrites_the_other_workers_state() -> None:
    """What ``forget`` prevents (so the test above can fail)."""
    table: dict[bytes, bytes] = {}
    cat = default_catalogue()
    a, b = Aggregator(table, cat), Aggregator(table, cat)
    a.apply_official(NATION, "01", MONTH, 100)
    a.commit()
    b.apply_official(NATION, "25", MONTH, 40)
    b.commit()
    a.apply_official(NATION, "03", MONTH, 70)
    a.commit()
    assert "25" not in _official(table)


def test_forget_takes_up_marks_left_in_the_table_and_drops_scopes_no_longer_owned() -> None:
    table: dict[bytes, bytes] = {}
    cat = default_catalogue()
    a, b = Aggregator(table, cat), Aggregator(table, cat)
    a.apply_official("01", "01", MONTH, 100)
    a.commit()
    assert a.scopes_with_work() == ["01"]
    # b applies region 25's deaths and dies before writing their rows: the marks are in the
    # table only.
    b.apply_official("25", "25", MONTH, 40)
    b.commit()
    # After the rebalance a owns 25 and no longer 01.
    a.forget(["25", NATION])
    assert a.scopes_with_work() == ["25"]
    rows = [row for chunk in a.evaluate_scope_chunks("25", AS_OF) for row in chunk]
    assert rows
    a.commit()
    a.forget(["25", NATION])
    assert a.scopes_with_work() == []
