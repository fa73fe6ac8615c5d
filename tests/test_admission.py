"""processors/admission.py: one person's surveys admitted and applied in one pure step.

Example-based tests of each outcome (applied, redelivered, stale, duplicate), of withdrawals
followed by a new registration, of the registration date kept across corrections, and
hypothesis properties: any arrival order of one survey's revisions nets out to its highest
revision only; a person with several surveys behaves like a small reference model; a
redelivered record changes no state and re-sends the same deltas.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import date
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.admission import APPLIED, DUPLICATE, REDELIVERED, STALE, Admission, admit
from processors.catalogue import default_catalogue
from processors.engine import Contribution, contribution
from processors.revisions import HISTORY, Delta
from schemas.models import DeathSurvey
from tests.keys import KEYS
from tests.pipeline_helpers import person, survey
from tests.strategies import bodies, survey_histories

CAT = default_catalogue()
PERSON = person("admission-tests")
PROPS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def rec(
    sid: str,
    revision: int = 1,
    status: str = "active",
    who: str = PERSON,
    month: str = "2025-03",
    **overrides: Any,
) -> DeathSurvey:
    return DeathSurvey.model_validate(survey(sid, who, revision, status, month=month, **overrides))


def contrib(s: DeathSurvey, registered: date | None = None) -> Contribution:
    c = contribution(s, registered or s.submitted_at.date(), CAT, KEYS)
    assert c is not None
    return c


def signed(deltas: list[Delta]) -> list[tuple[int, int, Contribution]]:
    return [(d.position, d.sign, d.contribution) for d in deltas]


def net(deltas: list[Delta]) -> Counter[Contribution]:
    """Signed sum per contribution (zero entries dropped)."""
    total: Counter[Contribution] = Counter()
    for d in deltas:
        total[d.contribution] += d.sign
    return Counter({c: n for c, n in total.items() if n})


def where(c: Contribution) -> tuple[Any, ...]:
    """A contribution without its registration delay."""
    return (c.region, c.municipality, c.day, c.cells, c.vector)


def feed(
    records: list[tuple[int, DeathSurvey]], state: dict[str, Any] | None = None
) -> tuple[dict[str, Any] | None, list[Admission]]:
    """Run records through ``admit`` as the worker does: store the state it returns."""
    results = []
    for position, s in records:
        result = admit(state, position, s, CAT, KEYS)
        if result.state is not None:
            state = result.state
        results.append(result)
    return state, results


def applied(state: dict[str, Any] | None, position: int, s: DeathSurvey) -> Admission:
    result = admit(state, position, s, CAT, KEYS)
    assert result.outcome == APPLIED, result
    assert result.state is not None
    return result


# ---- first registration --------------------------------------------------------------------


def test_first_registration_applies_one_addition() -> None:
    s = rec("s1")
    result = applied(None, 7, s)
    assert result.holder is None
    assert signed(result.deltas) == [(15, +1, contrib(s))]
    state = result.state
    assert state is not None
    assert (state["sid"], state["rev"], state["st"]) == ("s1", 1, "active")
    assert state["adm"] == [7]
    assert set(state["rs"]) == {"s1"}
    assert state["rs"]["s1"]["reg"] == "2025-03-25"


def test_first_registration_withdrawn_applies_without_deltas() -> None:
    result = applied(None, 3, rec("s1", 2, "withdrawn"))
    assert result.deltas == []
    assert result.state is not None
    assert (result.state["sid"], result.state["rev"], result.state["st"]) == (
        "s1",
        2,
        "withdrawn",
    )
    assert result.state["adm"] == [3]


def test_state_is_json_compact_and_input_state_is_not_mutated() -> None:
    state = applied(None, 0, rec("s1")).state
    assert state is not None
    assert orjson.loads(orjson.dumps(state)) == state
    before = copy.deepcopy(state)
    admit(state, 1, rec("s1", 2, region_code="03", municipality_code="0380"), CAT, KEYS)
    admit(state, 2, rec("s2"), CAT, KEYS)
    admit(state, 3, rec("s1", 1), CAT, KEYS)
    admit(state, 0, rec("s1"), CAT, KEYS)
    assert state == before


# ---- corrections and stale revisions ---------------------------------------------------------


def test_correction_subtracts_old_then_adds_new() -> None:
    first = rec("s1")
    state = applied(None, 0, first).state
    corrected = rec("s1", 3, region_code="03", municipality_code="0380", age_years=50)
    result = applied(state, 5, corrected)
    reg = first.submitted_at.date()
    assert signed(result.deltas) == [(10, -1, contrib(first)), (11, +1, contrib(corrected, reg))]
    assert contrib(first) != contrib(corrected, reg)
    assert result.state is not None
    assert (result.state["sid"], result.state["rev"], result.state["st"]) == ("s1", 3, "active")
    assert result.state["adm"] == [0, 5]


@pytest.mark.parametrize("revision", [1, 2])
def test_lower_or_equal_revision_is_stale(revision: int) -> None:
    state, _ = feed([(0, rec("s1", 2))])
    result = admit(state, 1, rec("s1", revision, age_years=40), CAT, KEYS)
    assert result.outcome == STALE
    assert result.state is None and result.deltas == [] and result.holder is None


def test_stale_revision_is_not_remembered_as_admitted() -> None:
    state, results = feed([(0, rec("s1", 3)), (1, rec("s1", 2)), (2, rec("s1", 4))])
    assert [r.outcome for r in results] == [APPLIED, STALE, APPLIED]
    assert state is not None
    assert state["adm"] == [0, 2]
    assert [e[0] for e in state["rs"]["s1"]["h"]] == [0, 2]


def test_admitted_positions_keep_only_the_last_history() -> None:
    state, _ = feed([(p, rec("s1", p + 1)) for p in range(HISTORY + 3)])
    assert state is not None
    assert state["adm"] == list(range(3, HISTORY + 3))
    assert [e[0] for e in state["rs"]["s1"]["h"]] == list(range(3, HISTORY + 3))


# ---- registration date ---------------------------------------------------------------------


def test_registration_date_survives_corrections() -> None:
    first = rec("s1")  # died 2025-03-05, submitted 2025-03-25: 20 days
    second = rec("s1", 2, submitted_at="2025-05-04T10:00:00Z", age_years=30)
    third = rec("s1", 3, submitted_at="2025-07-01T10:00:00Z", date_of_death="2025-03-01")
    state, results = feed([(0, first), (1, second), (2, third)])
    assert [d.contribution.delay for d in results[0].deltas] == [20]
    assert [(d.sign, d.contribution.delay) for d in results[1].deltas] == [(-1, 20), (+1, 20)]
    # A corrected death date moves the delay; the registration date does not move.
    assert [(d.sign, d.contribution.delay) for d in results[2].deltas] == [(-1, 20), (+1, 24)]
    assert state is not None and state["rs"]["s1"]["reg"] == "2025-03-25"


def test_registration_date_survives_a_withdrawal_and_reactivation() -> None:
    first = rec("s1")
    state, results = feed(
        [
            (0, first),
            (1, rec("s1", 2, "withdrawn", submitted_at="2025-04-10T10:00:00Z")),
            (2, rec("s1", 3, submitted_at="2025-06-10T10:00:00Z")),
        ]
    )
    assert signed(results[1].deltas) == [(2, -1, contrib(first))]
    assert signed(results[2].deltas) == [(5, +1, contrib(first))]  # delay 20 again


# ---- withdrawal and a new registration of the person --------------------------------------------


def test_withdrawal_sends_only_the_subtraction() -> None:
    first = rec("s1")
    state, _ = feed([(0, first)])
    result = applied(state, 4, rec("s1", 2, "withdrawn"))
    assert signed(result.deltas) == [(8, -1, contrib(first))]
    assert result.state is not None
    assert (result.state["sid"], result.state["rev"], result.state["st"]) == (
        "s1",
        2,
        "withdrawn",
    )


def test_second_survey_of_an_active_person_is_a_duplicate() -> None:
    state, _ = feed([(0, rec("s1")), (1, rec("s1", 2, age_years=50))])
    for position, s in [(2, rec("s2")), (3, rec("s2", 5)), (4, rec("s2", 1, "withdrawn"))]:
        result = admit(state, position, s, CAT, KEYS)
        assert result.outcome == DUPLICATE
        assert result.holder == "s1"
        assert result.deltas == []
        # The person keeps their survey; only the verdict is remembered, for a redelivery.
        assert result.state is not None
        assert (result.state["sid"], result.state["rev"], result.state["st"]) == ("s1", 2, "active")
        assert result.state["dup"][-1] == [position, "s1"]


def test_duplicate_is_per_person() -> None:
    state, _ = feed([(0, rec("s1"))])
    other = rec("s2", who=person("someone else"))
    # The worker keys state by person_ref: another person starts from no state.
    assert admit(None, 1, other, CAT, KEYS).outcome == APPLIED
    assert admit(state, 1, other, CAT, KEYS).outcome == DUPLICATE  # same state = same person


def test_new_survey_after_withdrawal_is_applied_and_keeps_the_old_revision_state() -> None:
    first = rec("s1")
    state, _ = feed([(0, first), (1, rec("s1", 2, "withdrawn"))])
    assert state is not None
    old_rs = copy.deepcopy(state["rs"]["s1"])
    second = rec("s2", month="2025-04")
    result = applied(state, 2, second)
    assert signed(result.deltas) == [(5, +1, contrib(second))]
    new = result.state
    assert new is not None
    assert (new["sid"], new["rev"], new["st"]) == ("s2", 1, "active")
    assert new["adm"] == [0, 1, 2]
    assert new["rs"]["s1"] == old_rs
    assert new["rs"]["s2"]["reg"] == "2025-04-25"
    # The new survey now holds the person; the old one may not come back while it is active.
    again = admit(new, 3, rec("s1", 3), CAT, KEYS)
    assert again.outcome == DUPLICATE and again.holder == "s2"
    # The new survey's own revisions compare with its own revision, not the old survey's.
    assert admit(new, 3, rec("s2", 1), CAT, KEYS).outcome == STALE
    assert admit(new, 3, rec("s2", 2), CAT, KEYS).outcome == APPLIED


def test_old_survey_reactivated_after_the_new_one_is_withdrawn() -> None:
    first = rec("s1")
    second = rec("s2", month="2025-04")
    state, results = feed(
        [
            (0, first),
            (1, rec("s1", 2, "withdrawn")),
            (2, second),
            (3, rec("s2", 2, "withdrawn", month="2025-04")),
            (4, rec("s1", 3)),
        ]
    )
    assert [r.outcome for r in results] == [APPLIED] * 5
    assert signed(results[3].deltas) == [(6, -1, contrib(second))]
    assert signed(results[4].deltas) == [(9, +1, contrib(first))]  # its own registration date
    assert state is not None and (state["sid"], state["rev"], state["st"]) == ("s1", 3, "active")


def test_late_lower_revision_of_an_earlier_survey_is_stale() -> None:
    state, _ = feed(
        [
            (0, rec("s1", 1)),
            (1, rec("s1", 2, "withdrawn")),
            (2, rec("s2", 1, month="2025-04")),
            (3, rec("s2", 2, "withdrawn", month="2025-04")),
        ]
    )
    late = admit(state, 4, rec("s1", 1), CAT, KEYS)  # s1's first revision, sent again late
    assert late.deltas == []
    # Nobody is counted for the person, so no survey may hold it as active.
    if late.outcome == APPLIED:
        assert late.state is not None
        state = late.state
        assert state["st"] == "withdrawn"
    else:
        assert late.outcome == STALE
    third = admit(state, 5, rec("s3", 1, month="2025-05"), CAT, KEYS)
    assert third.outcome == APPLIED


# ---- redelivery -------------------------------------------------------------------------------


def test_redelivery_of_the_last_record_resends_its_deltas() -> None:
    first = rec("s1")
    state, results = feed([(0, first), (1, rec("s1", 2, age_years=50))])
    for position, s, original in [
        (0, first, results[0]),
        (1, rec("s1", 2, age_years=50), results[1]),
    ]:
        again = admit(state, position, s, CAT, KEYS)
        assert again.outcome == REDELIVERED
        assert again.state is None and again.holder is None
        assert signed(again.deltas) == signed(original.deltas)
        assert again.deltas  # not empty: they may have been lost with the crash


def test_redelivery_after_later_revisions_within_history() -> None:
    records = [(10 * p, rec("s1", p + 1, age_years=40 + p)) for p in range(HISTORY)]
    state, results = feed(records)
    for (position, s), original in zip(records, results, strict=True):
        again = admit(state, position, s, CAT, KEYS)
        assert again.outcome == REDELIVERED
        assert again.state is None
        assert signed(again.deltas) == signed(original.deltas)


def test_redelivery_of_the_oldest_kept_entry_uses_the_dropped_contribution() -> None:
    """After HISTORY + 1 revisions the first entry is dropped; the oldest kept entry's
    subtraction is the dropped revision's contribution (the state's ``base``)."""
    records = [(p, rec("s1", p + 1, age_years=40 + p)) for p in range(HISTORY + 1)]
    state, results = feed(records)
    assert state is not None
    again = admit(state, 1, records[1][1], CAT, KEYS)
    assert again.outcome == REDELIVERED
    assert signed(again.deltas) == signed(results[1].deltas)
    assert [d.sign for d in again.deltas] == [-1, +1]
    # The dropped record itself is too old to be recognised: it is a stale revision now.
    assert admit(state, 0, records[0][1], CAT, KEYS).outcome == STALE


def test_redelivery_of_a_withdrawal_and_of_the_old_survey_after_a_new_one() -> None:
    first = rec("s1")
    withdrawal = rec("s1", 2, "withdrawn")
    second = rec("s2", month="2025-04")
    state, results = feed([(0, first), (1, withdrawal), (2, second)])
    for position, s, original in [
        (0, first, results[0]),
        (1, withdrawal, results[1]),
        (2, second, results[2]),
    ]:
        again = admit(state, position, s, CAT, KEYS)
        assert again.outcome == REDELIVERED
        assert signed(again.deltas) == signed(original.deltas)


def test_redelivered_duplicate_stays_a_duplicate() -> None:
    state, results = feed(
        [(0, rec("s1")), (1, rec("s2", month="2025-04")), (2, rec("s1", 2, "withdrawn"))]
    )
    assert [r.outcome for r in results] == [APPLIED, DUPLICATE, APPLIED]
    again = admit(state, 1, rec("s2", month="2025-04"), CAT, KEYS)  # replay from offset 1
    assert again.state is None
    assert again.deltas == []


# ---- properties -------------------------------------------------------------------------------


@st.composite
def shuffled_history(draw: st.DrawFn) -> list[DeathSurvey]:
    history = draw(survey_histories("h1", max_followups=5))
    return draw(st.permutations(history))


@PROPS
@given(shuffled_history())
def test_any_arrival_order_nets_out_to_the_highest_revision(order: list[DeathSurvey]) -> None:
    state, results = feed(list(enumerate(order)))
    top = max(order, key=lambda s: s.revision)
    # The first record to arrive is applied and fixes the registration date.
    assert results[0].outcome == APPLIED
    registered = order[0].submitted_at.date()
    want = contribution(top, registered, CAT, KEYS)
    sent = [d for r in results for d in r.deltas]
    assert net(sent) == (Counter({want: 1}) if want is not None else Counter())
    # Every applied record raised the revision; every other one was stale.
    best = 0
    for s, r in zip(order, results, strict=True):
        assert r.outcome == (APPLIED if s.revision > best else STALE)
        best = max(best, s.revision)
    assert state is not None
    assert (state["sid"], state["rev"], state["st"]) == ("h1", top.revision, top.status)
    # At no point is the survey counted twice or less than zero times.
    running: Counter[Contribution] = Counter()
    for r in results:
        for d in r.deltas:
            running[d.contribution] += d.sign
        assert all(0 <= n <= 1 for n in running.values())
        assert sum(running.values()) <= 1


@PROPS
@given(st.lists(bodies(), min_size=2, max_size=6))
def test_in_order_corrections_net_out_by_place_and_vector(revs: list[dict[str, Any]]) -> None:
    """Delivered in order, each correction's deltas cancel the previous one exactly (same
    region, day, cells and vector), whatever the bodies."""
    surveys = [
        DeathSurvey.model_validate(survey("c1", PERSON, i + 1, **body))
        for i, body in enumerate(revs)
    ]
    _, results = feed([(i, s) for i, s in enumerate(surveys)])
    sent = [d for r in results for d in r.deltas]
    left = net(sent)
    assert len(left) == 1 and list(left.values()) == [1]
    (only,) = left
    assert where(only) == where(contrib(surveys[-1]))
    for prev, r in zip(surveys, results[1:], strict=False):
        assert [d.sign for d in r.deltas] == [-1, +1]
        assert where(r.deltas[0].contribution) == where(contrib(prev))


class Model:
    """A reference of admission for one person: a survey holds the person from its first
    admitted revision until a later withdrawal; only a revision higher than the survey's own
    highest admitted one changes anything."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.top: dict[str, DeathSurvey] = {}  # survey_id -> highest admitted revision
        self.reg: dict[str, date] = {}

    def outcome(self, s: DeathSurvey) -> str:
        holder = self.top.get(self.holder or "")
        if holder is not None and self.holder != s.survey_id and holder.status == "active":
            return DUPLICATE
        seen = self.top.get(s.survey_id)
        if seen is not None and s.revision <= seen.revision:
            return STALE
        return APPLIED

    def apply(self, s: DeathSurvey) -> None:
        self.holder = s.survey_id
        self.top[s.survey_id] = s
        self.reg.setdefault(s.survey_id, s.submitted_at.date())

    def counted(self) -> Counter[Contribution]:
        out: Counter[Contribution] = Counter()
        for sid, s in self.top.items():
            c = contribution(s, self.reg[sid], CAT, KEYS)
            if c is not None:
                out[c] += 1
        return out


@st.composite
def person_streams(draw: st.DrawFn, in_order: bool) -> list[DeathSurvey]:
    """Up to three surveys of one person (withdrawals likely), their revisions interleaved;
    each survey's revisions in order unless ``in_order`` is false."""
    n = draw(st.integers(1, 3))
    histories = [
        [
            s.model_copy(update={"person_ref": PERSON})
            for s in draw(
                survey_histories(
                    f"p{i}",
                    max_followups=3,
                    kinds=("correct", "withdraw", "withdraw", "reactivate"),
                )
            )
        ]
        for i in range(n)
    ]
    if in_order:
        slots = draw(st.permutations([i for i, h in enumerate(histories) for _ in h]))
        nxt = [0] * n
        out = []
        for i in slots:
            out.append(histories[i][nxt[i]])
            nxt[i] += 1
        return out
    return draw(st.permutations([s for h in histories for s in h]))


def check_against_model(stream: list[DeathSurvey]) -> None:
    model = Model()
    state: dict[str, Any] | None = None
    sent: list[Delta] = []
    for position, s in enumerate(stream):
        want = model.outcome(s)
        # The worker stores the state as JSON: a round trip changes nothing.
        stored = None if state is None else orjson.loads(orjson.dumps(state))
        result = admit(stored, position, s, CAT, KEYS)
        assert result.outcome == want, (position, s.survey_id, s.revision)
        if want == APPLIED:
            model.apply(s)
            assert result.state is not None
            state = result.state
            holder = model.top[s.survey_id]
            assert (state["sid"], state["rev"], state["st"]) == (
                s.survey_id,
                holder.revision,
                holder.status,
            )
        elif want == DUPLICATE:
            assert result.holder == model.holder and result.deltas == []
            assert result.state is not None and result.state["sid"] == model.holder
            state = result.state
        else:
            assert result.state is None and result.deltas == []
        sent.extend(result.deltas)
        assert net(sent) == model.counted()
        assert sum(model.counted().values()) <= 1  # a person is counted once at most


@PROPS
@given(person_streams(in_order=True))
def test_a_persons_surveys_in_order_follow_the_model(stream: list[DeathSurvey]) -> None:
    check_against_model(stream)


def _late_lower_revision_example() -> list[DeathSurvey]:
    return [
        rec("p0", 1),
        rec("p0", 2, "withdrawn"),
        rec("p1", 1, month="2025-04"),
        rec("p1", 2, "withdrawn", month="2025-04"),
        rec("p0", 1),
    ]


@PROPS
@given(person_streams(in_order=False))
@example(_late_lower_revision_example())
def test_a_persons_surveys_in_any_order_follow_the_model(stream: list[DeathSurvey]) -> None:
    check_against_model(stream)


@st.composite
def streams_with_redeliveries(draw: st.DrawFn) -> tuple[list[DeathSurvey], list[int]]:
    """A person's stream, and after each record how many of the last records (up to HISTORY)
    are redelivered."""
    stream = draw(person_streams(in_order=True))
    replays = [draw(st.integers(0, min(HISTORY, i + 1))) for i in range(len(stream))]
    return stream, replays


@PROPS
@given(streams_with_redeliveries())
def test_redelivery_changes_no_state_and_resends_the_same_deltas(
    case: tuple[list[DeathSurvey], list[int]],
) -> None:
    stream, replays = case
    state: dict[str, Any] | None = None
    first: dict[int, Admission] = {}
    for position, s in enumerate(stream):
        result = admit(state, position, s, CAT, KEYS)
        first[position] = result
        if result.outcome == APPLIED:
            state = result.state
        for back in range(max(0, position + 1 - replays[position]), position + 1):
            original = first[back]
            if original.outcome == DUPLICATE:
                continue  # see test_redelivered_duplicate_stays_a_duplicate
            before = copy.deepcopy(state)
            again = admit(state, back, stream[back], CAT, KEYS)
            assert state == before
            assert again.state is None
            assert again.outcome == (REDELIVERED if original.outcome == APPLIED else STALE)
            assert signed(again.deltas) == signed(original.deltas)
