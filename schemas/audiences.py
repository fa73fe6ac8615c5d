"""Who reads what: the audiences of the published figures and their PostgreSQL roles.

The one list of reader roles. The migrations grant and police them (row-level security by
region), `palliwatch services up` creates them locally, and `palliwatch grafana build` gives each
audience a Grafana organisation whose datasource logs in as that audience's role.

- public: the public layer only (schema ``published``: perturbed counts, docs/indicators.md).
- national: the registry operator, exact figures of every scope (schema ``exact``).
- region: a region's quality leads, exact figures of their region and its municipalities only.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codes import regions

PUBLIC_ROLE = "palliwatch_reader"
NATIONAL_ROLE = "palliwatch_national"
REGION_ROLE_PREFIX = "palliwatch_region_"
# The group role that holds the exact layer's grants; every exact reader is a member.
EXACT_GROUP = "palliwatch_exact"
# pgaudit's object audit role (the server's pgaudit.role): it is granted SELECT on every view
# of both layers and never logs in, so pgaudit logs each read of a view with the reading role.
AUDIT_ROLE = "palliwatch_auditor"
PUBLIC_SCHEMA = "published"
EXACT_SCHEMA = "exact"


@dataclass(frozen=True)
class Audience:
    key: str  # "public", "national" or "region-<code>"
    role: str  # the PostgreSQL login role its datasource uses
    schema: str  # the schema its queries read
    region: str | None  # the one region it may read exactly (None: public or all)
    title: str  # its Grafana organisation's name

    @property
    def exact(self) -> bool:
        return self.schema == EXACT_SCHEMA


def region_role(code: str) -> str:
    return f"{REGION_ROLE_PREFIX}{code}"


def public() -> Audience:
    return Audience("public", PUBLIC_ROLE, PUBLIC_SCHEMA, None, "palliwatch public")


def national() -> Audience:
    return Audience("national", NATIONAL_ROLE, EXACT_SCHEMA, None, "palliwatch national")


def regional(code: str) -> Audience:
    name = regions()[code].name
    return Audience(f"region-{code}", region_role(code), EXACT_SCHEMA, code,
                    f"palliwatch {name}")  # fmt: skip


def all_audiences() -> list[Audience]:
    return [national(), public(), *(regional(code) for code in regions())]


def exact_roles() -> list[str]:
    return [NATIONAL_ROLE, *(region_role(code) for code in regions())]
