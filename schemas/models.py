"""pydantic v2 models of the contract topics.

Strict types: a string where an int belongs is a contract violation, not something to coerce.
Unknown extra fields are allowed (a newer minor shape of the same major ``schema_version``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from schemas.codes import is_region, municipalities, municipality_in_region
from schemas.enums import (
    CareSetting,
    Comparator,
    DiagnosisGroup,
    PlaceOfDeath,
    PresentAtDeath,
    Sex,
    Status,
    UnitEventKind,
    UnitHours,
    UnitKind,
)

SUPPORTED_SCHEMA_MAJOR = 1
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
_PERSON_REF = re.compile(r"^[0-9a-f]{64}$")


def require_utc(v: datetime, field: str) -> datetime:
    if v.tzinfo is None or v.utcoffset() != timedelta(0):
        raise ValueError(f"{field} must be an RFC 3339 timestamp in UTC")
    return v


def check_region(region_code: str, field: str = "region_code") -> None:
    if not is_region(region_code):
        raise PydanticCustomError(
            "unknown_code",
            "{field} '{code}' is not one of the 21 regions",
            {"field": field, "code": region_code},
        )


def check_municipality(municipality_code: str, field: str = "municipality_code") -> None:
    if municipality_code not in municipalities():
        raise PydanticCustomError(
            "unknown_code",
            "{field} '{code}' is not one of the 290 municipalities",
            {"field": field, "code": municipality_code},
        )


def check_region_and_municipality(region_code: str, municipality_code: str) -> None:
    check_region(region_code)
    check_municipality(municipality_code)
    if not municipality_in_region(municipality_code, region_code):
        raise PydanticCustomError(
            "municipality_outside_region",
            "municipality_code '{m}' belongs to region {actual}, not to region_code {r}",
            {
                "m": municipality_code,
                "actual": municipalities()[municipality_code].region_code,
                "r": region_code,
            },
        )


class _Contract(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    schema_version: int

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, v: int) -> int:
        if v != SUPPORTED_SCHEMA_MAJOR:
            raise ValueError(
                f"schema_version {v} is not supported (this worker reads {SUPPORTED_SCHEMA_MAJOR})"
            )
        return v


class Measures(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    eol_conversation: bool | None = None
    pain_assessed: bool | None = None
    oral_health_assessed: bool | None = None
    prn_opioid: bool | None = None
    prn_anxiolytic: bool | None = None
    pressure_ulcer_free: bool | None = None
    bereavement_followup_offered: bool | None = None
    individual_plan: bool | None = None
    hospital_admission_last_30d: bool | None = None
    present_at_death: PresentAtDeath | None = None


class DeathSurvey(_Contract):
    """`registry.death-surveys.v1`, key ``survey_id``."""

    survey_id: Annotated[str, Field(min_length=1, max_length=64)]
    revision: Annotated[int, Field(ge=1)]
    status: Status
    submitted_at: datetime
    unit_id: Annotated[str, Field(min_length=1, max_length=64)]
    region_code: str
    municipality_code: Annotated[str, Field(pattern=r"^\d{4}$")]
    person_ref: str
    date_of_death: date
    sex: Sex
    age_years: Annotated[int, Field(ge=0, le=120)]
    ses_quintile: Annotated[int, Field(ge=1, le=5)] | None
    diagnosis_group: DiagnosisGroup
    expected_death: bool
    place_of_death: PlaceOfDeath
    care_setting: CareSetting
    palliative_consult: bool
    measures: Measures

    # JSON carries dates and datetimes as strings; strict mode would refuse them otherwise.
    @field_validator("submitted_at", "date_of_death", mode="before")
    @classmethod
    def _iso_strings(cls, v: object) -> object:
        if isinstance(v, str):
            return datetime.fromisoformat(v) if "T" in v else date.fromisoformat(v)
        return v

    @field_validator("submitted_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return require_utc(v, "submitted_at")

    @field_validator("person_ref")
    @classmethod
    def _pseudonym(cls, v: str) -> str:
        if not _PERSON_REF.match(v):
            raise ValueError("person_ref must be 64 lowercase hex characters (a keyed pseudonym)")
        return v

    @model_validator(mode="after")
    def _codes_and_dates(self) -> DeathSurvey:
        check_region_and_municipality(self.region_code, self.municipality_code)
        if self.date_of_death > self.submitted_at.date():
            raise PydanticCustomError(
                "death_after_submission",
                "date_of_death {dod} is after submitted_at {sub}",
                {"dod": self.date_of_death.isoformat(), "sub": self.submitted_at.isoformat()},
            )
        return self

    @property
    def death_month(self) -> str:
        return self.date_of_death.strftime("%Y-%m")


class OfficialDeaths(_Contract):
    """`reference.official-deaths.v1`, key ``region_code:YYYY-MM``; a later record replaces."""

    region_code: str
    month: Annotated[str, Field(pattern=MONTH_PATTERN)]
    deaths: Annotated[int, Field(ge=0)]
    source: str
    published_at: datetime

    @field_validator("published_at", mode="before")
    @classmethod
    def _iso(cls, v: object) -> object:
        return datetime.fromisoformat(v) if isinstance(v, str) and "T" in v else v

    @field_validator("published_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return require_utc(v, "published_at")

    @model_validator(mode="after")
    def _region(self) -> OfficialDeaths:
        check_region(self.region_code)
        return self


class StaffFte(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    specialist_physicians: Annotated[float, Field(ge=0)] = 0.0
    physicians: Annotated[float, Field(ge=0)] = 0.0
    specialist_nurses: Annotated[float, Field(ge=0)] = 0.0
    nurses: Annotated[float, Field(ge=0)] = 0.0
    counsellor: Annotated[float, Field(ge=0)] = 0.0
    occupational_therapist: Annotated[float, Field(ge=0)] = 0.0
    physiotherapist: Annotated[float, Field(ge=0)] = 0.0
    dietitian: Annotated[float, Field(ge=0)] = 0.0


class UnitEvent(_Contract):
    """`registry.unit-events.v1`, key ``unit_id``: a care unit opened or changed, or closed."""

    unit_id: Annotated[str, Field(min_length=1, max_length=64)]
    event: UnitEventKind
    effective_date: date
    region_code: str
    municipality_code: Annotated[str, Field(pattern=r"^\d{4}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: UnitKind
    catchment_municipalities: list[Annotated[str, Field(pattern=r"^\d{4}$")]]
    beds: Annotated[int, Field(ge=0)]
    hours: UnitHours
    accepts_all_diagnoses: bool
    accepts_children: bool
    max_prognosis_months: Annotated[int, Field(ge=0)] | None
    written_mandate: bool
    staff_fte: StaffFte

    @field_validator("effective_date", mode="before")
    @classmethod
    def _iso_date(cls, v: object) -> object:
        return date.fromisoformat(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _codes(self) -> UnitEvent:
        check_region_and_municipality(self.region_code, self.municipality_code)
        for i, code in enumerate(self.catchment_municipalities):
            check_municipality(code, field=f"catchment_municipalities[{i}]")
        return self


class Population(_Contract):
    """`reference.population.v1`, key ``municipality_code:YYYY``."""

    municipality_code: Annotated[str, Field(pattern=r"^\d{4}$")]
    year: Annotated[int, Field(ge=1900, le=2200)]
    population: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _codes(self) -> Population:
        check_municipality(self.municipality_code)
        return self


class Target(_Contract):
    """`reference.targets.v1`, key ``indicator_id:scope``: a target level from valid_from on."""

    indicator_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")]
    scope: str
    comparator: Comparator
    value: float
    warn_value: float | None = None
    valid_from: date
    source: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("valid_from", mode="before")
    @classmethod
    def _iso_date(cls, v: object) -> object:
        return date.fromisoformat(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _scope(self) -> Target:
        if self.scope != "national":
            check_region(self.scope, field="scope")
        return self
