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

from collections.abc import Callable, Generator, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from processors.catalogue import ROLLING_DAYS, Catalogue
from processors.core import IndicatorValue, add_months, month_index, stored_json
from processors.engine import (
    NATION,
    Contribution,
    ScopeView,
    apply_survey_delta,
    catalogue_fingerprint,
    evaluate_scope,
    evaluate_structure,
    headline_periods,
    layouts,
    learning_months,
    new_scope_month,
    new_structure,
    open_periods,
    period_months,
    period_start,
    periods_for_changes,
    periods_for_day,
    structure_add_population,
    structure_add_unit,
    structure_months,
)

STRUCTURE = "structure"
PENDING = "pending"
PERIODS_PER_CALL = 12


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

    def forget(self, owned: Iterable[str]) -> None:
        """After a rebalance, between batches (after ``commit``): drop everything held in
        memory — decoded state, pending marks, scopes with work, daily passes. The table is the
        truth: while a scope was another worker's, that worker wrote its state, and a decoded
        copy kept from before would overwrite it (tests/test_aggregate_rebalance.py). The
        ``owned`` scopes with pending marks in the table (left by a
        worker that died before writing their rows) are evaluated next."""
        self._reset()
        for scope in owned:
            if self._pending(scope).busy():
                self.busy_scopes.add(scope)
        self.pending.clear()

    def _reset(self) -> None:
        self.cache: dict[bytes, dict[str, Any]] = {}
        self.changed: set[bytes] = set()
        self.pending: dict[str, Pending] = {}
        self.busy_scopes: set[str] = set()
        self.day_work: dict[str, date | None] = {}
        # Touched since the last headline pass (in memory: the pending marks in the table cover
        # the same work, so a crash loses nothing).
        self.fresh: dict[str, Pending] = {}
        # Touched while the scope's evaluation is under way (evaluate_scope_chunks may be
        # suspended between chunks while new deltas are applied): these marks stay pending.
        self.in_flight: dict[str, Pending] = {}
        self.redelivered = 0

    # ---- state access --------------------------------------------------------------------

    def _load(self, key: bytes, fresh: Any, versioned: bool = False) -> Any:
        """A key's decoded value (cached for the batch). ``versioned`` values carry the
        catalogue fingerprint their counter vectors were built with."""
        if key in self.cache:
            return self.cache[key]
        raw = self.table.get(key)
        if raw is None:
            value = fresh()
            if versioned:
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
        if key not in self.cache and self.table.get(key) is None:
            if not create:
                return None
            months = self.months_of(scope)
            if month not in months:
                months.append(month)
                months.sort()
                self.changed.add(f"{scope}|months".encode())
        return self._load(key, new_scope_month, versioned=True)

    def months_of(self, scope: str) -> list[str]:
        return self._load(f"{scope}|months".encode(), list)

    def structure(self) -> dict[str, Any]:
        return self._load(f"{NATION}|{STRUCTURE}".encode(), new_structure)

    def _pending(self, scope: str) -> Pending:
        """What a scope still has to re-evaluate. Kept in the table, so a crash between applying
        deltas and writing their rows loses no evaluation."""
        p = self.pending.get(scope)
        if p is None:
            raw = self.table.get(f"{scope}|{PENDING}".encode())
            p = self.pending[scope] = Pending.from_json(raw)
        return p

    def _touch(self, scope: str, month: str, day: date | None) -> None:
        p = self._pending(scope)
        p.months.add(month)
        if day is not None:
            p.days.add(day)
        self.changed.add(f"{scope}|{PENDING}".encode())
        f = self.fresh.get(scope)
        if f is None:
            f = self.fresh[scope] = Pending()
        for marks in (f, self.in_flight.get(scope)):
            if marks is not None:
                marks.months.add(month)
                if day is not None:
                    marks.days.add(day)

    def tick(self, scope: str, as_of: date) -> None:
        """The clock's tick for one scope: evaluate what is pending, and when the date moved
        since the scope's last daily pass, the periods the new date changes."""
        p = self._pending(scope)
        if p.day != as_of:
            self.day_work[scope] = p.day
            p.day = as_of
            self.changed.add(f"{scope}|{PENDING}".encode())

    def has_work(self) -> bool:
        return bool(self.day_work or self.busy_scopes) or any(
            p.busy() for p in self.pending.values()
        )

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

    def apply_unit(self, position: int, event: dict[str, Any]) -> None:
        """A unit event (schemas.models.UnitEvent, dumped) at offset ``position``."""
        self._apply_structure(position, lambda st: structure_add_unit(st, event))

    def apply_population(self, position: int, municipality: str, year: int, people: int) -> None:
        self._apply_structure(
            position, lambda st: structure_add_population(st, municipality, year, people)
        )

    def _apply_structure(self, position: int, add: Callable[[dict[str, Any]], str | None]) -> None:
        st = self.structure()
        if position <= st["offset"]:
            self.redelivered += 1
            month = st["first_month"]
        else:
            month = add(st)
        st["offset"] = max(st["offset"], position)
        self.changed.add(f"{NATION}|{STRUCTURE}".encode())
        if month is None:
            return
        for marks in (self._pending(NATION), self.in_flight.get(NATION)):
            if marks is not None and (marks.structure_from is None or month < marks.structure_from):
                marks.structure_from = month
                self.changed.add(f"{NATION}|{PENDING}".encode())

    def commit(self) -> int:
        """Write changed state back to the table; returns the number of keys written."""
        written = len(self.changed)
        for key in self.changed:
            scope, _, name = key.decode().partition("|")
            if name == PENDING:
                self.table[key] = self._pending(scope).to_json()
            else:
                self.table[key] = stored_json(self.cache[key])
        self.changed.clear()
        for scope, pend in self.pending.items():
            if pend.busy():
                self.busy_scopes.add(scope)
            else:
                self.busy_scopes.discard(scope)
        # Pending marks stay decoded between batches (they were parsed again for every batch,
        # a few percent of a backfill's time as their days piled up): while this worker owns a
        # scope it is the only writer of its marks, and a rebalance drops them (``forget``).
        return written

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
    ) -> Iterator[list[IndicatorValue]]:
        """Rows of a scope, then of each of its municipalities, for these periods."""
        needed = _months_needed(periods, as_of, self.cat)
        view = self._view(scope, needed)
        # A few periods at a time, so a caller can stop between chunks (the nation's rows alone
        # are tens of thousands in live traffic).
        ordered = sorted(periods)
        for i in range(0, len(ordered), PERIODS_PER_CALL):
            yield evaluate_scope(view, ordered[i : i + PERIODS_PER_CALL], as_of, self.cat)
        if view.scope_type == "region":
            munis: dict[str, dict[str, Any]] = {}
            for m, sm in view.months.items():
                for code, sub in sm["sub"].items():
                    munis.setdefault(code, {})[m] = sub
            for code, months in sorted(munis.items()):
                yield evaluate_scope(ScopeView("municipality", code, months), periods, as_of,
                                     self.cat)  # fmt: skip

    def evaluate(self, as_of: date) -> list[IndicatorValue]:
        """All rows of ``evaluate_chunks`` in one list (tests; small evaluations)."""
        return [row for chunk in self.evaluate_chunks(as_of) for row in chunk]

    def scopes_with_work(self) -> list[str]:
        """Scopes with pending marks or a daily pass to do (after ``commit``)."""
        busy = {scope for scope, p in self.pending.items() if p.busy()}
        return sorted(self.busy_scopes | busy | set(self.day_work))

    def evaluate_chunks(
        self, as_of: date, max_rows: int = 20_000
    ) -> Iterator[list[IndicatorValue]]:
        """Rows of everything pending, and the daily passes ticks asked for, in chunks of at
        most about ``max_rows``: ``evaluate_scope_chunks`` for every scope with work."""
        for scope in self.scopes_with_work():
            yield from self.evaluate_scope_chunks(scope, as_of, max_rows)
        self.cache = {k: self.cache[k] for k in self.changed if k in self.cache}

    def evaluate_scope_chunks(
        self, scope: str, as_of: date, max_rows: int = 20_000
    ) -> Generator[list[IndicatorValue], None, None]:
        """Rows of one scope's pending work and daily pass, in chunks of at most about
        ``max_rows`` (a backfill touches hundreds of thousands of rows; holding them all at once
        would set the worker's peak memory). The caller makes each chunk durable before asking
        for the next; once exhausted, the scope's pending marks are cleared: ``commit`` then.
        If a write fails half-way, the marks are still in the table and the next evaluation
        redoes the work."""
        learning = set(learning_months(as_of, self.cat))
        p = self._pending(scope)
        taken = Pending(set(p.months), set(p.days), p.structure_from)
        flight = self.in_flight[scope] = Pending()
        periods = periods_for_changes(p.months, p.days, as_of, self.cat)
        if p.months & learning:
            # The delay distribution moved: every open period's nowcast moves with it.
            recent = [m for m in self.months_of(scope) if m > min(learning)]
            periods |= open_periods(recent, as_of, self.cat)
        structure_from = p.structure_from
        if scope in self.day_work:
            since = self.day_work.pop(scope)
            periods |= periods_for_day(self.months_of(scope), as_of, since, self.cat)
            if scope == NATION and self.table.get(f"{NATION}|{STRUCTURE}".encode()):
                first = None if since is None else since.strftime("%Y-%m")
                if structure_from is None or first is None or first < structure_from:
                    structure_from = first or self.structure()["first_month"]
        chunks: list[Iterable[list[IndicatorValue]]] = []
        if periods:
            chunks.append(self._evaluate(scope, periods, as_of))
        if structure_from is not None:
            st = self.structure()
            months = structure_months(st, structure_from, as_of)
            chunks.append([evaluate_structure(st, months, as_of, self.cat)])
        buffer: list[IndicatorValue] = []
        try:
            for part in chunks:
                for rows in part:
                    buffer += rows
                    if len(buffer) >= max_rows:
                        yield buffer
                        buffer = []
            if buffer:
                yield buffer
        finally:
            self.in_flight.pop(scope, None)
        # Every row is durable now. Clear the marks this evaluation took, but not those added
        # while it was suspended (the caller may apply deltas between chunks): the next
        # evaluation picks them up.
        p = self._pending(scope)
        p.months = (p.months - taken.months) | flight.months
        p.days = (p.days - taken.days) | flight.days
        if p.structure_from == taken.structure_from:
            p.structure_from = flight.structure_from
        self.changed.add(f"{scope}|{PENDING}".encode())
        # Decoded month states of this scope are not needed any more: the table has them.
        prefix = f"{scope}|".encode()
        self.cache = {
            k: v for k, v in self.cache.items() if not k.startswith(prefix) or k in self.changed
        }

    def evaluate_headline(self, as_of: date) -> list[IndicatorValue]:
        """The headline rows of what changed since the last headline pass: breakdown ``all`` of
        the nation and the regions, for ``engine.headline_periods``. These are rows the full
        evaluation writes too, with the same values; live traffic sees them first because
        they are few. Municipalities, breakdown cells and later window ends follow with the
        full evaluation."""
        out: list[IndicatorValue] = []
        for scope, f in sorted(self.fresh.items()):
            periods = headline_periods(f.months, f.days, as_of, self.cat)
            if periods:
                view = self._view(scope, _months_needed(periods, as_of, self.cat))
                out += evaluate_scope(view, periods, as_of, self.cat, total_only=True)
        self.fresh.clear()
        self.cache = {k: self.cache[k] for k in self.changed if k in self.cache}
        return out


@dataclass
class Pending:
    """A scope's work to do: months and days touched since its rows were last written, the
    first month of changed structure, and the date of its last daily pass."""

    months: set[str] = field(default_factory=set)
    days: set[date] = field(default_factory=set)
    structure_from: str | None = None
    day: date | None = None

    def busy(self) -> bool:
        return bool(self.months or self.days or self.structure_from)

    def clear(self) -> None:
        self.months.clear()
        self.days.clear()
        self.structure_from = None

    def to_json(self) -> bytes:
        return stored_json(
            {
                "m": sorted(self.months),
                "d": sorted(d.isoformat() for d in self.days),
                "s": self.structure_from,
                "day": None if self.day is None else self.day.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | None) -> Pending:
        if not raw:
            return cls()
        v = orjson.loads(raw)
        return cls(
            set(v["m"]),
            {date.fromisoformat(d) for d in v["d"]},
            v["s"],
            None if v["day"] is None else date.fromisoformat(v["day"]),
        )


def _months_needed(periods: Iterable[tuple[str, date]], as_of: date, cat: Catalogue) -> set[str]:
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
