"""Enumerations of the wire contracts (domain.md, "Wire contracts")."""

from __future__ import annotations

from typing import Literal

Sex = Literal["female", "male"]
Status = Literal["active", "withdrawn"]
DiagnosisGroup = Literal[
    "cancer", "heart_failure", "copd", "dementia", "stroke", "als_neuro", "kidney_failure", "other"
]
PlaceOfDeath = Literal[
    "own_home",
    "nursing_home",
    "short_term_care",
    "hospital",
    "specialised_palliative_inpatient",
    "other",
]
CareSetting = Literal[
    "specialised_home_care",
    "specialised_inpatient",
    "hospital_ward",
    "nursing_home",
    "municipal_home_care",
    "primary_care",
    "other",
]
PresentAtDeath = Literal["relative", "staff", "both", "none"]

UnitEventKind = Literal["upsert", "closed"]
UnitKind = Literal[
    "specialised_home_care",
    "consult_team",
    "inpatient_hospital",
    "inpatient_non_hospital",
    "outpatient_clinic",
    "on_call_line",
    "general_care",
]
UnitHours = Literal["24_7", "office_hours", "office_hours_weekend"]
Comparator = Literal[">=", "<="]
