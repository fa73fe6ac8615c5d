"""Randomised registry histories for the streaming-equals-batch tests.

A history holds what the registry would send: surveys with corrections (that may move a survey
to another region, municipality or month), withdrawals and re-registrations, resent records
(duplicates), stale revisions arriving after newer ones, late registrations up to the 183-day
window, official deaths (some replaced by a later count), unit events and population. It also
knows which records the pipeline must admit, so the oracle sees exactly those.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args

from schemas.codes import municipalities_by_region
from schemas.enums import CareSetting, DiagnosisGroup, PlaceOfDeath
from schemas.models import Measures
from streams.tooling.simulator import unit_event_record

# The contract's code lists (one source of truth: schemas/enums.py, schemas/models.py).
MEASURES = tuple(f for f in Measures.model_fields if f != "present_at_death")
PLACES: tuple[str, ...] = get_args(PlaceOfDeath)
SETTINGS: tuple[str, ...] = get_args(CareSetting)
DIAGNOSES: tuple[str, ...] = get_args(DiagnosisGroup)


def _ts(d: date, hour: int = 10) -> str:
    return datetime.combine(d, time(hour, 0), UTC).isoformat().replace("+00:00", "Z")


def survey_head(sid: str, revision: int, submitted: date) -> dict[str, Any]:
    """The fields every generated survey revision opens with."""
    return {
        "schema_version": 1,
        "survey_id": sid,
        "revision": revision,
        "status": "active",
        "submitted_at": _ts(submitted),
    }


def random_answers(
    rng: random.Random, expected_share: float, missing: float, yes: float
) -> tuple[bool, dict[str, Any]]:
    """(expected_death, measures): an expected death answers every measure, each unanswered
    with probability ``missing`` and else yes below ``yes``."""
    expected = rng.random() < expected_share
    measures: dict[str, Any] = {}
    if expected:
        for m in MEASURES:
            r = rng.random()
            measures[m] = None if r < missing else r < yes
        measures["present_at_death"] = rng.choice(["relative", "staff", "both", "none", None])
    return expected, measures


@dataclass
class History:
    surveys: list[dict[str, Any]] = field(default_factory=list)  # arrival order
    admitted: list[dict[str, Any]] = field(default_factory=list)  # what the oracle sees
    official: list[dict[str, Any]] = field(default_factory=list)
    units: list[dict[str, Any]] = field(default_factory=list)
    population: list[dict[str, Any]] = field(default_factory=list)


def random_history(
    seed: int,
    n_surveys: int,
    as_of: date,
    regions: tuple[str, ...] = ("03", "09", "25"),
    months_back: int = 14,
) -> History:
    rng = random.Random(seed)
    h = History()
    munis = {r: municipalities_by_region()[r][:4] for r in regions}

    def body(sid: str, person: str, revision: int, submitted: date, death: date) -> dict[str, Any]:
        region = rng.choice(regions)
        expected, measures = random_answers(rng, 0.7, missing=0.08, yes=0.85)
        return {
            **survey_head(sid, revision, submitted),
            "unit_id": f"unit-{region}-001",
            "region_code": region,
            "municipality_code": rng.choice(munis[region]),
            "person_ref": person,
            "date_of_death": death.isoformat(),
            "sex": rng.choice(["female", "male"]),
            "age_years": rng.choice([4, 15, 30, 64, 65, 72, 79, 80, 88, 101]),
            "ses_quintile": rng.choice([1, 2, 3, 4, 5, None]),
            "diagnosis_group": rng.choice(DIAGNOSES),
            "expected_death": expected,
            "place_of_death": rng.choice(PLACES),
            "care_setting": rng.choice(SETTINGS),
            "palliative_consult": rng.random() < 0.3,
            "measures": measures,
        }

    earliest = as_of - timedelta(days=30 * months_back)
    for i in range(n_surveys):
        sid = f"h{seed}-s{i}"
        person = hashlib.sha256(f"history-{seed}-{i}".encode()).hexdigest()
        death = earliest + timedelta(days=rng.randrange((as_of - earliest).days - 1))
        # Registration delay: mostly weeks, sometimes late (up to the 183-day window).
        delay = min(int(rng.expovariate(1 / 25)), 183, (as_of - death).days - 1)
        if rng.random() < 0.05:
            delay = min(rng.randint(120, 183), (as_of - death).days - 1)
        submitted = death + timedelta(days=max(0, delay))
        rev1 = body(sid, person, 1, submitted, death)
        chain = [rev1]
        roll = rng.random()
        if roll < 0.25:  # a correction within 10 days, perhaps moving region and month
            fixed_at = min(submitted + timedelta(days=rng.randint(0, 9)), as_of - timedelta(days=1))
            moved = death - timedelta(days=rng.randint(1, 40))
            if rng.random() < 0.6 or (fixed_at - moved).days > 190:
                moved = death
            fix = body(sid, person, 2, fixed_at, moved)
            chain.append(fix)
        elif roll < 0.32:  # withdrawn, sometimes re-activated by a later revision
            w = dict(rev1, revision=2, status="withdrawn")
            chain.append(w)
            if rng.random() < 0.4:
                chain.append(dict(rev1, revision=3))
        h.surveys.extend(chain)
        h.admitted.extend(chain)
        # Duplicates and stale revisions: resend an earlier record after the later ones.
        if len(chain) > 1 and rng.random() < 0.4:
            h.surveys.append(dict(chain[0]))
            h.admitted.append(dict(chain[0]))
        if rng.random() < 0.05:
            h.surveys.append(dict(chain[-1]))
            h.admitted.append(dict(chain[-1]))
    # Official deaths per region and month, some replaced later by a revised count.
    month = as_of.replace(day=1)
    months = []
    for _ in range(months_back + 1):
        months.append(month.strftime("%Y-%m"))
        month = (month - timedelta(days=1)).replace(day=1)
    for r in regions:
        for m in months:
            if rng.random() < 0.85:
                h.official.append(_official(r, m, rng.randint(3, 60)))
    for r in regions:
        m = rng.choice(months)
        h.official.append(_official(r, m, rng.randint(3, 60)))  # a later revised count
    # Structure: a handful of units with a change, a closure; population for two years.
    for r in regions:
        seat = munis[r][0]
        h.units.append(_unit(f"hu-{r}-1", r, seat, "inpatient_non_hospital", date(2025, 1, 1),
                             [], beds=rng.randint(2, 20)))  # fmt: skip
        h.units.append(_unit(f"hu-{r}-2", r, seat, "specialised_home_care", date(2025, 3, 1),
                             list(munis[r][:2]), children=rng.random() < 0.5))  # fmt: skip
        hours = rng.choice(["24_7", "office_hours"])
        h.units.append(_unit(f"hu-{r}-3", r, seat, "on_call_line", date(2025, 5, 1),
                             list(munis[r]), hours=hours))  # fmt: skip
        h.units.append(_unit(f"hu-{r}-1", r, seat, "inpatient_non_hospital", date(2026, 2, 1),
                             [], beds=rng.randint(2, 20)))  # fmt: skip
        if rng.random() < 0.5:
            h.units.append(_unit(f"hu-{r}-2", r, seat, "specialised_home_care",
                                 date(2026, 4, 1), [], event="closed"))  # fmt: skip
        for m in municipalities_by_region()[r]:
            for y in (2025, 2026):
                h.population.append(
                    {"schema_version": 1, "municipality_code": m, "year": y,
                     "population": rng.randint(2_000, 90_000)}
                )  # fmt: skip
    return h


def _official(region: str, month: str, deaths: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "region_code": region,
        "month": month,
        "deaths": deaths,
        "source": "test",
        "published_at": "2026-01-01T00:00:00Z",
    }


def _unit(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The simulator's unit event, with a little staff so the per-100 000 rows have values."""
    return unit_event_record(*args, physicians=1.5, nurses=2.0, **kwargs)
