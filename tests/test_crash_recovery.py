"""kill -9 of the worker in the middle of a backfill: after a restart every indicator row
equals the batch oracle (state recovered from changelogs; nothing lost, nothing counted twice)."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import TEST_AS_OF, Isolated, WorkerProcess, wait_for
from tests.histories import random_history
from tests.oracle_compare import db_rows, differences, oracle_of
from tests.pipeline_helpers import metric
from tests.test_engine_integration import send_history

pytestmark = pytest.mark.integration


def test_kill_9_mid_backfill_then_restart_equals_the_oracle(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    s = isolated.settings
    h = random_history(seed=11, n_surveys=3000, as_of=TEST_AS_OF)
    send_history(isolated, h)

    # Let the worker get part of the way, then kill it without any chance to clean up.
    wait_for(
        lambda: (
            metric(s, "palliwatch_indicator_rows_written_total") > 0
            and metric(s, "palliwatch_records_consumed_total") > 1000
        ),
        120,
        "the worker to be part-way through",
        worker,
    )
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait()
    want = oracle_of(h, TEST_AS_OF)
    # Killed part-way: the table was not complete yet.
    assert differences(db_rows(s.database_url), want) != []
    worker.restart()

    last: list[list[str]] = [[]]

    def equal() -> bool:
        last[0] = differences(db_rows(s.database_url), want)
        return not last[0]

    try:
        wait_for(equal, 300, "indicators equal to the batch oracle after the restart", worker)
    except AssertionError as e:
        raise AssertionError(f"{e}\ndifferences: {last[0]}") from None
