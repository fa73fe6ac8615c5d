"""Aggregation by scope: apply deltas to scope-month state, then evaluate what changed.

The worker keeps the state in a changelog-backed Faust table; this module only sees a mapping
of bytes keys to bytes values, so the same code runs in the unit tests over a dict. Keys:

- ``<scope>|<YYYY-MM>``: one scope's month state (processors.engine.new_scope_month);
- ``<scope>|months``: the months that scope has state for (for the daily re-evaluation);
- ``SE|structure``: unit events and population (processors.engine.new_structure).

Every key starts with its scope, and the table's changelog partition is the scope's partition of
the scope-deltas topic, so a worker restores exactly the state of the scopes it is assigned.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from datetime import date
from typing import Any

import orjson

from processors.catalogue import Catalogue
from processors.core import IndicatorValue
from processors.engine import (
    NATION,
    Contribution,
    ScopeView,
    apply_survey_delta,
    catalogue_fingerprint,
    evaluate_scope,
    evaluate_structure,
    layouts,
    learning_months,
    new_scope_month,
    new_structure,
    open_periods,
    periods_for_changes,
    periods_for_day,
    structure_add_population,
    structure_add_unit,
    structure_months,
)

STRUCTURE = "structure"


class CatalogueChanged(RuntimeError):
    pass


def scope_type_of(scope: str) -> str:
    return "nation" if scope == NATION else "region"


class Aggregator:
    """One batch of scope deltas at a time: ``apply_*``, then ``commit``, then ``evaluate``."""

    def __init__(self, table: MutableMapping[bytes, bytes], cat: Catalogue) -> None:
        self.table = table
        self.cat = cat
        self.width = len(cat.counters())
        self.layouts = layouts(cat)
        self.fingerprint = catalogue_fingerprint(cat)
        self._reset()

    def _reset(self) -> None:
        self.cache: dict[bytes, dict[str, Any]] = {}
        self.changed: set[bytes] = set()
        self.dirty_months: dict[str, set[str]] = {}
        self.dirty_days: dict[str, set[date]] = {}
        self.structure_from: str | None = None
        self.redelivered = 0

    # ---- state access --------------------------------------------------------------------

    def _load(self, key: bytes, fresh: Any) -> Any:
        if key in self.cache:
            return self.cache[key]
        raw = self.table.get(key)
        if raw is None:
            value = fresh()
            if key.endswith(b"|months"):
                pass
            elif not key.endswith(STRUCTURE.encode()):
                value["fp"] = self.fingerprint
        else:
            value = orjson.loads(raw)
            fp = value.get("fp") if isinstance(value, dict) else None
            if fp is not None and fp != self.fingerprint:
                raise CatalogueChanged(
                    f"state {key.decode()} was built with another indicator catalogue: after a "
                    "catalogue edit, start the worker with a new PALLIWATCH_APP_ID so it "
                    "rebuilds its state from the topics (see README, Operations)"
                )
        self.cache[key] = value
        return value

    def month_state(self, scope: str, month: str, create: bool = True) -> dict[str, Any] | None:
        key = f"{scope}|{month}".encode()
        if not create and key not in self.cache and self.table.get(key) is None:
            return None
        if key not in self.cache and self.table.get(key) is None:
            months = self.months_of(scope)
            if month not in months:
                months.append(month)
                months.sort()
                self.changed.add(f"{scope}|months".encode())
        return self._load(key, new_scope_month)

    def months_of(self, scope: str) -> list[str]:
        return self._load(f"{scope}|months".encode(), list)

    def structure(self) -> dict[str, Any]:
        return self._load(f"{NATION}|{STRUCTURE}".encode(), new_structure)

    def _touch(self, scope: str, month: str, day: date | None) -> None:
        self.dirty_months.setdefault(scope, set()).add(month)
        if day is not None:
            self.dirty_days.setdefault(scope, set()).add(day)

    # ---- applying ------------------------------------------------------------------------

    def apply_survey_deltas(self, scope: str, deltas: Iterable[list[Any]]) -> None:
        stype = scope_type_of(scope)
        for partition, position, sign, wire in deltas:
            c = Contribution.from_wire(wire)
            month = c.day[:7]
            sm = self.month_state(scope, month)
            assert sm is not None
            src = str(partition)
            self._touch(scope, month, date.fromisoformat(c.day))
            # The source record was redelivered after a crash and this delta already counted:
            # re-evaluate (its rows may not have been written) but do not count it again.
            if position <= sm["src"].get(src, -1):
                self.redelivered += 1
                continue
            sm["src"][src] = position
            apply_survey_delta(sm, stype, c, sign, self.layouts, self.width)
            self.changed.add(f"{scope}|{month}".encode())

    def apply_official(self, scope: str, region: str, month: str, deaths: int) -> None:
        sm = self.month_state(scope, month)
        assert sm is not None
        sm["official"][region] = deaths
        self.changed.add(f"{scope}|{month}".encode())
        self._touch(scope, month, None)

    def apply_structure(self, position: int, message: dict[str, Any]) -> None:
        st = self.structure()
        if position <= st["offset"]:
            self.redelivered += 1
            month = st["first_month"]
        elif message["kind"] == "unit":
            month = structure_add_unit(st, message["event"])
        else:
            month = structure_add_population(
                st, message["municipality_code"], int(message["year"]), int(message["population"])
            )
        st["offset"] = max(st["offset"], position)
        self.changed.add(f"{NATION}|{STRUCTURE}".encode())
        if month is not None and (self.structure_from is None or month < self.structure_from):
            self.structure_from = month

    def commit(self) -> int:
        """Write changed state back to the table; returns the number of keys written."""
        for key in self.changed:
            self.table[key] = orjson.dumps(self.cache[key])
        return len(self.changed)

    # ---- evaluating ----------------------------------------------------------------------

    def _view(self, scope: str, months: Iterable[str]) -> ScopeView:
        loaded = {}
        for m in set(months):
            sm = self.month_state(scope, m, create=False)
            if sm is not None:
                loaded[m] = sm
        return ScopeView(scope_type_of(scope), scope, loaded)

    def _evaluate(
        self, scope: str, periods: set[tuple[str, date]], as_of: date
    ) -> list[IndicatorValue]:
        """Rows of a scope (and, for a region, its municipalities) for these periods."""
        needed = _months_needed(periods, as_of, self.cat)
        view = self._view(scope, needed)
        rows = evaluate_scope(view, periods, as_of, self.cat)
        if view.scope_type == "region":
            munis: dict[str, dict[str, Any]] = {}
            for m, sm in view.months.items():
                for code, sub in sm["sub"].items():
                    munis.setdefault(code, {})[m] = sub
            for code, months in munis.items():
                rows += evaluate_scope(ScopeView("municipality", code, months), periods, as_of,
                                       self.cat)  # fmt: skip
        return rows

    def evaluate(self, as_of: date) -> list[IndicatorValue]:
        """Rows of everything this batch touched."""
        rows: list[IndicatorValue] = []
        learning = set(learning_months(as_of, self.cat))
        for scope in sorted(set(self.dirty_months) | set(self.dirty_days)):
            dirty = self.dirty_months.get(scope, set())
            periods = periods_for_changes(dirty, self.dirty_days.get(scope, ()), as_of, self.cat)
            if dirty & learning:
                # The delay distribution moved: every open period's nowcast moves with it.
                recent = [m for m in self.months_of(scope) if m > min(learning)]
                periods |= open_periods(recent, as_of, self.cat)
            rows += self._evaluate(scope, periods, as_of)
        if self.structure_from is not None:
            st = self.structure()
            rows += evaluate_structure(
                st, structure_months(st, self.structure_from, as_of), as_of, self.cat
            )
        self._reset()
        return rows

    def evaluate_day(
        self, scopes: Iterable[str], as_of: date, since: date | None
    ) -> list[IndicatorValue]:
        """The daily re-evaluation of ``scopes``: windows move and periods complete even when
        no event arrives."""
        rows: list[IndicatorValue] = []
        for scope in sorted(scopes):
            months = self.months_of(scope)
            if months:
                rows += self._evaluate(scope, periods_for_day(months, as_of, since, self.cat),
                                       as_of)  # fmt: skip
            if scope == NATION and self.table.get(f"{NATION}|{STRUCTURE}".encode()) is not None:
                st = self.structure()
                since_month = None if since is None else since.strftime("%Y-%m")
                rows += evaluate_structure(
                    st, structure_months(st, since_month, as_of), as_of, self.cat
                )
        self._reset()
        return rows


def _months_needed(periods: Iterable[tuple[str, date]], as_of: date, cat: Catalogue) -> set[str]:
    from processors.catalogue import ROLLING_DAYS
    from processors.core import add_months, month_index
    from processors.engine import period_months, period_start

    out: set[str] = set()
    for ptype, end in periods:
        if ptype in ROLLING_DAYS:
            first = period_start(ptype, end).strftime("%Y-%m")
            span = month_index(end.strftime("%Y-%m")) - month_index(first)
            out.update(add_months(first, k) for k in range(span + 1))
        else:
            out.update(period_months(ptype, end))
    # The nowcast learns from the latest complete months.
    last = as_of.strftime("%Y-%m")
    out.update(add_months(last, -k) for k in range(cat.nowcast_months + 8))
    return out
