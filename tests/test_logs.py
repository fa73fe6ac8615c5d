"""PALLIWATCH_LOG_FORMAT=json: one JSON object per line, and no personal data in the logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.identity import find_identity_numbers
from schemas.topics import DEATH_SURVEYS
from streams.logs import PSEUDONYM, JsonFormatter, scrub
from streams.settings import REPO_ROOT
from streams.tooling.producer import make_producer, send_records
from tests.conftest import Isolated, WorkerProcess, wait_for
from tests.pipeline_helpers import metric, person, survey

PNR = "19121212-1212"  # the tax agency's well-known test number (Luhn-valid)


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("palliwatch.worker", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_the_fields_and_extras() -> None:
    line = JsonFormatter().format(_record("wrote %d rows", 12, table="indicator_values", n=12))
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "palliwatch.worker"
    assert entry["message"] == "wrote 12 rows"
    assert entry["table"] == "indicator_values" and entry["n"] == 12
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None


def test_json_line_carries_the_traceback_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "palliwatch.worker", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in orjson.loads(line)["exc"]


def test_json_lines_hold_no_identity_number_or_pseudonym() -> None:
    ref = person("log-1")
    line = JsonFormatter().format(
        _record("survey of %s from %s", ref, f"unit {PNR}", payload={"id": PNR, "ref": ref})
    )
    assert ref not in line and not find_identity_numbers(line)
    entry = orjson.loads(line)
    assert PSEUDONYM in entry["message"] and "[REDACTED]" in entry["message"]
    assert entry["payload"] == {"id": "[REDACTED]", "ref": PSEUDONYM}
    # Ordinary numbers (offsets, epoch seconds) are left alone.
    assert scrub("offset 1795437861 partition 3") == "offset 1795437861 partition 3"


def test_an_unknown_log_format_names_the_fix() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "streams.tooling.cli", "schemas", "check"],
        cwd=REPO_ROOT,
        env={**os.environ, "PALLIWATCH_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "PALLIWATCH_LOG_FORMAT='xml'" in r.stderr and "use text or json" in r.stderr


@pytest.mark.integration
def test_worker_json_log_lines_parse_and_hold_no_personal_data(isolated: Isolated) -> None:
    s = isolated.settings
    env = {**isolated.env, "PALLIWATCH_LOG_FORMAT": "json"}
    log_path = isolated.worker.state_dir / "worker-json.log"
    worker = WorkerProcess(env, log_path)
    try:
        now = datetime.now(UTC)
        month = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        refs = [person(f"json-log-{i}") for i in range(4)]
        records = [survey(f"json-log-{i}", ref, month=month) for i, ref in enumerate(refs)]
        # Dead letters, whose reasons and details are logged: an identity number in a field,
        # a second registration of the same person, an unknown region.
        records.append(
            survey("json-log-pnr", person("json-log-pnr"), month=month, unit_id=f"unit {PNR}")
        )
        records.append(survey("json-log-dup", refs[0], month=month))
        records.append(
            survey("json-log-region", person("json-log-r"), month=month, region_code="99")
        )
        refs += [person("json-log-pnr"), person("json-log-r")]
        producer = make_producer(s)
        try:
            send_records(producer, s, DEATH_SURVEYS, records)
            producer.send(s.topic(DEATH_SURVEYS), key=b"json-log-raw", value=f"{PNR}".encode())
            producer.flush()
        finally:
            producer.close()
        wait_for(
            lambda: (
                metric(s, "palliwatch_dead_letters_total") >= 4
                and metric(s, "palliwatch_processing_latency_seconds_count") >= 1
            ),
            120,
            "the worker to process the surveys and dead letters",
            worker,
        )
    finally:
        worker.stop()

    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert len(lines) > 10, "the worker logged (almost) nothing"
    entries = []
    for line in lines:
        try:
            entries.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line[:300]!r}")
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    dead = [e for e in entries if e["message"].startswith("dead letter")]
    assert {"identity_number_in_payload", "duplicate_person", "unknown_code"} <= {
        e["message"].split()[2] for e in dead
    }, dead
    text = log_path.read_text()
    for ref in refs:
        assert ref not in text, "a person_ref reached the log"
    assert not find_identity_numbers(text), "an identity number reached the log"
