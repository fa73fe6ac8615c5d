"""Every benchmark also runs at a tiny size here, so it cannot rot (README, Benchmarks).

The figures they print are not asserted as speed targets (benchmarks, not timed tests); what is
asserted is that each phase ran and reported a figure.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from streams import settings as settings_mod
from streams.settings import Settings
from streams.tooling.bench import bench_storage
from tests import timescale_helpers as tsh

# TimescaleDB's server, where configured (tests/timescale_helpers.py); assigned, not imported:
# pytest finds fixtures among a module's names.
timescale_url = tsh.timescale_url


@pytest.mark.parametrize("backend", tsh.BACKENDS)
def test_storage_bench_runs_at_a_tiny_size(request: pytest.FixtureRequest, backend: str) -> None:
    """On the local PostgreSQL and, where PALLIWATCH_TEST_TIMESCALE_URL is set, on TimescaleDB."""
    if backend == "timescaledb":
        url = request.getfixturevalue("timescale_url")
        base = settings_mod.load().replace(database_url=url, owner_database_url=url)
    else:
        base = request.getfixturevalue("local_stack")
    results = bench_storage(
        base, years=1, runs=1, sink_rows=3000, db_name="palliwatch_bench_tiny", query_runs=3,
    )  # fmt: skip
    try:
        for name in (
            "sink_insert_rows_per_s", "sink_update_rows_per_s_median",
            "sink_identical_replay_rows_per_s", "overview_ms_median", "series_ms_median",
            "exact_overview_ms_median",
        ):  # fmt: skip
            assert isinstance(results[name], float) and results[name] > 0, name
        # The public and the exact overview read the same rows (the national role sees all).
        assert results["overview_rows"] == results["exact_overview_rows"] > 0
        assert results["timescaledb"] is (backend == "timescaledb")
        # A year of every scope is tens of MB: a hypertable's parent alone would be ~24 kB.
        assert isinstance(results["table_bytes"], int) and results["table_bytes"] > 8 * 2**20
    finally:
        with psycopg.connect(base.owner_url, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "palliwatch_bench_tiny" WITH (FORCE)')


def test_pipeline_bench_runs_at_a_tiny_size(
    local_stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `palliwatch bench pipeline --profile` runs on the local stack: no secret in the
    environment (its worker, with a database of its own, must be given the local one), and the
    worker's CPU by stage from py-spy."""
    from streams.tooling.bench_pipeline import bench_pipeline

    monkeypatch.delenv("PALLIWATCH_CELL_KEY_SECRET")
    base = local_stack.replace(cell_key_secret=b"", state_dir=tmp_path)
    results = bench_pipeline(base, surveys=300, months=3, live_seconds=3.0, rate=20.0, profile=True)
    assert results["backfill_surveys_per_s"] > 0, results
    stages = results["backfill_us_per_survey_by_stage"]
    assert stages["total"] > 0, stages
    # The stages found are ours, and they share out the total (rounding aside).
    assert sum(v for k, v in stages.items() if k != "total") == pytest.approx(
        stages["total"], rel=0.01
    )
