"""The one code list for regions and municipalities.

Loaded from the CSV files shipped in ``schemas/reference`` (copies of the project's shared
reference data), so every module that needs a region name, a municipality's region or a
region's 2024 deaths reads it from here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    population_2024: int
    deaths_2024: int
    seat: str
    seat_lat: float
    seat_lon: float


@dataclass(frozen=True)
class Municipality:
    code: str
    name: str
    region_code: str


def _rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("schemas").joinpath("reference", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def regions() -> dict[str, Region]:
    """The 21 regions keyed by two-digit county code, in code order."""
    out: dict[str, Region] = {}
    for row in _rows("regions_2024.csv"):
        out[row["county_code"]] = Region(
            code=row["county_code"],
            name=row["region_name"],
            population_2024=int(row["population_2024"]),
            deaths_2024=int(row["deaths_2024"]),
            seat=row["seat"],
            seat_lat=float(row["seat_lat"]),
            seat_lon=float(row["seat_lon"]),
        )
    return dict(sorted(out.items()))


@cache
def municipalities() -> dict[str, Municipality]:
    """The 290 municipalities keyed by four-digit code."""
    return {
        row["municipality_code"]: Municipality(
            code=row["municipality_code"],
            name=row["municipality_name_short"],
            region_code=row["county_code"],
        )
        for row in _rows("municipalities.csv")
    }


@cache
def municipalities_by_region() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {code: [] for code in regions()}
    for m in municipalities().values():
        out[m.region_code].append(m.code)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def is_region(code: str) -> bool:
    return code in regions()


def municipality_in_region(municipality_code: str, region_code: str) -> bool:
    m = municipalities().get(municipality_code)
    return m is not None and m.region_code == region_code
