"""End to end on the real broker and database: hand-computed surveys in, exact indicators out.

The scenario (all deaths in region 09 Gotland, municipality 0980, unless stated):

  id   month    place / care setting / consult           history
  A1   2025-01  own_home / specialised_home_care / no     -
  A2   2025-01  own_home / specialised_home_care / no     rev 2: hospital / hospital_ward
  A3   2025-01  own_home / municipal_home_care / no       rev 2: consult yes; rev 1 resent (stale)
  A4   2025-01  nursing_home / nursing_home / yes         -
  A5   2025-01  hospital / hospital_ward / no             -
  A6   2025-01  nursing_home / nursing_home / no          -
  A7   2025-01  hospital / hospital_ward / no             -
  A8   2025-01  own_home / municipal_home_care / no       rev 2: withdrawn
  A9   2025-02  spec. inpatient / specialised_inpatient   -
  A10  2025-01  own_home / primary_care / no              phase 2: registered late (Jul 2025)
  A11  2025-01  nursing_home (09, 0980)                   rev 2: moved to region 01 (0114)
  A12  2025-02  own_home / specialised_home_care / no     -
After phase 1 the worker is stopped and restarted and phase 1 is sent again (all stale).
Official deaths: 09/2025-01 = 40; 09/2025-02 = 20, replaced by 24 in phase 2; 01/2025-01 = 100.
One record that is not JSON goes to the dead-letter topic and changes nothing.

Final buckets: 09/Jan registered 8 (A1-A7 minus A8 plus A10, A11 moved away), own home 3
(A1, A3, A10), received 3 (A1, A3, A4). 09/Feb registered 2, own home 1 (A12), received 2.
01/Jan registered 1 (A11), own home 0, received 0.

Rolling 12 months ending 2025-02, region 09: registered 10 / official 64 -> coverage 0.15625;
need 0.25 * 64 = 16; received 5; unmet 11; unmet share 11/16 = 0.6875; home 4/10 = 0.4.
Ending 2025-01, region 09: coverage 8/40 = 0.2; need 10; received 3 -> suppressed (n < 5) with
unmet and unmet share; home 3/8 = 0.375.
Ending 2025-01, region 01: coverage 1/100 = 0.01; need 25; received 0; unmet 25; unmet share 1.0;
home share n = 1 -> suppressed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer

from processors.catalogue import default_catalogue
from schemas.topics import DEAD_LETTER, DEATH_SURVEYS, OFFICIAL_DEATHS
from streams.tooling.producer import make_producer, send_records
from tests.conftest import Isolated, WorkerProcess, wait_for

pytestmark = pytest.mark.integration


def survey(
    sid: str,
    month: str,
    place: str,
    setting: str,
    consult: bool = False,
    revision: int = 1,
    status: str = "active",
    region: str = "09",
    municipality: str = "0980",
    submitted: str | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "survey_id": sid,
        "revision": revision,
        "status": status,
        "submitted_at": submitted or f"{month}-20T10:00:00Z",
        "unit_id": "unit-test-1",
        "region_code": region,
        "municipality_code": municipality,
        "person_ref": hashlib.sha256(f"e2e-{sid}".encode()).hexdigest(),
        "date_of_death": f"{month}-10",
        "sex": "female",
        "age_years": 84,
        "ses_quintile": 3,
        "diagnosis_group": "cancer",
        "expected_death": True,
        "place_of_death": place,
        "care_setting": setting,
        "palliative_consult": consult,
        "measures": {"eol_conversation": True, "pain_assessed": True},
    }


def official(region: str, month: str, deaths: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "region_code": region,
        "month": month,
        "deaths": deaths,
        "source": "e2e test",
        "published_at": "2025-03-05T08:00:00Z",
    }


JAN, FEB = "2025-01", "2025-02"
HOME, NH, HOSP = "own_home", "nursing_home", "hospital"

PHASE_1_SURVEYS = [
    survey("A1", JAN, HOME, "specialised_home_care"),
    survey("A2", JAN, HOME, "specialised_home_care"),
    survey("A3", JAN, HOME, "municipal_home_care"),
    survey("A4", JAN, NH, "nursing_home", consult=True),
    survey("A5", JAN, HOSP, "hospital_ward"),
    survey("A6", JAN, NH, "nursing_home"),
    survey("A7", JAN, HOSP, "hospital_ward"),
    survey("A8", JAN, HOME, "municipal_home_care"),
    survey("A9", FEB, "specialised_palliative_inpatient", "specialised_inpatient"),
    survey("A11", JAN, NH, "nursing_home"),
    survey("A12", FEB, HOME, "specialised_home_care"),
    # corrections, a withdrawal, a move to another region, and a stale resend
    survey("A2", JAN, HOSP, "hospital_ward", revision=2),
    survey("A3", JAN, HOME, "municipal_home_care", consult=True, revision=2),
    survey("A8", JAN, HOME, "municipal_home_care", revision=2, status="withdrawn"),
    survey("A11", JAN, NH, "nursing_home", revision=2, region="01", municipality="0114"),
    survey("A3", JAN, HOME, "municipal_home_care", revision=1),
]
PHASE_1_OFFICIAL = [official("09", JAN, 40), official("09", FEB, 20), official("01", JAN, 100)]
PHASE_2_SURVEYS = [
    survey("A10", JAN, HOME, "primary_care", submitted="2025-07-01T09:00:00Z"),
]
PHASE_2_OFFICIAL = [official("09", FEB, 24)]

# (indicator, region, period_end) -> (value, numerator, denominator, n, suppressed)
Row = tuple[float | None, float | None, float | None, int | None, bool]
EXPECTED: dict[tuple[str, str, str], Row] = {
    ("registry_coverage", "09", "2025-02-28"): (10 / 64, 10, 64, 64, False),
    ("spec_need", "09", "2025-02-28"): (16.0, 16.0, None, None, False),
    ("spec_received", "09", "2025-02-28"): (5.0, 5.0, None, None, False),
    ("spec_unmet", "09", "2025-02-28"): (11.0, 11.0, None, None, False),
    ("spec_unmet_share", "09", "2025-02-28"): (0.6875, 11.0, 16.0, 64, False),
    ("home_death_share", "09", "2025-02-28"): (0.4, 4, 10, 10, False),
    ("registry_coverage", "09", "2025-01-31"): (0.2, 8, 40, 40, False),
    ("spec_need", "09", "2025-01-31"): (10.0, 10.0, None, None, False),
    ("spec_received", "09", "2025-01-31"): (None, None, None, None, True),
    ("spec_unmet", "09", "2025-01-31"): (None, None, None, None, True),
    ("spec_unmet_share", "09", "2025-01-31"): (None, None, None, None, True),
    ("home_death_share", "09", "2025-01-31"): (0.375, 3, 8, 8, False),
    ("registry_coverage", "01", "2025-01-31"): (0.01, 1, 100, 100, False),
    ("spec_need", "01", "2025-01-31"): (25.0, 25.0, None, None, False),
    ("spec_received", "01", "2025-01-31"): (0.0, 0.0, None, None, False),
    ("spec_unmet", "01", "2025-01-31"): (25.0, 25.0, None, None, False),
    ("spec_unmet_share", "01", "2025-01-31"): (1.0, 25.0, 25.0, 100, False),
    ("home_death_share", "01", "2025-01-31"): (None, None, None, None, True),
}
# Before phase 2 (A10 not yet registered, Feb official deaths 20): the values that must change.
PHASE_1_CHECKS: dict[tuple[str, str, str], Row] = {
    ("registry_coverage", "09", "2025-01-31"): (7 / 40, 7, 40, 40, False),
    ("registry_coverage", "09", "2025-02-28"): (9 / 60, 9, 60, 60, False),
}


def fetch(db_url: str) -> dict[tuple[str, str, str], Row]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT indicator_id, scope_code, period_end::text, value, numerator, denominator,
                      n, suppressed
               FROM indicator_values WHERE scope_type = 'region' AND period_type = 'rolling_12m'"""
        ).fetchall()
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5], r[6], r[7]) for r in rows}


def matches(actual: dict[tuple[str, str, str], Row], expected: dict[tuple[str, str, str], Row]):
    for key, want in expected.items():
        got = actual.get(key)
        if got is None:
            return False
        for g, w in zip(got, want, strict=True):
            if isinstance(w, float) and g is not None:
                if abs(g - w) > 1e-12:
                    return False
            elif g != w:
                return False
    return True


def test_worker_writes_exact_indicators_for_a_hand_computed_history(
    isolated: Isolated, worker: WorkerProcess
) -> None:
    s = isolated.settings
    producer = make_producer(s)
    try:
        send_records(producer, s, OFFICIAL_DEATHS, PHASE_1_OFFICIAL)
        send_records(producer, s, DEATH_SURVEYS, PHASE_1_SURVEYS)
        producer.send(s.topic(DEATH_SURVEYS), key=b"broken", value=b"{not json")
        producer.flush()

        wait_for(
            lambda: matches(fetch(s.database_url), PHASE_1_CHECKS),
            timeout_s=120,
            what="phase-1 indicator rows",
            worker=worker,
        )

        # A restart recovers both tables from their changelogs: resending all of phase 1 is
        # then stale and changes nothing (no double counting).
        worker.restart()
        send_records(producer, s, DEATH_SURVEYS, PHASE_1_SURVEYS)
        # Late registration and a replaced official count update windows already written.
        send_records(producer, s, DEATH_SURVEYS, PHASE_2_SURVEYS)
        send_records(producer, s, OFFICIAL_DEATHS, PHASE_2_OFFICIAL)
        wait_for(
            lambda: matches(fetch(s.database_url), EXPECTED),
            timeout_s=60,
            what="final indicator rows",
            worker=worker,
        )
    finally:
        producer.close()

    actual = fetch(s.database_url)
    for key, want in EXPECTED.items():
        got = actual[key]
        assert got[4] == want[4], key
        for g, w in zip(got[:4], want[:4], strict=True):
            assert (g is None and w is None) or g == pytest.approx(w, abs=1e-12), (key, got, want)

    # Every rolling window that holds any of the data exists, up to 11 months after it:
    # 09 has data in Jan and Feb 2025 -> windows ending 2025-01..2026-01 (13);
    # 01 has data in Jan 2025 -> windows ending 2025-01..2025-12 (12); every catalogue
    # indicator with a regional rolling 12 months (the six above and the process indicators).
    per_window = len(
        [i for i in default_catalogue().indicators.values()
         if "rolling_12m" in i.periods and "region" in i.scopes]
    )  # fmt: skip
    assert per_window == 18
    assert len([k for k in actual if k[1] == "09"]) == 13 * per_window
    assert len([k for k in actual if k[1] == "01"]) == 12 * per_window
    assert set(k[1] for k in actual) == {"01", "09"}
    # The window ending 2026-01 holds only February: 2 registered -> home share suppressed.
    assert actual[("home_death_share", "09", "2026-01-31")][4] is True
    assert actual[("registry_coverage", "09", "2026-01-31")][0] == pytest.approx(2 / 24)

    # Suppressed cells carry no counts anywhere in the table.
    for key, (value, num, _den, n, suppressed) in actual.items():
        if suppressed:
            assert value is None and num is None and n is None, key

    # The broken record became exactly one dead letter, with a reason and its source offset.
    consumer = KafkaConsumer(
        s.topic(DEAD_LETTER),
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=None,
    )
    letters = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    assert len(letters) == 1
    assert letters[0]["reason"] == "not_json"
    assert letters[0]["source_topic"] == s.topic(DEATH_SURVEYS)
    assert letters[0]["payload"] == "{not json"
    worker.assert_alive()
