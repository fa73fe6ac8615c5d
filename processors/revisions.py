"""Survey revision state: which revision of a survey counts, and the deltas a new one causes.

Pure functions over a small per-survey state, kept by the worker in a changelog-backed table
keyed by survey_id. The state remembers the source offsets of the last few revisions it applied,
so that a record redelivered after a crash re-emits exactly the deltas it emitted the first time
(tagged with the same positions, which the aggregation deduplicates). A delta lost between a
state write and a crash is therefore re-sent, and one that did arrive is not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from processors.catalogue import Catalogue
from processors.engine import Contribution, RecordKeyFn, contribution

# Redeliveries replay from the last committed offset, a handful of records back at most per
# survey: the history only needs to reach that far.
HISTORY = 4


@dataclass(frozen=True)
class Delta:
    """A signed contribution, positioned in its source partition (2 x offset, +1 for the add)."""

    position: int
    sign: int
    contribution: Contribution

    def to_wire(self, partition: int) -> list[Any]:
        return [partition, self.position, self.sign, self.contribution.to_wire()]


def _deltas(offset: int, old: Contribution | None, new: Contribution | None) -> list[Delta]:
    out = []
    if old is not None:
        out.append(Delta(2 * offset, -1, old))
    if new is not None:
        out.append(Delta(2 * offset + 1, +1, new))
    return out


def _contribution_at(history: list[list[Any]], i: int) -> Contribution | None:
    if i < 0:
        return None
    wire = history[i][2]
    return None if wire is None else Contribution.from_wire(wire)


def apply_revision(
    state: dict[str, Any] | None, offset: int, survey: Any, cat: Catalogue, record_keys: RecordKeyFn
) -> tuple[dict[str, Any] | None, list[Delta], str]:
    """(new state or None when unchanged, deltas to send, outcome).

    outcome: "applied"; "redelivered" (the record that set an entry of the history, seen again:
    its deltas are re-sent); "superseded" (a revision no higher than one applied: nothing).
    """
    history: list[list[Any]] = state["h"] if state else []
    for i, (o, _rev, _c) in enumerate(history):
        if o == offset:
            before = _contribution_at(history, i - 1) if i > 0 else _base(state)
            return None, _deltas(offset, before, _contribution_at(history, i)), "redelivered"
    if history and survey.revision <= history[-1][1]:
        return None, [], "superseded"
    registered = date.fromisoformat(state["reg"]) if state else survey.submitted_at.date()
    new = contribution(survey, registered, cat, record_keys)
    old = _contribution_at(history, len(history) - 1)
    entries = [*history, [offset, survey.revision, None if new is None else new.to_wire()]]
    dropped = entries[:-HISTORY]
    kept = entries[-HISTORY:]
    new_state = {
        "h": kept,
        "reg": registered.isoformat(),
        # The contribution before the oldest kept entry, so its redelivery can still be replayed.
        "base": dropped[-1][2] if dropped else (state or {}).get("base"),
    }
    return new_state, _deltas(offset, old, new), "applied"


def _base(state: dict[str, Any] | None) -> Contribution | None:
    wire = (state or {}).get("base")
    return None if wire is None else Contribution.from_wire(wire)
