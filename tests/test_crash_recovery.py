"""kill -9 of the worker in the middle of a backfill: after a restart the indicators equal the
batch oracle (state recovered from changelogs; nothing lost, nothing counted twice)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import psycopg
import pytest

from processors.core import batch_recompute
from schemas.models import DeathSurvey
from streams.producer import make_producer, send_records
from streams.simulator import SurveyFactory, complete_months_before, official_deaths_records
from streams.topics import DEATH_SURVEYS, OFFICIAL_DEATHS
from tests.conftest import Isolated, WorkerProcess, wait_for
from tests.pipeline_helpers import metric

pytestmark = pytest.mark.integration


def db_values(url: str) -> dict[tuple[str, str, str], tuple[float | None, float | None]]:
    with psycopg.connect(url) as conn:
        return {
            (r[0], r[1], r[2].strftime("%Y-%m")): (r[3], r[4])
            for r in conn.execute(
                "SELECT indicator_id, scope_code, period_end, value, numerator "
                "FROM indicator_values WHERE period_type = 'rolling_12m'"
            )
        }


def test_kill_9_mid_backfill_then_restart_equals_the_oracle(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    s = isolated.settings
    now = datetime.now(UTC)
    months = complete_months_before(now, 6)
    records = list(SurveyFactory(seed=11).backfill(12_000, months, now))
    official = official_deaths_records(months, now)
    producer = make_producer(s)
    send_records(producer, s, OFFICIAL_DEATHS, official)
    send_records(producer, s, DEATH_SURVEYS, records)
    producer.close()

    # Let the worker get part of the way, then kill it without any chance to clean up.
    wait_for(
        lambda: (
            metric(s, "palliwatch_indicator_rows_written_total") > 0
            and metric(s, "palliwatch_records_consumed_total") > 3000
        ),
        120,
        "the worker to be part-way through",
        worker,
    )
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait()
    worker.restart()

    oracle = batch_recompute(
        [DeathSurvey.model_validate(r) for r in records],
        {(o["region_code"], o["month"]): o["deaths"] for o in official},
        last_month=now.strftime("%Y-%m"),
    )
    expected = {k: (v.value, v.numerator) for k, v in oracle.items()}

    def equal() -> bool:
        got = db_values(s.database_url)
        if set(got) != set(expected):
            return False
        for k, (value, num) in expected.items():
            gv, gn = got[k]
            if (gn is None) != (num is None) or (gv is None) != (value is None):
                return False
            if num is not None and abs(gn - num) > 1e-9:
                return False
            if value is not None and abs(gv - value) > 1e-9:
                return False
        return True

    wait_for(equal, 240, "indicators equal to the batch oracle after the restart", worker)
