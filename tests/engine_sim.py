"""The streaming engine's logic run in memory, in the order the worker runs it.

Survey revisions go through ``admit`` (admission and revision state) per person partition, the
deltas are grouped per scope key and applied by the ``Aggregator`` over a dict standing in for
the Faust table, and the rows of every batch overwrite earlier rows by key, as the database
upsert does. Batching and
redeliveries can be varied by the caller to show they change nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from processors.admission import APPLIED, admit
from processors.aggregate import Aggregator
from processors.catalogue import Catalogue, default_catalogue
from processors.core import IndicatorValue
from processors.engine import NATION
from schemas.codes import regions
from tests.keys import KEYS

Key = tuple[str, str, str, str, str, date]


class EngineSim:
    def __init__(self, cat: Catalogue | None = None, partitions: int = 3) -> None:
        self.cat = cat or default_catalogue()
        self.partitions = partitions
        self.people: dict[str, dict[str, Any]] = {}
        self.offsets = [0] * partitions
        self.table: dict[bytes, bytes] = {}
        self.agg = Aggregator(self.table, self.cat)
        self.rows: dict[Key, IndicatorValue] = {}
        self.structure_position = 0
        self.headline_rows = 0

    def _partition(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions

    def surveys(self, surveys: Sequence[Any], as_of: date, redeliver: int = 0) -> None:
        """One batch of valid surveys; the last ``redeliver`` are processed twice, as after a
        crash that lost their commit."""
        per_scope: dict[str, list[list[Any]]] = {}
        records = []
        for s in surveys:
            p = self._partition(s.person_ref)
            records.append((p, self.offsets[p], s))
            self.offsets[p] += 1
        if redeliver:
            records += records[-redeliver:]
        for p, offset, s in records:
            result = admit(self.people.get(s.person_ref), offset, s, self.cat, KEYS)
            if result.outcome == APPLIED:
                assert result.state is not None
                self.people[s.person_ref] = result.state
            for d in result.deltas:
                wire = d.to_wire(p)
                for scope in (d.contribution.region, NATION):
                    per_scope.setdefault(scope, []).append(wire)
        for scope, deltas in per_scope.items():
            self.agg.apply_survey_deltas(scope, deltas)
        self._finish(as_of)

    def official(self, records: Iterable[Any], as_of: date) -> None:
        for o in records:
            for scope in (o.region_code, NATION):
                self.agg.apply_official(scope, o.region_code, o.month, o.deaths)
        self._finish(as_of)

    def structure(self, messages: Iterable[dict[str, Any]], as_of: date) -> None:
        for m in messages:
            self.agg.apply_structure(self.structure_position, m)
            self.structure_position += 1
        self._finish(as_of)

    def day(self, as_of: date) -> None:
        """The worker's clock ticks every scope; nothing else arrives."""
        for scope in (*regions(), NATION):
            self.agg.tick(scope, as_of)
        self._finish(as_of)

    def _finish(self, as_of: date) -> None:
        """As the worker: the headline pass, then the full evaluation. Every headline row is a
        row of the full evaluation with the same values (checked here, so every test that
        runs the simulator checks it)."""
        self.agg.commit()
        headline = self.agg.evaluate_headline(as_of)
        full = self.agg.evaluate(as_of)
        by_key = {v.key: v for v in full}
        for v in headline:
            assert by_key.get(v.key) == v, f"headline row {v.key} differs from the full row"
        self.headline_rows += len(headline)
        for v in full:
            self.rows[v.key] = v
        self.agg.commit()
