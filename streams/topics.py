"""The one topic catalogue: names, keys, partitions, retention and compaction.

Topics are created explicitly from this list (`palliwatch topics create`, and by the demo and
the tests); the broker's auto-creation is switched off so a typo cannot invent a topic. Faust's
own changelog and repartition topics are derived from the app id and are not listed here.

Co-partitioning: every topic a table is fed from has the same partition count, because Faust
restores a table partition together with the source partition of the same number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    description: str
    compacted: bool
    retention_ms: int = -1  # -1: keep forever (compacted topics keep the latest per key)
    partitions: int | None = None  # None: the deployment's PALLIWATCH_PARTITIONS
    extra_config: dict[str, str] = field(default_factory=dict)

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
)
UNIT_EVENTS = TopicSpec(
    "registry.unit-events.v1",
    key="unit_id",
    description="Care-unit upserts and closures (beds, staff, catchment, availability).",
    compacted=True,
)
OFFICIAL_DEATHS = TopicSpec(
    "reference.official-deaths.v1",
    key="region_code:YYYY-MM",
    description="Official monthly deaths per region of residence; a later record replaces.",
    compacted=True,
)
POPULATION = TopicSpec(
    "reference.population.v1",
    key="municipality_code:YYYY",
    description="Population per municipality and year.",
    compacted=True,
)
TARGETS = TopicSpec(
    "reference.targets.v1",
    key="indicator_id:scope",
    description="Indicator target levels with valid_from and source.",
    compacted=True,
)
REGION_DELTAS = TopicSpec(
    "palliwatch.region-deltas.v1",
    key="region_code",
    description="Internal: signed survey contributions and official deaths re-keyed by region.",
    compacted=False,
    retention_ms=7 * DAY_MS,
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

CATALOGUE: tuple[TopicSpec, ...] = (
    DEATH_SURVEYS,
    UNIT_EVENTS,
    OFFICIAL_DEATHS,
    POPULATION,
    TARGETS,
    REGION_DELTAS,
    DEAD_LETTER,
    INDICATORS,
)


def by_name(name: str) -> TopicSpec:
    for t in CATALOGUE:
        if t.name == name:
            return t
    raise KeyError(f"{name!r} is not in the topic catalogue")
