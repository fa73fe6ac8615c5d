"""One Grafana organisation per audience (schemas.audiences), each with one PostgreSQL datasource
that logs in as that audience's role.

Open-source Grafana has no datasource permissions: every member of an organisation can query
every datasource of it (through any panel, or /api/ds/query directly). So the audiences are
separated by organisation, and what a datasource may read is enforced by PostgreSQL (the role's
grants and row-level security), never by Grafana folders:

- public (org 1, where anonymous viewers and new users land): role palliwatch_reader, schema
  ``published`` (perturbed counts, no daily rolling windows, no nowcast, no alert views);
- national (the registry operator): role palliwatch_national, schema ``exact``, every dashboard,
  the Prometheus datasource, the operations dashboard and every alert rule;
- one per region: role palliwatch_region_<code>, schema ``exact`` (row-level security keeps it
  to the region and its municipalities), the region's own drill-down and structure dashboards.

Organisation ids are fixed for file provisioning (Grafana's provisioning files name orgs by id):
public 1, national 2, then the regions in code order. grafana/bootstrap/create_orgs.sh creates
them in that order on a new Grafana (deploy/compose.yaml); `palliwatch grafana push` finds them by
name instead and creates the missing ones, so it works on a Grafana whose ids differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

from schemas import audiences
from schemas.audiences import Audience

from .panels import JSON, PG_TYPE

# Reference views: the same for every audience (no counts of people), always read from
# `published`: the code lists and definitions, the structure (units, white spots), and the
# functions that judge a value against the target in force. Everything else is a figure and is
# read from the audience's own schema.
REFERENCE_VIEWS = frozenset(
    {"regions", "municipalities", "indicators", "targets_history", "official_deaths"}
    | {"unit_state", "white_spots"}
    | {"target_for", "indicator_status"}
)
# Figures present in both layers (perturbed in `published`, exact in `exact`).
FIGURE_VIEWS = frozenset(
    {
        "indicator_series",
        "indicator_latest",
        "region_series",
        "breakdowns",
        "municipality_latest",
        "survey_arrivals_daily",
    }
)
# Only in the exact layer.
EXACT_ONLY_VIEWS = frozenset(
    {
        "alert_state",
        "alert_below_target",
        "alert_structure",
        "alert_home_death_change",
        "survey_silence",
    }
)

PROM_UID = "palliwatch-prom"
DB_ENV = "PALLIWATCH_GRAFANA_DB_"


@dataclass(frozen=True)
class Org(Audience):
    """An audience's Grafana organisation: the audience, and the id file provisioning uses."""

    org_id: int

    @property
    def audience(self) -> Audience:
        return Audience(self.key, self.role, self.schema, self.region, self.title)

    @property
    def name(self) -> str:
        return self.title

    @property
    def national(self) -> bool:
        """The operator's organisation: Prometheus, operations dashboard, alert rules."""
        return self.key == audiences.national().key

    @property
    def datasource_uid(self) -> str:
        # A uid of its own per organisation: a dashboard placed in the wrong organisation finds
        # no datasource instead of silently querying that organisation's.
        return f"palliwatch-pg-{self.key}"

    @property
    def datasource_name(self) -> str:
        return f"palliwatch {self.key}"

    @property
    def datasource(self) -> JSON:
        return {"type": PG_TYPE, "uid": self.datasource_uid}

    @property
    def password_env(self) -> str:
        """The environment variable holding the datasource role's password."""
        return f"{DB_ENV}PASSWORD_{self.key.upper().replace('-', '_')}"

    def rel(self, view: str) -> str:
        """The schema-qualified name of a view (or function) as this organisation reads it."""
        if view in REFERENCE_VIEWS:
            return f"{audiences.PUBLIC_SCHEMA}.{view}"
        if view in FIGURE_VIEWS:
            return f"{self.schema}.{view}"
        if view in EXACT_ONLY_VIEWS:
            if not self.exact:
                raise ValueError(f"{view} is not in the public layer ({self.key})")
            return f"{audiences.EXACT_SCHEMA}.{view}"
        raise ValueError(f"unknown view {view!r}")

    def dashboards(self) -> tuple[str, ...]:
        """File stems of this organisation's dashboards (grafana.dashboards builders)."""
        if self.national:
            return ("overview", "region", "structure", "operations")
        if self.region is not None:
            return ("region", "structure")
        return ("overview", "region", "structure")


@cache
def orgs() -> tuple[Org, ...]:
    """Every organisation in id order: public 1, national 2, the regions 3...."""
    found = audiences.all_audiences()
    public_key = audiences.public().key
    ordered = [a for a in found if a.key == public_key] + [a for a in found if a.key != public_key]
    return tuple(Org(**asdict(a), org_id=i) for i, a in enumerate(ordered, start=1))


def by_key(key: str) -> Org:
    for org in orgs():
        if org.key == key:
            return org
    raise KeyError(key)


def public() -> Org:
    return by_key(audiences.public().key)


def national() -> Org:
    return by_key(audiences.national().key)


def regional(code: str) -> Org:
    return by_key(audiences.regional(code).key)
