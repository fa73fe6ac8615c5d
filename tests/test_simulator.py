"""Unit tests of streams/tooling/simulator.py: the synthetic traffic must honour the wire contracts.

Every record is validated with processors.validation.parse at an explicit `now` (the time the
simulator generated it for), so no result depends on today's date.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.core import month_first_day, month_last_day
from processors.validation import DeadLetter, Reason, parse
from schemas.codes import municipality_in_region, regions
from schemas.identity import luhn_ok
from schemas.models import DeathSurvey, OfficialDeaths
from streams.tooling.simulator import (
    REGISTRATION_WINDOW_DAYS,
    SurveyFactory,
    complete_months_before,
    live_id_prefix,
    official_deaths_for,
    official_deaths_records,
)

FAST = settings(max_examples=200, deadline=None)
SLOWER = settings(max_examples=100, deadline=None)

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
MONTHS = complete_months_before(NOW, 12)
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Seeds below 10**9: the seed is part of survey_id, and a 10-digit seed can itself be shaped like
# a personal identity number (a dead letter identity_number_in_payload, by design).
SEEDS = st.integers(0, 10**9 - 1)


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


def survey_key(s: DeathSurvey) -> bytes:
    return s.survey_id.encode()


def validate(record: dict[str, Any], now: datetime) -> DeathSurvey:
    """The record passes every check parse() makes at ``now``, its key included."""
    key = str(record["survey_id"]).encode()
    result = parse(orjson.dumps(record), DeathSurvey, now, key=key, expected_key=survey_key)
    assert not isinstance(result, DeadLetter), (result, record)
    assert isinstance(result, DeathSurvey)
    return result


def validate_follow_up(record: dict[str, Any]) -> DeathSurvey | None:
    """Validate a follow-up at its own submission time.

    Tolerates only the known simulator bug shown by
    test_follow_ups_of_late_registrations_stay_inside_the_registration_window: a follow-up of a
    registration near the end of the window lands outside it (None is returned then).
    """
    now = ts(record["submitted_at"])
    result = parse(orjson.dumps(record), DeathSurvey, now)
    if isinstance(result, DeadLetter):
        delay = now.date() - date.fromisoformat(record["date_of_death"])
        assert result.reason == Reason.OUTSIDE_REGISTRATION_WINDOW, (result, record)
        assert record["revision"] > 1
        assert delay.days > REGISTRATION_WINDOW_DAYS
        return None
    return validate(record, now)


def validate_any(record: dict[str, Any], now: datetime) -> DeathSurvey | None:
    if record["revision"] == 1:
        return validate(record, now)
    return validate_follow_up(record)


@pytest.fixture(scope="module")
def backfill_records() -> list[dict[str, Any]]:
    return list(SurveyFactory(seed=7).backfill(3000, MONTHS, NOW))


# ---- backfill ------------------------------------------------------------------------------


def test_complete_months_before() -> None:
    assert MONTHS[0] == "2024-03"
    assert MONTHS[-1] == "2025-02"
    assert len(MONTHS) == 12
    assert complete_months_before(datetime(2025, 1, 1, tzinfo=UTC), 2) == ["2024-11", "2024-12"]


def test_backfill_yields_exactly_n_first_revisions(backfill_records: list[dict[str, Any]]) -> None:
    first = [r for r in backfill_records if r["revision"] == 1]
    assert len(first) == 3000
    assert len({r["survey_id"] for r in first}) == 3000
    # One survey per deceased person.
    assert len({r["person_ref"] for r in first}) == 3000
    assert all(r["status"] == "active" for r in first)


def test_every_backfill_record_validates(backfill_records: list[dict[str, Any]]) -> None:
    checked = 0
    for r in backfill_records:
        s = validate_any(r, NOW)
        if s is not None:
            checked += 1
            assert municipality_in_region(s.municipality_code, s.region_code)
    assert checked >= 3000


def test_backfill_records_judged_before_their_months_are_deaths_in_the_future() -> None:
    # Judged the day before the earliest month, every survey's death is in the future.
    out = list(SurveyFactory(seed=9).backfill(50, MONTHS, NOW))
    before = datetime.combine(month_first_day(MONTHS[0]), datetime.min.time(), UTC)
    for r in out:
        d = parse(orjson.dumps(r), DeathSurvey, before - timedelta(days=1))
        assert isinstance(d, DeadLetter) and d.reason == Reason.DEATH_IN_FUTURE


def test_backfill_first_revisions_are_inside_the_months_and_window(
    backfill_records: list[dict[str, Any]],
) -> None:
    lo, hi = month_first_day(MONTHS[0]), month_last_day(MONTHS[-1])
    for r in backfill_records:
        if r["revision"] != 1:
            continue
        death = date.fromisoformat(r["date_of_death"])
        submitted = ts(r["submitted_at"])
        assert lo <= death <= hi
        assert death.strftime("%Y-%m") in MONTHS
        assert submitted <= NOW
        assert submitted.tzinfo is not None and submitted.utcoffset() == timedelta(0)
        assert death <= submitted.date()
        assert submitted - datetime.combine(death, datetime.min.time(), UTC) <= timedelta(
            days=REGISTRATION_WINDOW_DAYS
        )


def test_backfill_follow_ups_are_corrections_or_withdrawals_within_ten_days(
    backfill_records: list[dict[str, Any]],
) -> None:
    originals: dict[str, dict[str, Any]] = {}
    follow_ups = 0
    withdrawals = 0
    for r in backfill_records:
        if r["revision"] == 1:
            originals[r["survey_id"]] = r
            continue
        follow_ups += 1
        assert r["revision"] == 2
        # A follow-up comes right after its original and never before it.
        orig = originals[r["survey_id"]]
        assert backfill_records.index(r) == backfill_records.index(orig) + 1
        assert r["person_ref"] == orig["person_ref"]
        assert (r["region_code"], r["date_of_death"]) == (
            orig["region_code"],
            orig["date_of_death"],
        )
        delay = ts(r["submitted_at"]) - ts(orig["submitted_at"])
        assert timedelta(0) < delay <= timedelta(days=10)
        assert ts(r["submitted_at"]) <= NOW
        if r["status"] == "withdrawn":
            withdrawals += 1
        else:
            assert r["status"] == "active"
    # About 3.5 % of 3000 surveys get a follow-up (fewer near `now`).
    assert 40 <= follow_ups <= 160
    assert withdrawals >= 1


def test_backfill_covers_all_regions_and_months(backfill_records: list[dict[str, Any]]) -> None:
    first = [r for r in backfill_records if r["revision"] == 1]
    assert {r["region_code"] for r in first} == set(regions())
    assert {r["date_of_death"][:7] for r in first} == set(MONTHS)


def test_backfill_is_deterministic_for_a_seed() -> None:
    a = list(SurveyFactory(seed=42).backfill(200, MONTHS, NOW))
    b = list(SurveyFactory(seed=42).backfill(200, MONTHS, NOW))
    c = list(SurveyFactory(seed=43).backfill(200, MONTHS, NOW))
    assert a == b
    assert a != c
    assert {r["person_ref"] for r in a}.isdisjoint({r["person_ref"] for r in c})


def test_live_is_deterministic_for_a_seed() -> None:
    fa, fb = SurveyFactory(seed=5), SurveyFactory(seed=5)
    for k in range(50):
        now = NOW + timedelta(seconds=k)
        sa, sb = fa.live(now), fb.live(now)
        assert sa == sb
        assert fa.follow_up(sa) == fb.follow_up(sb)


def test_person_ref_is_64_hex(backfill_records: list[dict[str, Any]]) -> None:
    for r in backfill_records:
        assert HEX64.match(r["person_ref"]), r["person_ref"]


@SLOWER
@given(
    seed=SEEDS,
    n=st.integers(0, 60),
    months=st.integers(1, 14),
    now=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
)
def test_backfill_property(seed: int, n: int, months: int, now: datetime) -> None:
    month_list = complete_months_before(now, months)
    out = list(SurveyFactory(seed=seed).backfill(n, month_list, now))
    assert sum(r["revision"] == 1 for r in out) == n
    for r in out:
        assert ts(r["submitted_at"]) <= now
        s = validate_any(r, now)
        if s is None:
            continue
        assert s.death_month in month_list
        assert HEX64.match(s.person_ref)
        if s.revision == 1:
            age = s.submitted_at - datetime.combine(s.date_of_death, datetime.min.time(), UTC)
            assert age <= timedelta(days=REGISTRATION_WINDOW_DAYS)


# ---- live ----------------------------------------------------------------------------------


def test_live_surveys_and_follow_ups_validate() -> None:
    f = SurveyFactory(seed=11, id_prefix="live1741944600")
    follow_ups = 0
    for k in range(2000):
        now = NOW + timedelta(seconds=3 * k)
        s = f.live(now)
        parsed = validate(s, now)
        assert parsed.revision == 1
        assert parsed.submitted_at == now
        assert now.date() - parsed.date_of_death <= timedelta(days=REGISTRATION_WINDOW_DAYS)
        assert parsed.date_of_death <= now.date()
        follow = f.follow_up(s)
        if follow is not None:
            follow_ups += 1
            assert ts(follow["submitted_at"]) > parsed.submitted_at
            fp = validate_follow_up(follow)
            if fp is not None:
                assert fp.revision == 2
                assert fp.survey_id == parsed.survey_id
    assert follow_ups > 20


@FAST
@given(
    seed=SEEDS,
    now=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    rolls=st.integers(1, 5),
)
def test_live_property(seed: int, now: datetime, rolls: int) -> None:
    f = SurveyFactory(seed=seed)
    for _ in range(rolls):
        s = f.live(now)
        parsed = validate(s, now)
        assert HEX64.match(parsed.person_ref)
        assert parsed.date_of_death <= now.date()
        assert (now.date() - parsed.date_of_death).days <= REGISTRATION_WINDOW_DAYS
        follow = f.follow_up(s)
        if follow is not None:
            validate_follow_up(follow)


def test_follow_up_never_mutates_the_original() -> None:
    f = SurveyFactory(seed=3)
    for k in range(500):
        s = f.live(NOW + timedelta(minutes=k))
        before = orjson.dumps(s)
        f.follow_up(s)
        assert orjson.dumps(s) == before


# ---- official deaths -----------------------------------------------------------------------


def test_official_deaths_records_cover_21_regions_by_months() -> None:
    records = official_deaths_records(MONTHS, NOW)
    assert len(regions()) == 21
    assert len(records) == 21 * len(MONTHS)
    keys = {(r["region_code"], r["month"]) for r in records}
    assert keys == {(code, m) for code in regions() for m in MONTHS}
    for r in records:
        key = f"{r['region_code']}:{r['month']}".encode()
        o = parse(
            orjson.dumps(r),
            OfficialDeaths,
            NOW,
            key=key,
            expected_key=lambda m: f"{m.region_code}:{m.month}".encode(),
        )
        assert isinstance(o, OfficialDeaths), o
        assert o.deaths == official_deaths_for(r["region_code"], r["month"]) > 0
        assert o.published_at == NOW
        assert r["published_at"].endswith("Z")


def test_official_deaths_follow_2024_deaths_by_season() -> None:
    year = [f"2024-{m:02d}" for m in range(1, 13)]
    for code, region in regions().items():
        total = sum(official_deaths_for(code, m) for m in year)
        # Seasonality averages out over a year (rounding aside).
        assert abs(total - region.deaths_2024) <= 12
        assert official_deaths_for(code, "2024-01") > official_deaths_for(code, "2024-07")


def test_official_deaths_records_published_at_must_be_utc() -> None:
    # A non-UTC publication time is written through as given, and the contract rejects it.
    local = datetime(2025, 3, 14, 10, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    records = official_deaths_records(MONTHS[:1], local)
    assert records[0]["published_at"].endswith("+01:00")
    d = parse(orjson.dumps(records[0]), OfficialDeaths, NOW)
    assert isinstance(d, DeadLetter) and d.reason == Reason.CONTRACT_VIOLATION
    assert "published_at" in d.detail


# ---- known bugs ----------------------------------------------------------------------------


def test_follow_ups_of_late_registrations_stay_inside_the_registration_window() -> None:
    f = SurveyFactory(seed=1)
    death = date(2024, 6, 1)
    submitted = datetime.combine(death, datetime.min.time(), UTC) + timedelta(days=182, hours=12)
    late = None
    for _ in range(2000):
        original = f.survey("09", death, submitted)
        validate(original, submitted)
        follow = f.follow_up(original)
        if follow is not None and ts(follow["submitted_at"]).date() - death > timedelta(days=183):
            late = follow
            break
    assert late is not None, "the simulator produced no late follow-up"
    validate(late, ts(late["submitted_at"]))


def test_backfill_follow_ups_outside_the_window_are_the_only_dead_letters(
    backfill_records: list[dict[str, Any]],
) -> None:
    # In the seed-7 backfill, that bug is the only reason a record fails validation, and rare.
    late = [r for r in backfill_records if r["revision"] > 1 and validate_follow_up(r) is None]
    assert all(r["revision"] == 2 for r in late)
    assert len(late) <= 5


def made_up_epoch() -> int:
    """Epoch seconds 181272121C (June 2027): digits shaped like a coordination number."""
    digit = next(d for d in "0123456789" if luhn_ok("181272121" + d))
    return int("181272121" + digit)


def test_live_survey_ids_are_never_identity_shaped() -> None:
    epoch = made_up_epoch()
    now = datetime.fromtimestamp(epoch, UTC)
    f = SurveyFactory(seed=1, id_prefix=live_id_prefix(epoch))
    validate(f.live(now), now)
