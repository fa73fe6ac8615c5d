"""A person's surveys: admission (one survey per person) and revision state, in one pure step.

The worker keeps one state per person_ref in a changelog-backed table. Admission and revision
state used to be two stages keyed differently (person, then survey), with a Kafka hop and a
second table write between them; both only ever need one person's surveys, so one state per
person answers both, written once per survey record.

State (compact JSON in the table):
- ``sid``, ``rev``, ``st``: the admitted survey, its latest admitted revision and status;
- ``adm``: the positions of the last few admitted records, to recognise a redelivery;
- ``dup``: [position, holder] of the last few records dead-lettered as a second registration,
  so that a redelivery is dead-lettered again even if the holder was withdrawn since;
- ``rs``: survey_id -> revision state (processors.revisions) for each survey of the person
  ever admitted (almost always one; a withdrawn registration may be followed by another).

A *position* identifies a record in its source partition and increases with it (the worker uses
``offset * MAX_PER_MESSAGE + index`` for records carried in batch messages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.catalogue import Catalogue
from processors.engine import RecordKeyFn
from processors.revisions import HISTORY, Delta, apply_revision

APPLIED = "applied"
REDELIVERED = "redelivered"
STALE = "stale"
DUPLICATE = "duplicate"


@dataclass
class Admission:
    """outcome: ``applied`` (admitted: forward, send the deltas, store ``state``);
    ``redelivered`` (admitted before, seen again after a crash: forward and send the same deltas
    again, state unchanged); ``stale`` (a revision no higher than one applied for that survey:
    counted, nothing else); ``duplicate`` (a second registration of an active person: dead
    letter; ``holder`` is the survey_id that has the person; store ``state`` when set)."""

    outcome: str
    state: dict[str, Any] | None = None
    deltas: list[Delta] = field(default_factory=list)
    holder: str | None = None


def admit(
    state: dict[str, Any] | None,
    position: int,
    survey: Any,
    cat: Catalogue,
    record_keys: RecordKeyFn,
) -> Admission:
    """``record_keys``: person_ref -> record key (processors/disclosure.RecordKeys)."""
    sid = survey.survey_id
    surveys: dict[str, Any] = state["rs"] if state else {}
    admitted: list[int] = state["adm"] if state else []
    duplicates: list[list[Any]] = state.get("dup", []) if state else []
    if position in admitted:
        # Its forward and deltas may have been lost with the crash; downstream ignores them if
        # they were not (the same positions).
        _, deltas, _ = apply_revision(surveys.get(sid), position, survey, cat, record_keys)
        return Admission(REDELIVERED, deltas=deltas)
    for seen, holder in duplicates:
        if seen == position:  # redelivered: the same verdict as the first time
            return Admission(DUPLICATE, holder=holder)
    if state is not None and state["sid"] != sid and state["st"] != "withdrawn":
        kept = {**state, "dup": [*duplicates, [position, state["sid"]]][-HISTORY:]}
        return Admission(DUPLICATE, kept, holder=state["sid"])
    # Otherwise the person is new, or this is their survey, or theirs was withdrawn (a new
    # registration is allowed). Either way a revision no higher than one applied is stale.
    history = surveys.get(sid, {}).get("h")
    if history and survey.revision <= history[-1][1]:
        return Admission(STALE)
    revision_state, deltas, _ = apply_revision(surveys.get(sid), position, survey, cat, record_keys)
    assert revision_state is not None
    new_state = {
        "sid": sid,
        "rev": survey.revision,
        "st": survey.status,
        "adm": [*admitted, position][-HISTORY:],
        "rs": {**surveys, sid: revision_state},
    }
    if duplicates:
        new_state["dup"] = duplicates
    return Admission(APPLIED, new_state, deltas)
