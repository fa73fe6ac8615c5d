"""The bench's profile (streams/tooling/profile.py): samples charged to the innermost stage of
ours, shares spread over the worker's CPU."""

from __future__ import annotations

import os
from collections import Counter

from streams.tooling import profile

SCREEN = "screen (streams/agents/screen.py:40)"
PARSE = "parse (processors/validation.py:210)"
PYDANTIC = "model_validate_json (pydantic/main.py:700)"
LOOP = "run_forever (asyncio/base_events.py:600)"


def test_a_sample_is_charged_to_the_innermost_stage_of_ours() -> None:
    assert profile.stage_of(f"{LOOP};{SCREEN};{PARSE};{PYDANTIC}").startswith("screen")
    settle = "settle (processors/flow.py:400)"
    vector = "survey_vector (processors/catalogue.py:270)"
    assert profile.stage_of(f"{LOOP};{settle};{PYDANTIC}") == "settle: validating again"
    assert profile.stage_of(f"{LOOP};{settle};{vector}").startswith("contributions")
    sink = "copy_upsert (processors/sink.py:130)"
    assert profile.stage_of(f"{LOOP};{sink};write_row (psycopg/copy.py:1)").startswith("database")
    assert profile.stage_of(LOOP) == profile.FRAMEWORK


def test_stage_samples_read_py_spys_collapsed_stacks() -> None:
    raw = f"{LOOP};{SCREEN};{PARSE} 30\n{LOOP} 10\n\n{LOOP};{SCREEN} 5\nnot a line\n"
    got = profile.stage_samples(raw)
    assert got == Counter({"screen (identity scan, validation)": 35, profile.FRAMEWORK: 10})


def test_per_survey_spreads_the_cpu_over_the_stages() -> None:
    got = profile.per_survey(Counter({"a": 3, "b": 1}), cpu_s=2.0, surveys=1000)
    assert got == {"a": 1500.0, "b": 500.0, "total": 2000.0}
    assert profile.per_survey(Counter(), 1.0, 10) == {}


def test_cpu_seconds_of_this_process() -> None:
    sum(i * i for i in range(200_000))  # some CPU
    assert 0 < profile.cpu_seconds(os.getpid()) < 10_000
