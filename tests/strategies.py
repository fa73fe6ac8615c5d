"""Hypothesis strategies for the engine's property tests (tests/test_engine_properties.py).

Small registry histories: surveys with their revisions (corrections that may move region,
municipality or month, withdrawals, re-activations), official deaths, and the arrival orders and
batchings a broker could deliver them in. Deaths fall in 2026-03..2026-11 (inside the daily
windows still open at AS_OF) and some in 2025; a few "hot" days make cells reach the suppression
limit often.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args

from hypothesis import strategies as st

from schemas.codes import municipalities_by_region
from schemas.enums import CareSetting, DiagnosisGroup, PlaceOfDeath
from schemas.models import DeathSurvey, Measures, OfficialDeaths
from tests.pipeline_helpers import survey

AS_OF = date(2026, 11, 23)
REGIONS = ("03", "09", "25")  # 09 (Gotland) has a single municipality
MUNICIPALITIES = {r: municipalities_by_region()[r][:3] for r in REGIONS}
# The contract's code lists (one source of truth: schemas/enums.py, schemas/models.py).
MEASURES = tuple(f for f in Measures.model_fields if f != "present_at_death")
PLACES: tuple[str, ...] = get_args(PlaceOfDeath)
SETTINGS: tuple[str, ...] = get_args(CareSetting)
DIAGNOSES: tuple[str, ...] = get_args(DiagnosisGroup)
# Month, quarter and year ends, and days near the edges of the open daily windows.
HOT_DAYS = (
    date(2025, 6, 15), date(2025, 12, 31), date(2026, 3, 31), date(2026, 5, 13),
    date(2026, 5, 14), date(2026, 6, 30), date(2026, 9, 1), date(2026, 10, 24),
    date(2026, 11, 20), date(2026, 11, 23),
)  # fmt: skip
OFFICIAL_MONTHS = ("2025-06", "2025-12", "2026-03", "2026-05", "2026-06", "2026-09", "2026-10",
                   "2026-11")  # fmt: skip

death_days = st.one_of(
    st.sampled_from(HOT_DAYS),
    st.dates(date(2026, 3, 1), AS_OF),
    st.dates(date(2026, 3, 1), AS_OF),
    st.dates(date(2025, 1, 1), date(2025, 12, 31)),
)


def ts(d: date, hour: int = 10) -> str:
    return datetime.combine(d, time(hour, 0), UTC).isoformat().replace("+00:00", "Z")


def person_of(sid: str) -> str:
    return hashlib.sha256(f"person-{sid}".encode()).hexdigest()


@st.composite
def bodies(draw: st.DrawFn, day: date | None = None, region: str | None = None) -> dict[str, Any]:
    """The fields of one survey revision that decide where and what it counts."""
    region = region or draw(st.sampled_from(REGIONS))
    death = day or draw(death_days)
    delay = draw(st.one_of(st.integers(0, 40), st.integers(0, 183)))
    submitted = min(death + timedelta(days=delay), AS_OF)
    expected = draw(st.booleans())
    measures: dict[str, Any] = {}
    if expected:
        for m in MEASURES:
            measures[m] = draw(st.sampled_from([True, False, None]))
        measures["present_at_death"] = draw(
            st.sampled_from(["relative", "staff", "both", "none", None])
        )
    return {
        "region_code": region,
        "municipality_code": draw(st.sampled_from(MUNICIPALITIES[region])),
        "unit_id": f"unit-{region}-001",
        "date_of_death": death.isoformat(),
        "submitted_at": ts(submitted),
        "sex": draw(st.sampled_from(["female", "male"])),
        "age_years": draw(st.sampled_from([4, 30, 64, 65, 79, 80, 95])),
        "ses_quintile": draw(st.sampled_from([1, 2, 3, 4, 5, None])),
        "diagnosis_group": draw(st.sampled_from(DIAGNOSES)),
        "expected_death": expected,
        "place_of_death": draw(st.sampled_from(PLACES)),
        "care_setting": draw(st.sampled_from(SETTINGS)),
        "palliative_consult": draw(st.booleans()),
        "measures": measures,
    }


def make_survey(
    sid: str, revision: int, body: dict[str, Any], status: str = "active"
) -> DeathSurvey:
    return DeathSurvey.model_validate(survey(sid, person_of(sid), revision, status, **body))


def later(body: dict[str, Any], prev_submitted: str, days: int) -> dict[str, Any]:
    """``body`` submitted ``days`` after ``prev_submitted`` (never before its death, nor after
    AS_OF)."""
    prev = date.fromisoformat(prev_submitted[:10])
    death = date.fromisoformat(body["date_of_death"])
    return {**body, "submitted_at": ts(min(max(prev, death) + timedelta(days=days), AS_OF))}


@st.composite
def survey_histories(
    draw: st.DrawFn, sid: str, max_followups: int = 2, kinds: Sequence[str] | None = None
) -> list[DeathSurvey]:
    """One survey's revisions in increasing revision order: a first registration, then
    corrections (any field may change, also region, municipality and month), withdrawals and
    re-activations."""
    kinds = kinds or ("correct", "withdraw", "reactivate")
    body = draw(bodies())
    revision = draw(st.integers(1, 2))
    out = [make_survey(sid, revision, body)]
    status = "active"
    for _ in range(draw(st.integers(0, max_followups))):
        revision += draw(st.integers(1, 2))
        kind = draw(st.sampled_from(kinds))
        gap = draw(st.integers(0, 9))
        if kind == "correct":
            body = later(draw(bodies()), body["submitted_at"], gap)
            status = "active"
        elif kind == "withdraw":
            body = later(body, body["submitted_at"], gap)
            status = "withdrawn"
        else:
            body = later(body, body["submitted_at"], gap)
            status = "active"
        out.append(make_survey(sid, revision, body, status))
    return out


@st.composite
def many_histories(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 12, prefix: str = "s", **kw: Any
) -> list[list[DeathSurvey]]:
    n = draw(st.integers(min_size, max_size))
    return [draw(survey_histories(f"{prefix}{i}", **kw)) for i in range(n)]


@st.composite
def officials(draw: st.DrawFn, max_size: int = 6) -> list[OfficialDeaths]:
    """Official death counts, some (region, month) counted twice (the later record wins)."""
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(REGIONS), st.sampled_from(OFFICIAL_MONTHS),
                      st.integers(0, 40)),
            max_size=max_size,
        )
    )  # fmt: skip
    return [
        OfficialDeaths.model_validate({
            "schema_version": 1, "region_code": r, "month": m, "deaths": d, "source": "test",
            "published_at": "2026-11-01T00:00:00Z",
        })
        for r, m, d in rows
    ]  # fmt: skip


@st.composite
def interleavings(draw: st.DrawFn, histories: list[list[DeathSurvey]]) -> list[DeathSurvey]:
    """An arrival order of all revisions: surveys interleaved at random, each survey's own
    revisions kept in order."""
    slots = [i for i, h in enumerate(histories) for _ in h]
    order = draw(st.permutations(slots))
    nxt = [0] * len(histories)
    out = []
    for i in order:
        out.append(histories[i][nxt[i]])
        nxt[i] += 1
    return out


@st.composite
def batchings(draw: st.DrawFn, records: list[Any]) -> list[tuple[list[Any], int]]:
    """The records split into batches at random points, each with a number of its last records
    redelivered (as after a crash that lost the commit)."""
    if not records:
        return []
    cuts = sorted(
        draw(st.sets(st.integers(1, max(1, len(records) - 1)), max_size=4))
        if len(records) > 1
        else set()
    )
    bounds = [0, *cuts, len(records)]
    out = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        if a < b:
            batch = records[a:b]
            out.append((batch, draw(st.integers(0, min(3, len(batch))))))
    return out


@contextmanager
def default_recursion_limit() -> Iterator[None]:
    """Python's default recursion limit inside a hypothesis test: @given raises the limit, which
    once hid a RecursionError from "parse never raises"."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
