"""Realistic synthetic registry traffic: death surveys, corrections and official deaths.

The generator is deterministic for a seed and touches no network; `produce_*` send its output.
Rates follow regions_2024.csv (deaths per region); each region gets its own registry coverage
(45-80 % of deaths), registration delay is log-normal (median about three weeks, capped at the
183-day registration window), about 3 % of surveys are corrected within 10 days and 0.5 % are
withdrawn. No real person is represented: person_ref is an HMAC of a synthetic counter.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args

from processors.catalogue import default_catalogue
from processors.core import add_months, month_first_day, month_last_day
from schemas.codes import municipalities_by_region, regions
from schemas.enums import DiagnosisGroup, PlaceOfDeath

REGISTRATION_WINDOW_DAYS = default_catalogue().registration_window_days
CORRECTION_SHARE = 0.03
WITHDRAWAL_SHARE = 0.005

PLACES: tuple[str, ...] = get_args(PlaceOfDeath)
PLACE_WEIGHTS = (0.19, 0.38, 0.05, 0.31, 0.05, 0.02)
DIAGNOSES: tuple[str, ...] = get_args(DiagnosisGroup)
DIAGNOSIS_WEIGHTS = (0.34, 0.14, 0.07, 0.16, 0.08, 0.02, 0.03, 0.16)
# Care setting during the last week, conditioned on place of death.
SETTING_BY_PLACE: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "own_home": (
        ("specialised_home_care", "municipal_home_care", "primary_care", "other"),
        (0.55, 0.30, 0.12, 0.03),
    ),
    "nursing_home": (("nursing_home", "specialised_home_care", "other"), (0.92, 0.05, 0.03)),
    "short_term_care": (("nursing_home", "municipal_home_care", "other"), (0.8, 0.15, 0.05)),
    "hospital": (("hospital_ward", "specialised_inpatient", "other"), (0.9, 0.07, 0.03)),
    "specialised_palliative_inpatient": (("specialised_inpatient",), (1.0,)),
    "other": (("other", "primary_care"), (0.7, 0.3)),
}
MEASURE_RATES = {
    "eol_conversation": 0.82,
    "pain_assessed": 0.72,
    "oral_health_assessed": 0.66,
    "prn_opioid": 0.96,
    "prn_anxiolytic": 0.93,
    "pressure_ulcer_free": 0.88,
    "bereavement_followup_offered": 0.6,
    "individual_plan": 0.5,
    "hospital_admission_last_30d": 0.35,
}


def live_id_prefix(epoch_seconds: float) -> str:
    """Survey-id prefix of one live run. Hex, because ten decimal digits of a clock can be
    shaped like a personal identity number and would dead-letter the whole run."""
    return f"live{int(epoch_seconds):x}"


def seasonal_factor(month: str) -> float:
    """More deaths in winter than in summer (about +-12 %)."""
    m = int(month[5:7])
    return 1.0 + 0.12 * math.cos(2 * math.pi * (m - 1) / 12)


def official_deaths_for(region_code: str, month: str) -> int:
    """Simulated official deaths: the region's 2024 deaths spread by season, deterministic."""
    base = regions()[region_code].deaths_2024 / 12
    return round(base * seasonal_factor(month))


@dataclass
class SurveyFactory:
    seed: int = 1
    id_prefix: str = "sim"
    rng: random.Random = field(init=False)
    _counter: int = field(default=0, init=False)
    coverage: dict[str, float] = field(init=False)
    _municipalities: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        shape = random.Random(12345)  # region coverage and municipality sizes: same every run
        self.coverage = {code: shape.uniform(0.45, 0.8) for code in regions()}
        self._municipalities = {}
        for code, munis in municipalities_by_region().items():
            weights = tuple(shape.lognormvariate(0, 1.0) for _ in munis)
            self._municipalities[code] = (munis, weights)
        self._key = hashlib.sha256(f"palliwatch-sim-{self.seed}".encode()).digest()

    # -- one survey --------------------------------------------------------------------------

    def registration_delay(self) -> timedelta:
        days = min(self.rng.lognormvariate(math.log(21), 0.9), REGISTRATION_WINDOW_DAYS - 1)
        return timedelta(days=days)

    def _person_ref(self, n: int) -> str:
        return hmac.new(self._key, f"{self.id_prefix}-{n}".encode(), hashlib.sha256).hexdigest()

    def survey(self, region: str, date_of_death: date, submitted_at: datetime) -> dict[str, Any]:
        rng = self.rng
        self._counter += 1
        munis, weights = self._municipalities[region]
        place = rng.choices(PLACES, PLACE_WEIGHTS)[0]
        settings_, setting_weights = SETTING_BY_PLACE[place]
        setting = rng.choices(settings_, setting_weights)[0]
        diagnosis = rng.choices(DIAGNOSES, DIAGNOSIS_WEIGHTS)[0]
        expected = rng.random() < 0.82
        age = min(120, max(0, int(rng.gauss(82, 11))))
        measures: dict[str, Any] = {}
        for name, rate in MEASURE_RATES.items():
            measures[name] = (rng.random() < rate) if expected else None
        measures["present_at_death"] = (
            rng.choices(("relative", "staff", "both", "none"), (0.45, 0.2, 0.2, 0.15))[0]
            if expected
            else None
        )
        return {
            "schema_version": 1,
            "survey_id": f"{self.id_prefix}-{self.seed}-{self._counter:09d}",
            "revision": 1,
            "status": "active",
            "submitted_at": submitted_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "unit_id": f"unit-{region}-{rng.randrange(1, 40):03d}",
            "region_code": region,
            "municipality_code": rng.choices(munis, weights)[0],
            "person_ref": self._person_ref(self._counter),
            "date_of_death": date_of_death.isoformat(),
            "sex": rng.choice(("female", "male")),
            "age_years": age,
            "ses_quintile": rng.choice((1, 2, 3, 4, 5, None)),
            "diagnosis_group": diagnosis,
            "expected_death": expected,
            "place_of_death": place,
            "care_setting": setting,
            "palliative_consult": setting not in ("specialised_home_care", "specialised_inpatient")
            and rng.random() < 0.12,
            "measures": measures,
        }

    def follow_up(self, survey: dict[str, Any]) -> dict[str, Any] | None:
        """A correction (new revision) or withdrawal of ``survey``, or None for most surveys."""
        roll = self.rng.random()
        if roll >= CORRECTION_SHARE + WITHDRAWAL_SHARE:
            return None
        submitted = datetime.fromisoformat(survey["submitted_at"])
        revised = dict(survey)
        revised["revision"] = survey["revision"] + 1
        revised["submitted_at"] = (
            (submitted + timedelta(days=self.rng.uniform(0.1, 10)))
            .isoformat()
            .replace("+00:00", "Z")
        )
        if roll < WITHDRAWAL_SHARE:
            revised["status"] = "withdrawn"
        else:
            revised["place_of_death"] = self.rng.choices(PLACES, PLACE_WEIGHTS)[0]
            settings_, weights = SETTING_BY_PLACE[revised["place_of_death"]]
            revised["care_setting"] = self.rng.choices(settings_, weights)[0]
        return revised

    # -- many surveys ------------------------------------------------------------------------

    def backfill(self, n: int, months: list[str], now: datetime) -> Iterator[dict[str, Any]]:
        """``n`` surveys (plus their follow-ups) with deaths in ``months``, registered by ``now``.

        Recent months come out less complete than old ones, as in the real registry, because
        a survey whose registration would fall after ``now`` is not yet in.
        """
        cells = [(r, m) for r in regions() for m in months]
        weights = [official_deaths_for(r, m) * self.coverage[r] for r, m in cells]
        produced = 0
        while produced < n:
            region, month = self.rng.choices(cells, weights)[0]
            first, last = month_first_day(month), month_last_day(month)
            death = first + timedelta(days=self.rng.randrange((last - first).days + 1))
            death_at = datetime.combine(death, time(12), UTC)
            submitted = death_at + self.registration_delay()
            if submitted > now:
                continue
            survey = self.survey(region, death, submitted)
            produced += 1
            yield survey
            follow = self.follow_up(survey)
            if follow is not None and datetime.fromisoformat(follow["submitted_at"]) <= now:
                yield follow

    def live(self, now: datetime) -> dict[str, Any]:
        """One survey submitted ``now`` for a death up to 183 days earlier."""
        region = self.rng.choices(
            list(regions()), [r.deaths_2024 * self.coverage[r.code] for r in regions().values()]
        )[0]
        death = (now.astimezone(UTC) - self.registration_delay()).date()
        return self.survey(region, death, now)


def official_deaths_records(months: list[str], published_at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "schema_version": 1,
            "region_code": r,
            "month": m,
            "deaths": official_deaths_for(r, m),
            "source": "palliwatch simulator (2024 deaths by season)",
            "published_at": published_at.isoformat().replace("+00:00", "Z"),
        }
        for r in regions()
        for m in months
    ]


def complete_months_before(now: datetime, count: int) -> list[str]:
    """The ``count`` calendar months before ``now``'s month, oldest first."""
    current = now.strftime("%Y-%m")
    return [add_months(current, -k) for k in range(count, 0, -1)]


# ---- structure: units and population ------------------------------------------------------

STRUCTURE_START = date(2024, 1, 1)


def population_records(years: list[int], seed: int = 7) -> list[dict[str, Any]]:
    """Residents per municipality: each region's 2024 population split over its
    municipalities (deterministic weights), growing 0.4 % a year."""
    rng = random.Random(seed)
    out = []
    for code, region in regions().items():
        munis = municipalities_by_region()[code]
        weights = [rng.paretovariate(1.3) for _ in munis]
        total = sum(weights)
        for m, w in zip(munis, weights, strict=True):
            base = region.population_2024 * w / total
            for y in years:
                out.append(
                    {
                        "schema_version": 1,
                        "municipality_code": m,
                        "year": y,
                        "population": round(base * 1.004 ** (y - 2024)),
                    }
                )
    return out


def unit_event_record(
    unit_id: str,
    region: str,
    municipality: str,
    kind: str,
    effective: date,
    catchment: list[str],
    *,
    event: str = "upsert",
    beds: int = 0,
    hours: str = "office_hours",
    all_diagnoses: bool = True,
    children: bool = True,
    physicians: float = 0.0,
    nurses: float = 0.0,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "unit_id": unit_id,
        "event": event,
        "effective_date": effective.isoformat(),
        "region_code": region,
        "municipality_code": municipality,
        "name": f"{regions()[region].name}, {kind.replace('_', ' ')} {unit_id[-2:]}",
        "kind": kind,
        "catchment_municipalities": catchment,
        "beds": beds,
        "hours": hours,
        "accepts_all_diagnoses": all_diagnoses,
        "accepts_children": children,
        "max_prognosis_months": None,
        "written_mandate": True,
        "staff_fte": {
            "specialist_physicians": physicians,
            "physicians": round(physicians * 1.5, 1),
            "specialist_nurses": nurses,
            "nurses": round(nurses * 3, 1),
            "counsellor": 1.0,
            "occupational_therapist": 0.5,
            "physiotherapist": 0.5,
            "dietitian": 0.2,
        },
    }


def unit_events_records(seed: int = 5, start: date = STRUCTURE_START) -> list[dict[str, Any]]:
    """Specialised palliative units per region, with white spots and changes over time:
    inpatient beds at 4-11 per 100 000, home care that leaves some municipalities out or
    turns children away, on-call lines that are not always 24/7, a closure and an opening."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for code, region in regions().items():
        munis = list(municipalities_by_region()[code])
        per_100k = region.population_2024 / 100_000
        seat = munis[0]
        beds = max(2, round(per_100k * rng.uniform(4, 11)))
        n_inpatient = 1 if beds < 15 else 2
        for k in range(n_inpatient):
            out.append(
                unit_event_record(
                    f"pal-{code}-1{k}", code, seat,
                    "inpatient_hospital" if k == 0 else "inpatient_non_hospital",
                    start, [], beds=beds // n_inpatient, hours="24_7",
                    physicians=round(per_100k * rng.uniform(0.8, 2.5), 1),
                    nurses=round(per_100k * rng.uniform(2, 5), 1),
                )
            )  # fmt: skip
        covered = [m for m in munis if rng.random() > 0.12] or [seat]
        out.append(
            unit_event_record(
                f"pal-{code}-20", code, seat, "specialised_home_care", start, covered,
                children=rng.random() > 0.2,
                physicians=round(per_100k * rng.uniform(0.5, 2.0), 1),
                nurses=round(per_100k * rng.uniform(1, 4), 1),
            )
        )  # fmt: skip
        out.append(
            unit_event_record(
                f"pal-{code}-30", code, seat, "consult_team", start, munis,
                all_diagnoses=rng.random() > 0.25,
                physicians=round(per_100k * rng.uniform(0.2, 0.8), 1),
                nurses=round(per_100k * rng.uniform(0.5, 1.5), 1),
            )
        )  # fmt: skip
        if rng.random() < 0.5:
            out.append(
                unit_event_record(f"pal-{code}-40", code, seat, "outpatient_clinic", start, munis)
            )
        hours = "24_7" if rng.random() < 0.6 else "office_hours_weekend"
        out.append(
            unit_event_record(
                f"pal-{code}-50", code, seat, "on_call_line", start, munis, hours=hours
            )
        )
    # Changes over time: one region's outpatient clinic closes, another region opens a 24/7
    # on-call line.
    r12, r25 = municipalities_by_region()["12"], municipalities_by_region()["25"]
    out.append(
        unit_event_record("pal-12-40", "12", r12[0], "outpatient_clinic", date(2025, 6, 1),
                          list(r12), event="closed")
    )  # fmt: skip
    out.append(
        unit_event_record("pal-25-51", "25", r25[0], "on_call_line", date(2026, 2, 1),
                          list(r25), hours="24_7")
    )  # fmt: skip
    return out
