"""Streaming equals batch on the real broker and database.

Randomised histories (corrections that move surveys, withdrawals and re-registrations, resent
and stale revisions, late registrations, replaced official counts, unit events, population)
go through the real worker; after quiescence every row of indicator_values equals the
independent batch oracle (processors/oracle.py) — the full table, every scope, period and
breakdown. Also: the daily re-evaluation when only the date moves, and an indicator added by a
catalogue edit alone.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from processors.admission import admit
from processors.catalogue import DEFAULT_PATH, default_catalogue, parse_catalogue
from processors.oracle import oracle
from schemas.models import DeathSurvey, OfficialDeaths, Population, UnitEvent
from schemas.topics import DEATH_SURVEYS, OFFICIAL_DEATHS, POPULATION, SCOPE_DELTAS, UNIT_EVENTS
from streams.settings import child_env
from streams.tooling.producer import make_producer, send_records
from tests.conftest import TEST_AS_OF, Isolated, WorkerProcess, wait_for
from tests.histories import History, random_history
from tests.keys import KEYS
from tests.oracle_compare import db_rows, differences, oracle_of
from tests.pipeline_helpers import dead_letters, metric, survey

pytestmark = pytest.mark.integration


def send_history(iso: Isolated, h: History) -> None:
    s = iso.settings
    producer = make_producer(s)
    try:
        send_records(producer, s, POPULATION, h.population)
        send_records(producer, s, UNIT_EVENTS, h.units)
        half = len(h.official) // 2
        send_records(producer, s, OFFICIAL_DEATHS, h.official[:half])
        send_records(producer, s, DEATH_SURVEYS, h.surveys)
        send_records(producer, s, OFFICIAL_DEATHS, h.official[half:])
    finally:
        producer.close()


def wait_equal(iso: Isolated, want: dict, worker: WorkerProcess, timeout: float = 240) -> None:  # type: ignore[type-arg]
    last: list[list[str]] = [[]]

    def equal() -> bool:
        last[0] = differences(db_rows(iso.settings.database_url), want)
        return not last[0]

    try:
        wait_for(equal, timeout, "indicator_values equal to the batch oracle", worker)
    except AssertionError as e:
        raise AssertionError(f"{e}\ndifferences: {last[0]}") from None


def test_random_history_on_the_real_pipeline_equals_the_oracle(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    h = random_history(seed=101, n_surveys=400, as_of=TEST_AS_OF)
    send_history(isolated, h)
    want = oracle_of(h, TEST_AS_OF)
    assert len(want) > 10_000
    wait_equal(isolated, want, worker)

    # A second registration of a person, and a poison record: dead letters, nothing changes.
    first = h.admitted[0]
    dup = survey("dup-1", first["person_ref"], month=first["date_of_death"][:7])
    producer = make_producer(isolated.settings)
    send_records(producer, isolated.settings, DEATH_SURVEYS, [dup])
    producer.send(isolated.settings.topic(DEATH_SURVEYS), key=b"x", value=b"\xff not json")
    producer.flush()
    producer.close()
    wait_for(lambda: len(dead_letters(isolated.settings)) == 2, 60, "two dead letters", worker)
    reasons = sorted(d["reason"] for d in dead_letters(isolated.settings))
    assert reasons == ["duplicate_person", "not_utf8"]
    wait_equal(isolated, want, worker, timeout=30)


def test_the_date_moving_on_reevaluates_without_any_event(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    h = random_history(seed=202, n_surveys=150, as_of=TEST_AS_OF)
    send_history(isolated, h)
    wait_equal(isolated, oracle_of(h, TEST_AS_OF), worker)

    # Forty days later, nothing new has arrived: daily windows move on, periods complete,
    # nowcasts change. The restarted worker's daily pass alone must produce the new day's rows.
    later = TEST_AS_OF + timedelta(days=40)
    worker.env = child_env(isolated.worker.replace(as_of_date=later))
    worker.restart()
    want = oracle_of(h, later)

    def caught_up() -> list[str]:
        got = db_rows(isolated.settings.database_url)
        # Daily windows that ended before the new horizon are final and stay as written.
        return differences({k: v for k, v in got.items() if k in want}, want) + (
            [f"{len(set(want) - set(got))} rows missing"] if set(want) - set(got) else []
        )

    last: list[list[str]] = [[]]

    def ok() -> bool:
        last[0] = caught_up()
        return not last[0]

    try:
        wait_for(ok, 180, "the re-evaluation of the later day", worker)
    except AssertionError as e:
        raise AssertionError(f"{e}\ndifferences: {last[0]}") from None


def test_an_indicator_added_to_the_catalogue_alone_is_computed(
    isolated: Isolated, worker: WorkerProcess, tmp_path: Path
) -> None:
    """Adding an indicator is a catalogue edit: no code. The worker reads the edited file."""
    extra = """
[[indicator]]
id = "died_in_hospital_share"
family = "place_of_death"
title_en = "Share of deaths in hospital"
title_sv = "Andel avlidna på sjukhus"
kind = "share"
population = "all_deaths"
numerator = { place_of_death = "hospital" }
direction = "lower_is_better"
breakdowns = ["sex", "age_band"]
"""
    path = tmp_path / "catalogue.toml"
    path.write_text(DEFAULT_PATH.read_text(encoding="utf-8") + extra, encoding="utf-8")
    cat = parse_catalogue(tomllib.loads(path.read_text(encoding="utf-8")), str(path))
    assert "died_in_hospital_share" in cat.indicators

    worker.env = {**worker.env, "PALLIWATCH_CATALOGUE": str(path)}
    worker.restart()
    h = random_history(seed=303, n_surveys=80, as_of=TEST_AS_OF)
    send_history(isolated, h)
    want = oracle(
        [DeathSurvey.model_validate(s) for s in h.admitted],
        [OfficialDeaths.model_validate(o) for o in h.official],
        [UnitEvent.model_validate(u) for u in h.units],
        [Population.model_validate(p) for p in h.population],
        TEST_AS_OF,
        cat,
        record_keys=KEYS,
    )
    new_rows = [k for k in want if k[0] == "died_in_hospital_share"]
    assert {k[3].split(":")[0] for k in new_rows} == {"all", "sex", "age_band"}
    wait_equal(isolated, want, worker)


def test_a_new_worker_group_rebuilds_without_counting_twice(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    """A catalogue change or a new state layout starts a new app id on the same topics: the new
    group rebuilds from the contract topics and must not read the old group's internal topics
    (it once did: after an upgrade every survey counted twice)."""
    h = random_history(seed=404, n_surveys=150, as_of=TEST_AS_OF)
    send_history(isolated, h)
    want = oracle_of(h, TEST_AS_OF)
    wait_equal(isolated, want, worker, timeout=180)
    worker.stop()
    # What an old layout's worker left in its internal topic: a delta positioned in its own
    # scheme (after an upgrade, the new group's positions would not match it).
    first = DeathSurvey.model_validate(h.admitted[0])
    wire = admit(None, 10**12, first, default_catalogue(), KEYS).deltas[-1].to_wire(0)
    producer = make_producer(isolated.settings)
    try:
        producer.send(
            isolated.settings.topic(SCOPE_DELTAS),
            key=first.region_code.encode(),
            value=orjson.dumps({"kind": "survey", "d": [wire], "t": 0.0}),
        )
        producer.flush()
    finally:
        producer.close()
    w = isolated.worker
    next_group = w.replace(app_id=w.app_id + "-next", state_dir=Path(f"{w.state_dir}-next"))
    second = WorkerProcess(child_env(next_group), next_group.state_dir / "worker.log")
    try:
        wait_for(
            # The same web port: the first worker has stopped.
            lambda: metric(isolated.settings, "palliwatch_indicator_rows_written_total") > 0,
            120,
            "the new group to write rows",
            second,
        )
        wait_equal(isolated, want, second, timeout=180)
    finally:
        second.stop()
