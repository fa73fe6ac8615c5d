"""The one topic catalogue: names, keys, partitions, retention and compaction.

Topics are created explicitly from this list (`palliwatch topics create`, and by the demo and
the tests); the broker's auto-creation is switched off so a typo cannot invent a topic. Faust's
own changelog and repartition topics are derived from the app id and are not listed here.

Co-partitioning: every topic a table is fed from has the same partition count, because Faust
restores a table partition together with the source partition of the same number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from schemas.models import DeathSurvey, OfficialDeaths, Population, Target, UnitEvent

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    description: str
    compacted: bool
    retention_ms: int = -1  # -1: keep forever (compacted topics keep the latest per key)
    partitions: int | None = None  # None: the deployment's PALLIWATCH_PARTITIONS
    # Internal to one worker group: its records carry positions in that group's state, so each
    # PALLIWATCH_APP_ID has its own (Settings.topic). A group reading another's would count
    # every survey again.
    per_app: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)
    # Contract topics: the pydantic model of the value and the fields the key is made of.
    model: type[BaseModel] | None = None
    key_fields: tuple[str, ...] = ()

    def key_for(self, value: BaseModel | dict[str, Any]) -> bytes:
        """The record key the contract derives from a value (fields joined with ':')."""
        if not self.key_fields:
            raise ValueError(f"{self.name} has no key rule")
        get = value.get if isinstance(value, dict) else lambda f: getattr(value, f)
        return ":".join(str(get(f)) for f in self.key_fields).encode()

    @property
    def valid(self) -> TopicSpec:
        """The topic that carries this contract topic's validated records."""
        return VALID_TOPICS[self.name]

    def config(self) -> dict[str, str]:
        cfg = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
        }
        cfg.update(self.extra_config)
        return cfg


DEATH_SURVEYS = TopicSpec(
    "registry.death-surveys.v1",
    key="survey_id",
    description="Death surveys from the registry, one key per survey; higher revision supersedes.",
    compacted=True,
    model=DeathSurvey,
    key_fields=("survey_id",),
)
UNIT_EVENTS = TopicSpec(
    "registry.unit-events.v1",
    key="unit_id",
    description="Care-unit upserts and closures (beds, staff, catchment, availability).",
    compacted=True,
    model=UnitEvent,
    key_fields=("unit_id",),
)
OFFICIAL_DEATHS = TopicSpec(
    "reference.official-deaths.v1",
    key="region_code:YYYY-MM",
    description="Official monthly deaths per region of residence; a later record replaces.",
    compacted=True,
    model=OfficialDeaths,
    key_fields=("region_code", "month"),
)
POPULATION = TopicSpec(
    "reference.population.v1",
    key="municipality_code:YYYY",
    description="Population per municipality and year.",
    compacted=True,
    model=Population,
    key_fields=("municipality_code", "year"),
)
TARGETS = TopicSpec(
    "reference.targets.v1",
    key="indicator_id:scope",
    description="Indicator target levels with valid_from and source.",
    compacted=True,
    model=Target,
    key_fields=("indicator_id", "scope"),
)
SCOPE_DELTAS = TopicSpec(
    "palliwatch.scope-deltas.v1",
    key="scope (region code, or SE for the nation)",
    description=(
        "Internal: signed survey contributions, official deaths, unit events and population "
        "re-keyed by the scope that aggregates them."
    ),
    compacted=False,
    retention_ms=7 * DAY_MS,
    per_app=True,
)
DEAD_LETTER = TopicSpec(
    "palliwatch.dead-letter.v1",
    key="source topic:partition:offset",
    description="Records that broke a contract, with a reason and a redacted payload.",
    compacted=False,
    retention_ms=90 * DAY_MS,
)
INDICATORS = TopicSpec(
    "palliwatch.indicators.v1",
    key="indicator_id:scope:period",
    description="Published indicator values (suppressed cells carry no counts).",
    compacted=True,
)

CONTRACT_TOPICS: tuple[TopicSpec, ...] = (
    DEATH_SURVEYS,
    UNIT_EVENTS,
    OFFICIAL_DEATHS,
    POPULATION,
    TARGETS,
)


def _valid_twin(spec: TopicSpec) -> TopicSpec:
    return TopicSpec(
        f"{spec.name}.valid",
        key=spec.key,
        description=f"Validated records of {spec.name} (same key and value).",
        compacted=True,
        model=spec.model,
        key_fields=spec.key_fields,
    )


VALID_TOPICS: dict[str, TopicSpec] = {t.name: _valid_twin(t) for t in CONTRACT_TOPICS}

# Internal topics carry batch messages; one may hold a single large record (a valid survey may be
# up to 1 MB, more once escaped inside the batch), so they accept messages of up to 8 MB.
INTERNAL_MESSAGE_BYTES = 8 * 1024 * 1024

SURVEYS_BY_PERSON = TopicSpec(
    "palliwatch.surveys-by-person.v1",
    key="person_ref",
    description=(
        "Internal: screened surveys sent to their person_ref's partition for the "
        "one-survey-per-person check, many to a message, each with its source "
        "topic/partition/offset."
    ),
    compacted=False,
    retention_ms=7 * DAY_MS,
    extra_config={"max.message.bytes": str(INTERNAL_MESSAGE_BYTES)},
    per_app=True,
)

CATALOGUE: tuple[TopicSpec, ...] = (
    *CONTRACT_TOPICS,
    *VALID_TOPICS.values(),
    SURVEYS_BY_PERSON,
    SCOPE_DELTAS,
    DEAD_LETTER,
    INDICATORS,
)


def by_name(name: str) -> TopicSpec:
    for t in CATALOGUE:
        if t.name == name:
            return t
    raise KeyError(f"{name!r} is not in the topic catalogue")
