"""The streaming engine's logic run in memory, in the order the worker runs it, through the
worker's own orchestration (processors/flow.py).

Survey revisions are settled (``flow.Settlement``: admission and revision state) per person
partition, the scope messages they come to go through the wire codec and are applied by the
``Aggregator`` over a dict standing in for the Faust table, and the rows of every batch
(the headline pass, then a full evaluation run by ``flow.Schedule``) overwrite earlier rows by
key, as the database upsert does. Batching and redeliveries can be varied by the caller to show
they change nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from processors import flow
from processors.aggregate import Aggregator
from processors.catalogue import Catalogue, default_catalogue
from processors.core import IndicatorValue
from processors.written import Written
from tests.keys import KEYS

Key = tuple[str, str, str, str, str, date]


class EngineSim:
    def __init__(self, cat: Catalogue | None = None, partitions: int = 3) -> None:
        self.cat = cat or default_catalogue()
        self.partitions = partitions
        self.people: dict[bytes, bytes] = {}  # the people table: person_ref -> packed state
        self.offsets = [0] * partitions
        self.table: dict[bytes, bytes] = {}
        self.agg = Aggregator(self.table, self.cat)
        self.rows: dict[Key, IndicatorValue] = {}
        # As the worker: only rows whose values changed are written (processors/written.py).
        self.written = Written()
        self.rows_skipped = 0
        self.structure_position = 0
        self.headline_rows = 0

    def _partition(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions

    def _send(self, scope: str, message: flow.ScopeMessage, position: int = 0) -> None:
        """A scope message as the aggregation receives it: encoded, decoded, applied."""
        flow.apply(self.agg, scope, position, flow.decode(flow.encode(message)))

    def surveys(self, surveys: Sequence[Any], as_of: date, redeliver: int = 0) -> None:
        """One batch of valid surveys; the last ``redeliver`` are processed twice, as after a
        crash that lost their commit."""
        records = []
        for s in surveys:
            p = self._partition(s.person_ref)
            records.append((p, self.offsets[p], s))
            self.offsets[p] += 1
        if redeliver:
            records += records[-redeliver:]
        settled = flow.Settlement()
        for p, offset, s in records:
            settled.admit(self.people.get, p, offset, s, self.cat, KEYS)
        self.people.update(settled.states)
        for scope, message in settled.scope_messages():
            self._send(scope, message)
        self._finish(as_of)

    def official(self, records: Iterable[Any], as_of: date) -> None:
        for o in records:
            message = flow.OfficialDeaths(o.model_dump(mode="json"))
            for scope in flow.scopes_for(o.region_code):
                self._send(scope, message)
        self._finish(as_of)

    def structure(self, messages: Iterable[dict[str, Any]], as_of: date) -> None:
        for m in messages:
            for scope in flow.scopes_for(None):
                self._send(scope, flow.from_dict(m), self.structure_position)
            self.structure_position += 1
        self._finish(as_of)

    def day(self, as_of: date) -> None:
        """The worker's clock ticks every scope; nothing else arrives."""
        for scope in flow.ALL_SCOPES:
            self._send(scope, flow.Tick(as_of))
        self._finish(as_of)

    def _finish(self, as_of: date) -> None:
        """As the worker: the headline pass, then the full evaluation, scope by scope. Every
        headline row is a row of the full evaluation with the same values (checked here, so
        every test that runs the simulator checks it)."""
        self.agg.commit()
        headline = self.agg.evaluate_headline(as_of)
        plan = flow.Schedule()
        plan.start_if_due(0.0, self.agg.has_work(), False, self.agg.scopes_with_work)
        full: list[IndicatorValue] = []
        while plan.busy:
            rows = plan.next_chunk(lambda s: self.agg.evaluate_scope_chunks(s, as_of))
            if rows is None:
                self.agg.commit()
            else:
                full += rows
        by_key = {v.key: v for v in full}
        for v in headline:
            assert by_key.get(v.key) == v, f"headline row {v.key} differs from the full row"
        self.headline_rows += len(headline)
        for rows in (headline, full):
            fresh, marks = self.written.changed(rows)
            self.rows_skipped += len(rows) - len(fresh)
            for v in fresh:
                self.rows[v.key] = v
            self.written.mark(marks)
        self.agg.commit()
