"""processors/flow.py: the scope message codec (byte for byte what the topics and changelogs
already hold), routing, the screen's packing, settling a batch into actions, and the evaluation
schedule as a state machine (time passed in)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import flow
from processors.catalogue import default_catalogue
from processors.engine import NATION
from processors.validation import Reason, canonical
from schemas.codes import regions
from schemas.models import DeathSurvey
from tests.keys import KEYS
from tests.pipeline_helpers import person, survey

CAT = default_catalogue()
PROPS = settings(max_examples=200, deadline=None, database=None)

# ---- codec ---------------------------------------------------------------------------------


def test_the_codec_writes_the_bytes_the_worker_always_wrote() -> None:
    """The old agents built each message with orjson.dumps of these dicts; existing changelogs
    and topics hold them."""
    # As schemas.models dumps them (mode="json"), field order included.
    official = {"schema_version": 1, "region_code": "01", "month": "2025-03", "deaths": 412,
                "source": "SCB", "published_at": "2025-04-10T08:00:00Z"}  # fmt: skip
    population = {"schema_version": 1, "municipality_code": "0180", "year": 2025,
                  "population": 1000}  # fmt: skip
    event = {"unit_id": "u-1", "action": "opened"}
    deltas = [[0, 8192, 1, ["01", "0180", "2025-03-02", [], [], 0, 7]]]
    cases: list[tuple[flow.ScopeMessage, dict[str, Any]]] = [
        (flow.SurveyDeltas(deltas, 1741.5), {"kind": "survey", "d": deltas, "t": 1741.5}),
        (flow.OfficialDeaths(official), {"kind": "official", **official}),
        (flow.UnitEvent(event), {"kind": "unit", "event": event}),
        (flow.Population(population), {"kind": "population", **population}),
        (flow.Tick(date(2025, 4, 1)), {"kind": "tick", "as_of": "2025-04-01"}),
    ]
    for message, old in cases:
        assert flow.encode(message) == orjson.dumps(old)
        assert flow.decode(orjson.dumps(old)) == message


def test_a_survey_message_without_a_submitted_time_decodes_and_encodes_back() -> None:
    """tests/test_engine_integration.py crafts {"kind": "survey", "d": [...], "t": 0.0}; older
    messages had no "t"."""
    raw = orjson.dumps({"kind": "survey", "d": [[1, 2]]})
    assert flow.decode(raw) == flow.SurveyDeltas([[1, 2]], None)
    assert flow.encode(flow.decode(raw)) == raw


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scope message kind"):
        flow.decode(b'{"kind": "gossip"}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=8,
)
messages = st.one_of(
    st.builds(
        flow.SurveyDeltas,
        st.lists(st.lists(json_values, max_size=4), max_size=4),
        st.none() | st.floats(0, 2e9, allow_nan=False),
    ),
    st.builds(flow.UnitEvent, st.dictionaries(st.text(max_size=5), json_values, max_size=3)),
    st.builds(flow.Tick, st.dates()),
)


@PROPS
@given(messages)
def test_every_message_survives_the_codec(message: flow.ScopeMessage) -> None:
    assert flow.decode(flow.encode(message)) == message


# ---- routing and packing ----------------------------------------------------------------------


def test_a_region_reaches_itself_and_the_nation_structure_only_the_nation() -> None:
    assert flow.scopes_for("03") == ("03", NATION)
    assert flow.scopes_for(None) == (NATION,)
    assert (*regions(), NATION) == flow.ALL_SCOPES


@PROPS
@given(st.lists(st.integers(0, 300_000), max_size=40))
def test_person_messages_keep_every_record_in_order_at_about_message_bytes(
    sizes: list[int],
) -> None:
    records = [(("t", 0, i), "x" * n) for i, n in enumerate(sizes)]
    out = flow.person_messages(records)
    back = [r for m in out for r in flow.unpack_person_message(m)]
    assert back == records
    for m in out:
        texts = flow.unpack_person_message(m)
        # Only a message of one record may pass the aim.
        assert len(texts) == 1 or sum(len(t) + 64 for _, t in texts[:-1]) <= flow.MESSAGE_BYTES


def test_by_partition_messages_go_out_in_partition_order() -> None:
    grouped = {2: [(("t", 0, 1), "b")], 0: [(("t", 0, 0), "a")]}
    assert [p for p, _ in flow.by_partition_messages(grouped)] == [0, 2]


# ---- settling --------------------------------------------------------------------------------


def _text(sid: str, who: str, revision: int = 1, status: str = "active") -> str:
    s = DeathSurvey.model_validate(survey(sid, who, revision, status, month="2025-03"))
    return canonical(s).decode()


def _batch(*texts: str, offset: int = 0, partition: int = 1) -> list[tuple[int, int, bytes]]:
    records = [(("registry.death-surveys.v1", 0, offset + i), t) for i, t in enumerate(texts)]
    return [(partition, offset, m) for m in flow.person_messages(records)]


def test_a_batch_settles_into_states_forwards_facts_and_scope_messages() -> None:
    a, b = person("flow-a"), person("flow-b")
    done = flow.settle(_batch(_text("s-a", a), _text("s-b", b)), {}.get, CAT, KEYS)
    assert set(done.states) == {a.encode(), b.encode()}
    assert [key for key, _ in done.forward] == [b"s-a", b"s-b"]
    assert [s.survey_id for s, _, _ in done.facts] == ["s-a", "s-b"]
    assert done.applied == 2 and done.letters == [] and done.stale == 0
    scopes = [scope for scope, _ in done.scope_messages()]
    assert NATION in scopes and scopes == sorted(scopes)
    nation = [m for scope, m in done.scope_messages() if scope == NATION]
    regional = [m for scope, m in done.scope_messages() if scope != NATION]
    assert sum(len(m.deltas) for m in nation) == sum(len(m.deltas) for m in regional) > 0


def test_a_second_survey_of_a_person_is_a_dead_letter_and_a_lower_revision_is_stale() -> None:
    who = person("flow-dup")
    batch = _batch(_text("s-1", who, 2), _text("s-2", who), _text("s-1", who, 1))
    done = flow.settle(batch, {}.get, CAT, KEYS)
    (letter,) = done.letters
    assert not isinstance(letter.why, BaseException)
    assert letter.why.reason is Reason.DUPLICATE_PERSON and letter.key == b"s-2"
    assert done.stale == 1 and done.applied == 1


def test_a_redelivered_batch_sends_the_same_deltas_again_and_changes_no_state() -> None:
    batch = _batch(_text("s-r", person("flow-redo")))
    first = flow.settle(batch, {}.get, CAT, KEYS)
    again = flow.settle(batch, first.states.get, CAT, KEYS)
    assert again.states == {} and again.applied == 0
    assert again.redelivered == sum(len(m.deltas) for _, m in first.scope_messages()) // 2
    assert again.scope_messages() == first.scope_messages()


def test_a_failure_on_one_record_makes_it_a_dead_letter_and_the_batch_goes_on() -> None:
    calls = iter(range(3))

    def check() -> None:
        if next(calls) == 1:
            raise RuntimeError("injected")

    texts = [_text(f"s-{i}", person(f"flow-f{i}")) for i in range(3)]
    done = flow.settle(_batch(*texts), {}.get, CAT, KEYS, check=check)
    (letter,) = done.letters
    assert isinstance(letter.why, RuntimeError) and letter.key == b"s-1"
    assert done.applied == 2


def test_scope_messages_are_chunked_by_scope_message_deltas() -> None:
    done = flow.Settlement()
    done.per_scope = {"01": [[i] for i in range(2 * flow.SCOPE_MESSAGE_DELTAS + 1)]}
    done.newest = {"01": 5.0}
    sizes = [len(m.deltas) for _, m in done.scope_messages()]
    assert sizes == [flow.SCOPE_MESSAGE_DELTAS, flow.SCOPE_MESSAGE_DELTAS, 1]


def test_rejected_facts_become_database_rejected_dead_letters() -> None:
    done = flow.settle(_batch(_text("s-db", person("flow-db"))), {}.get, CAT, KEYS)
    (letter,) = done.rejected_facts([(0, "no")])
    assert not isinstance(letter.why, BaseException)
    assert letter.why.reason is Reason.DATABASE_REJECTED and letter.key == b"s-db"


# ---- the evaluation schedule ---------------------------------------------------------------


def _chunks(n: int) -> Any:
    def evaluate(scope: str) -> Iterator[list[Any]]:
        return iter([[scope]] * n)

    return evaluate


def _run_job(plan: flow.Schedule, now: float, chunks: int = 1) -> list[float] | None:
    while plan.slicing(now, now, waiting=False):
        plan.next_chunk(_chunks(chunks))
    return plan.end_slice(now, now)


@PROPS
@given(st.floats(0, 600), st.floats(0, 600))
def test_a_backlog_delays_the_full_evaluation_by_the_longer_of_30_s_and_four_costs(
    cost: float, since: float
) -> None:
    plan = flow.Schedule(last_done=1000.0, cost=cost)
    started = plan.start_if_due(1000.0 + since, True, True, lambda: ["01"])
    assert started == (since >= max(flow.BACKLOG_EVALUATE_S, 4 * cost))


@PROPS
@given(st.floats(0, 600), st.floats(0, 2))
def test_caught_up_the_full_evaluation_waits_only_evaluate_min_s(cost: float, since: float) -> None:
    plan = flow.Schedule(last_done=50.0, cost=cost)
    assert plan.start_if_due(50.0 + since, True, False, lambda: ["01"]) == (
        since >= flow.EVALUATE_MIN_S
    )


def test_the_first_evaluation_is_due_at_once_and_none_without_work() -> None:
    assert not flow.Schedule().start_if_due(0.0, False, True, lambda: ["01"])
    assert flow.Schedule().start_if_due(0.0, True, True, lambda: ["01"])


def test_a_job_records_its_cost_and_the_next_one_waits_for_it() -> None:
    plan = flow.Schedule()
    assert plan.start_if_due(0.0, True, True, lambda: ["01", "02"])
    while plan.slicing(0.0, 0.0, waiting=False):
        plan.next_chunk(_chunks(2))
    assert plan.end_slice(0.0, 20.0) == []  # 20 s of work
    assert (plan.cost, plan.last_done, plan.active) == (20.0, 20.0, False)
    assert not plan.start_if_due(20.0 + 79.0, True, True, lambda: ["01"])  # 4 x 20 s
    assert plan.start_if_due(20.0 + 80.0, True, True, lambda: ["01"])


def test_a_running_job_is_not_restarted() -> None:
    plan = flow.Schedule()
    assert plan.start_if_due(0.0, True, False, lambda: ["01", "02"])
    assert not plan.start_if_due(100.0, True, False, lambda: ["03"])
    assert plan.job == ["01", "02"]


def test_slices_yield_when_input_waits_and_run_through_when_none_does() -> None:
    plan = flow.Schedule()
    plan.start_if_due(0.0, True, False, lambda: ["01"])
    assert plan.slicing(10.0, 10.0 + flow.FULL_SLICE_S / 2, waiting=True)
    assert not plan.slicing(10.0, 10.0 + flow.FULL_SLICE_S, waiting=True)
    assert plan.slicing(10.0, 10.0 + 100.0, waiting=False)
    assert plan.end_slice(10.0, 10.0 + flow.FULL_SLICE_S) is None  # not done: still active
    assert plan.active and plan.spent == pytest.approx(flow.FULL_SLICE_S)


def test_a_scope_is_done_when_its_chunks_run_out() -> None:
    plan = flow.Schedule()
    plan.start_if_due(0.0, True, False, lambda: ["01", "02"])
    got = [plan.next_chunk(_chunks(2)) for _ in range(6)]
    assert got == [["01"], ["01"], None, ["02"], ["02"], None]
    assert not plan.busy and plan.pending(0) == 0


def test_a_rebalance_drops_the_job_and_closes_the_scope_under_way() -> None:
    closed: list[str] = []

    def evaluate(scope: str) -> Iterator[list[Any]]:
        try:
            yield [scope]
            yield [scope]
        finally:
            closed.append(scope)

    plan = flow.Schedule()
    plan.start_if_due(0.0, True, False, lambda: ["01", "02"])
    assert plan.next_chunk(evaluate) == ["01"]
    assert plan.pending(0) == 2
    plan.drop()
    assert closed == ["01"]
    assert not plan.busy and not plan.active
    assert plan.end_slice(0.0, 1.0) is None  # a dropped job completes nothing


def test_headline_waits_until_the_headline_and_complete_waits_until_a_later_job() -> None:
    plan = flow.Schedule()
    plan.arrived(1.0)
    plan.arrived(None)
    assert flow.Schedule.headline_due(fresh=True, backlog=False)
    assert not flow.Schedule.headline_due(fresh=True, backlog=True)
    assert plan.headline_written() == [1.0] and plan.headline_written() == []
    plan.start_if_due(0.0, True, False, lambda: ["01"])
    plan.arrived(2.0)  # after the job started: waits for the next one
    assert _run_job(plan, 5.0) == [1.0]
    plan.start_if_due(10.0, True, False, lambda: ["01"])
    assert _run_job(plan, 10.0) == [2.0]


def test_time_is_never_read() -> None:
    """The core reads no clock (the agent passes time in)."""
    import inspect

    source = inspect.getsource(flow)
    assert "time.monotonic" not in source and "datetime.now" not in source
    assert datetime.now(UTC)  # the test's own clock, not flow's
