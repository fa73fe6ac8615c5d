"""A fault in any agent, mid-batch, never lets offsets pass records whose effects are not durable.

Faust restarts an agent that raises and acknowledges the batch it held; before
streams/failures.py a failing agent lost its batch silently while the committed offsets reached
the end of every topic. Here faults are injected (PALLIWATCH_INJECT_FAULT) into every agent of
the real worker on the real broker and database:

- outside any one record: the worker stops at once (exit 70, "worker stopped" in its log); a
  restart without the fault resumes from the committed offsets, and in the end every indicator
  row equals the batch oracle (every valid record counted exactly once);
- on one record: that record becomes an ``internal_error`` dead letter, the worker carries on
  with the rest of its batch, and after `palliwatch dlq replay --reason internal_error` the rows
  equal the oracle again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.failures import ENV_INJECT, EXIT_FATAL
from streams.settings import child_env
from streams.tooling import dlq
from tests.conftest import TEST_AS_OF, Isolated, WorkerProcess, wait_for
from tests.histories import History, random_history
from tests.oracle_compare import oracle_of
from tests.pipeline_helpers import dead_letters, metric
from tests.test_engine_integration import send_history, wait_equal

pytestmark = pytest.mark.integration

# Mid-batch faults outside any one record, one per agent; each worker run dies of the next.
# screen: after its dead letters, before the surveys are sent on; settle: person states written,
# facts and deltas not; aggregation: deltas applied in memory, not committed (and once inside
# the loop over a batch's messages); official deaths and structure: before the forward.
#
# The stages with few records come first, in runs that commit nothing (a commit interval of an
# hour): a run that committed their input would leave the next such fault nothing to fire on.
# The high-volume stages follow with the usual commits, so a restart also resumes part-way.
BATCH_FAULTS = (
    ("structure-unit:batch:1", "3600"),
    ("store:batch:1", "3600"),
    ("apply_official_deaths:batch:2", "3600"),
    ("screen:batch:2", "2.8"),
    ("settle_surveys:batch:2", "2.8"),
    ("aggregate_scopes:record:40", "2.8"),
)
# A worker that died without leaving its group holds its partitions until the session times
# out; the restarts here should not wait Faust's default minute each.
SESSION_TIMEOUT_SECONDS = 10.0
RECORD_FAULTS = (
    "screen:record:50",
    "settle_surveys:record:30",
    "apply_official_deaths:record:4",
    "structure-population:record:3",
    "store:record:7",
)


def order_free(h: History) -> History:
    """The history without what makes arrival order matter (a replayed dead letter arrives
    late): one active survey per person, one official count per region and month, population
    (set, not added) but no unit events."""
    people: set[str] = set()
    surveys = []
    for s in h.admitted:
        if s["status"] == "active" and s["person_ref"] not in people:
            people.add(s["person_ref"])
            surveys.append(s)
    official = list({(o["region_code"], o["month"]): o for o in h.official}.values())
    return History(surveys, surveys, official, [], h.population)


def _run_until_it_stops(
    iso: Isolated, fault: str, commit_interval: str, log_name: str
) -> WorkerProcess:
    s = iso.worker.replace(
        session_timeout_seconds=SESSION_TIMEOUT_SECONDS,
        commit_interval_seconds=float(commit_interval),
    )
    w = WorkerProcess({**child_env(s), ENV_INJECT: fault}, s.state_dir / log_name)
    try:
        w.proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        w.stop()
        raise AssertionError(
            f"the fault {fault} did not stop the worker:\n{w.log_tail()}"
        ) from None
    w.stop()
    assert w.proc.returncode == EXIT_FATAL, w.log_tail()
    log = w.log_path.read_text(errors="replace")
    assert "worker stopped" in log and "fault injected" in log, w.log_tail()
    return w


def test_a_fault_outside_one_record_stops_the_worker_and_loses_nothing(
    isolated: Isolated,
) -> None:
    h = random_history(seed=23, n_surveys=900, as_of=TEST_AS_OF)
    send_history(isolated, h)
    for i, (fault, commit_interval) in enumerate(BATCH_FAULTS):
        _run_until_it_stops(isolated, fault, commit_interval, f"worker-fault-{i}.log")
    s = isolated.worker.replace(session_timeout_seconds=SESSION_TIMEOUT_SECONDS)
    clean = WorkerProcess(child_env(s), s.state_dir / "clean.log")
    try:
        wait_equal(isolated, oracle_of(h, TEST_AS_OF), clean, timeout=300)
        # No record was dead-lettered on the way: the faults were not the records' fault.
        assert [d for d in dead_letters(isolated.settings) if d["reason"] == "internal_error"] == []
    finally:
        clean.stop()


def test_a_fault_on_one_record_dead_letters_it_and_the_batch_goes_on(
    isolated: Isolated,
) -> None:
    s = isolated.settings
    h = order_free(random_history(seed=29, n_surveys=900, as_of=TEST_AS_OF))
    env = {**isolated.env, ENV_INJECT: ",".join(RECORD_FAULTS)}
    w = WorkerProcess(env, isolated.worker.state_dir / "worker-records.log")
    try:
        send_history(isolated, h)
        letters = wait_for(
            lambda: (
                len(d := [x for x in dead_letters(s) if x["reason"] == "internal_error"])
                == len(RECORD_FAULTS)
                and d
            ),
            120,
            "one internal_error dead letter per injected fault",
            w,
        )
        for letter in letters:
            assert "fault injected" in letter["detail"]
            assert letter["payload"] and not letter["payload_redacted"]
        assert metric(s, "palliwatch_internal_errors_total") == len(RECORD_FAULTS)
        w.assert_alive()
        # The rest of each batch went on; the dead-lettered records come back with a replay.
        result = dlq.replay(s, "internal_error")
        assert result.replayed == len(RECORD_FAULTS)
        wait_equal(isolated, oracle_of(h, TEST_AS_OF), w, timeout=300)
        w.assert_alive()
    finally:
        w.stop()


def test_a_bad_fault_plan_stops_with_the_fix() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import streams.failures"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, ENV_INJECT: "settle:sometimes"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "use stage:record:N or stage:batch:N" in out.stderr
