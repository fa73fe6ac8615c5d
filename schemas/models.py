"""pydantic v2 models of the contract topics.

Strict types: a string where an int belongs is a contract violation, not something to coerce.
Unknown extra fields are allowed (a newer minor shape of the same major ``schema_version``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.codes import is_region, municipality_in_region
from schemas.enums import CareSetting, DiagnosisGroup, PlaceOfDeath, PresentAtDeath, Sex, Status

SUPPORTED_SCHEMA_MAJOR = 1
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
_PERSON_REF = re.compile(r"^[0-9a-f]{64}$")


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
        if v.tzinfo is None or v.utcoffset() != timedelta(0):
            raise ValueError("submitted_at must be an RFC 3339 timestamp in UTC")
        return v

    @field_validator("person_ref")
    @classmethod
    def _pseudonym(cls, v: str) -> str:
        if not _PERSON_REF.match(v):
            raise ValueError("person_ref must be 64 lowercase hex characters (a keyed pseudonym)")
        return v

    @model_validator(mode="after")
    def _codes_and_dates(self) -> DeathSurvey:
        if not is_region(self.region_code):
            raise ValueError(f"region_code {self.region_code!r} is not one of the 21 regions")
        if not municipality_in_region(self.municipality_code, self.region_code):
            raise ValueError(
                f"municipality_code {self.municipality_code!r} is not a municipality "
                f"of region {self.region_code}"
            )
        if self.date_of_death > self.submitted_at.date():
            raise ValueError("date_of_death is after submitted_at")
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
        return datetime.fromisoformat(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _region(self) -> OfficialDeaths:
        if not is_region(self.region_code):
            raise ValueError(f"region_code {self.region_code!r} is not one of the 21 regions")
        return self
