"""The indicator catalogue: definitions as data (processors/catalogue.toml).

Socialstyrelsen revises indicators and targets, so nothing here is hard-wired into agents: the
engine reads counters, populations, periods, scopes and breakdowns from the catalogue. Adding an
indicator is an edit of the TOML file (or of the file named by PALLIWATCH_CATALOGUE) and a replay.
The loader checks the file and says what is wrong with it, naming the indicator.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

DEFAULT_PATH = Path(__file__).with_name("catalogue.toml")

Kind = Literal[
    "share", "coverage", "need", "received", "unmet", "unmet_share", "per_100k", "availability"
]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
SURVEY_KINDS = frozenset({"share"})  # rows follow the surveys' own breakdowns and days
OFFICIAL_KINDS = frozenset({"coverage", "need", "received", "unmet", "unmet_share"})
STRUCTURAL_KINDS = frozenset({"per_100k", "availability"})
PERIOD_TYPES = (
    "month", "quarter", "year", "rolling_12m", "rolling_30d", "rolling_90d", "rolling_365d",
)  # fmt: skip
ROLLING_DAYS = {"rolling_30d": 30, "rolling_90d": 90, "rolling_365d": 365}
# The daily rolling windows (exact layer only) and the periods that move by the month.
DAILY_PERIOD_TYPES = tuple(ROLLING_DAYS)
MONTHLY_PERIOD_TYPES = tuple(p for p in PERIOD_TYPES if p not in ROLLING_DAYS)
SCOPE_TYPES = ("nation", "region", "municipality")
TOTAL = "all"  # the breakdown label of a scope's total
# What an indicator's `tags` may say: the lists it is on, each read by one consumer.
TAGS = {
    "key": "a traffic-light column of the national overview: what a quality lead looks at first",
    "summary": "a column of `palliwatch indicators` (per region, rolling 12 months)",
    "bench": "loaded by the storage bench (`palliwatch bench storage`)",
}


class CatalogueError(ValueError):
    """The catalogue file is not valid; the message names the indicator and the fix."""


Condition = Callable[[Any], bool]


def _step(value: Any, part: str) -> Any:
    # Exact type checks first: an isinstance check against the Mapping ABC costs several times
    # more, and conditions run for every indicator of every survey.
    if type(value) is dict:
        return value.get(part)
    if isinstance(value, BaseModel) or not isinstance(value, Mapping):
        return getattr(value, part, None)
    return value.get(part)


def getter(dotted: str) -> Callable[[Any], Any]:
    """A field reader for a record (a pydantic model or a dict), dotted paths reaching into
    nested objects; None where any step is missing."""
    parts = tuple(dotted.split("."))
    if len(parts) == 1:
        (only,) = parts
        return lambda record: _step(record, only)

    def get(record: Any) -> Any:
        value = record
        for part in parts:
            value = _step(value, part)
            if value is None:
                return None
        return value

    return get


@cache
def _cached_getter(dotted: str) -> Callable[[Any], Any]:
    return getter(dotted)


def _get(record: Any, dotted: str) -> Any:
    return _cached_getter(dotted)(record)


def _any_of(subs: list[Condition]) -> Condition:
    return lambda r: any(s(r) for s in subs)


def _member(key: str, allowed: frozenset[Any]) -> Condition:
    get = getter(key)
    return lambda r: get(r) in allowed


def _not_member(key: str, banned: frozenset[Any]) -> Condition:
    get = getter(key)
    return lambda r: get(r) not in banned


def _answered(key: str, want: bool) -> Condition:
    get = getter(key)
    return lambda r: (get(r) is not None) == want


def _equals(key: str, value: Any) -> Condition:
    get = getter(key)
    return lambda r: get(r) == value


def _all_of(checks: list[Condition]) -> Condition:
    if not checks:
        return lambda r: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda r: first(r) and second(r)
    return lambda r: all(c(r) for c in checks)


def compile_condition(spec: Mapping[str, Any], where: str) -> Condition:
    """A predicate over a record (a pydantic model or a dict) from a catalogue condition."""
    checks: list[Condition] = []
    for key, matcher in spec.items():
        if key == "any":
            if not isinstance(matcher, list) or not matcher:
                raise CatalogueError(f"{where}: 'any' needs a non-empty list of conditions")
            checks.append(_any_of([compile_condition(m, where) for m in matcher]))
        elif isinstance(matcher, list):
            checks.append(_member(key, frozenset(matcher)))
        elif isinstance(matcher, dict):
            if set(matcher) == {"not"}:
                bad = matcher["not"]
                checks.append(_not_member(key, frozenset(bad if isinstance(bad, list) else [bad])))
            elif set(matcher) == {"answered"}:
                checks.append(_answered(key, bool(matcher["answered"])))
            else:
                raise CatalogueError(
                    f"{where}: matcher for {key!r} must be a value, a list, {{not = ...}} or "
                    f"{{answered = true}}, not {matcher!r}"
                )
        else:
            checks.append(_equals(key, matcher))
    return _all_of(checks)


@dataclass(frozen=True)
class Target:
    comparator: str
    value: float
    valid_from: date
    source: str
    warn_value: float | None = None


@dataclass(frozen=True)
class Breakdown:
    name: str
    field: str
    bands: tuple[tuple[int, int, str], ...] = ()
    missing: str = "unknown"

    def label(self, record: Any) -> str:
        value = _get(record, self.field)
        if value is None:
            return f"{self.name}:{self.missing}"
        if self.bands:
            for low, high, name in self.bands:
                if low <= value <= high:
                    return f"{self.name}:{name}"
            return f"{self.name}:{self.missing}"
        if isinstance(value, bool):
            value = str(value).lower()
        return f"{self.name}:{value}"


@dataclass(frozen=True)
class Indicator:
    id: str
    family: str
    title_en: str
    title_sv: str
    kind: Kind
    direction: str
    periods: tuple[str, ...]
    scopes: tuple[str, ...]
    breakdowns: tuple[str, ...]
    min_n: int
    unit: str = "share"
    population: str | None = None
    numerator: Condition | None = field(default=None, compare=False, repr=False)
    denominator: Condition | None = field(default=None, compare=False, repr=False)
    unit_kinds: tuple[str, ...] = ()
    unit_field: str | None = None
    requirement: Condition | None = field(default=None, compare=False, repr=False)
    target: Target | None = None
    tags: tuple[str, ...] = ()
    short_en: str = ""  # a column heading; the id where none is given

    @property
    def num_counter(self) -> str:
        return f"{self.id}.num"

    @property
    def den_counter(self) -> str:
        return f"{self.id}.den"


@dataclass(frozen=True)
class Catalogue:
    indicators: dict[str, Indicator]
    populations: dict[str, Condition]
    breakdowns: dict[str, Breakdown]
    breakdown_scopes: tuple[str, ...]
    period_scopes: dict[str, tuple[str, ...]]
    need_share: float
    registration_window_days: int
    correction_days: int
    nowcast_months: int
    source: str = ""
    # Derived once: survey_vector and the engine use them for every survey and every row.
    _shares: tuple[Indicator, ...] = field(init=False, repr=False, compare=False)
    _counters: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _scopes: dict[tuple[str, str], tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        shares = tuple(self.of_kind(SURVEY_KINDS))
        counters = ["registered", *(f"pop.{p}" for p in self.populations)]
        for ind in shares:
            counters += [ind.num_counter, ind.den_counter]
        object.__setattr__(self, "_shares", shares)
        object.__setattr__(self, "_counters", tuple(counters))

    def of_kind(self, kinds: frozenset[str]) -> list[Indicator]:
        return [i for i in self.indicators.values() if i.kind in kinds]

    def tagged(self, tag: str) -> list[Indicator]:
        """The indicators on one list (TAGS), in catalogue order."""
        if tag not in TAGS:
            raise KeyError(f"unknown indicator tag {tag!r}: one of {sorted(TAGS)}")
        return [i for i in self.indicators.values() if tag in i.tags]

    @property
    def settled_after_days(self) -> int:
        """After this many days past a period's end, no valid survey can change it."""
        return self.registration_window_days + self.correction_days

    def scopes_for(self, ind: Indicator, period_type: str) -> tuple[str, ...]:
        # Memoised: the engine asks for every indicator and period type of every scope it
        # evaluates (a fifth of a live headline pass when computed each time).
        key = (ind.id, period_type)
        found = self._scopes.get(key)
        if found is None:
            allowed = self.period_scopes.get(period_type, SCOPE_TYPES)
            found = self._scopes[key] = tuple(s for s in ind.scopes if s in allowed)
        return found

    def breakdowns_for(self, ind: Indicator, scope_type: str, period_type: str) -> tuple[str, ...]:
        """Breakdown labels' dimensions that apply to this indicator at this scope and period."""
        if scope_type not in self.breakdown_scopes or period_type in ROLLING_DAYS:
            return ()
        return ind.breakdowns

    def counters(self) -> tuple[str, ...]:
        """The names of the counters a survey contributes to (its vector's coordinates)."""
        return self._counters

    def survey_vector(self, survey: Any) -> dict[str, int]:
        """What one active survey revision counts towards: counter -> 1 (zeros left out)."""
        vec = {"registered": 1}
        in_pop = {name: cond(survey) for name, cond in self.populations.items()}
        for name, inside in in_pop.items():
            if inside:
                vec[f"pop.{name}"] = 1
        for ind in self._shares:
            assert ind.population is not None
            if not in_pop[ind.population]:
                continue
            if ind.denominator is None or ind.denominator(survey):
                vec[ind.den_counter] = 1
                if ind.numerator is None or ind.numerator(survey):
                    vec[ind.num_counter] = 1
        return vec

    def cells(self, survey: Any) -> tuple[str, ...]:
        """The breakdown labels a survey falls in, one per breakdown dimension."""
        return tuple(b.label(survey) for b in self.breakdowns.values())


def _tuple(value: Any, where: str, allowed: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or any(v not in allowed for v in value):
        raise CatalogueError(f"{where}: expected a list drawn from {list(allowed)}, got {value!r}")
    return tuple(value)


def _target(raw: Any, where: str) -> Target | None:
    if raw is None:
        return None
    try:
        return Target(
            comparator=raw["comparator"],
            value=float(raw["value"]),
            valid_from=date.fromisoformat(str(raw["valid_from"])),
            source=str(raw["source"]),
            warn_value=None if raw.get("warn_value") is None else float(raw["warn_value"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogueError(
            f"{where}: target needs comparator, value, valid_from (YYYY-MM-DD) and source ({exc})"
        ) from exc


def parse_catalogue(raw: Mapping[str, Any], source: str = "<memory>") -> Catalogue:
    """Build and check a catalogue from its TOML structure."""
    defaults = raw.get("defaults", {})
    applic = raw.get("applicability", {})
    populations = {
        name: compile_condition(cond, f"{source}: population {name}")
        for name, cond in raw.get("population", {}).items()
    }
    breakdowns: dict[str, Breakdown] = {}
    for name, spec in raw.get("breakdown", {}).items():
        bands = tuple((int(lo), int(hi), str(lbl)) for lo, hi, lbl in spec.get("bands", []))
        breakdowns[name] = Breakdown(name, spec["field"], bands, spec.get("missing", "unknown"))
    constants = raw.get("constants", {})
    indicators: dict[str, Indicator] = {}
    for entry in raw.get("indicator", []):
        ident = entry.get("id")
        where = f"{source}: indicator {ident!r}"
        if not ident or not str(ident).replace("_", "").isalnum() or not ident[0].isalpha():
            raise CatalogueError(f"{where}: id must be lower_snake_case")
        if ident in indicators:
            raise CatalogueError(f"{where}: the id is used twice")
        kind = entry.get("kind")
        if kind not in KINDS:
            raise CatalogueError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
        missing = [k for k in ("title_en", "title_sv", "direction") if not entry.get(k)]
        if missing:
            raise CatalogueError(f"{where}: missing {', '.join(missing)}")
        population = entry.get("population")
        if kind in SURVEY_KINDS | OFFICIAL_KINDS - {"need"} and population not in populations:
            raise CatalogueError(
                f"{where}: population must name a [population] entry "
                f"({sorted(populations)}), got {population!r}"
            )
        if kind == "share" and "numerator" not in entry:
            raise CatalogueError(f"{where}: a share needs a numerator condition")
        if kind in STRUCTURAL_KINDS and not entry.get("unit_kinds"):
            raise CatalogueError(f"{where}: a structural indicator needs unit_kinds")
        if kind == "per_100k" and not entry.get("field"):
            raise CatalogueError(f"{where}: per_100k needs the unit field to sum (field = ...)")
        periods = _tuple(entry.get("periods", defaults.get("periods")), where, PERIOD_TYPES)
        if kind in OFFICIAL_KINDS and any(p in ROLLING_DAYS for p in periods):
            raise CatalogueError(
                f"{where}: official deaths are monthly, so daily rolling windows do not apply"
            )
        if kind in STRUCTURAL_KINDS and periods != ("month",):
            raise CatalogueError(f"{where}: structural indicators are evaluated per month")
        indicators[ident] = Indicator(
            id=ident,
            family=str(entry.get("family", "other")),
            title_en=entry["title_en"],
            title_sv=entry["title_sv"],
            kind=kind,
            direction=entry["direction"],
            periods=periods,
            scopes=_tuple(entry.get("scopes", defaults.get("scopes")), where, SCOPE_TYPES),
            breakdowns=_tuple(
                entry.get("breakdowns", defaults.get("breakdowns")), where, list(breakdowns)
            ),
            min_n=int(entry.get("min_n", defaults.get("min_n", 5))),
            unit=str(entry.get("unit", "share")),
            population=population,
            numerator=compile_condition(entry["numerator"], where)
            if "numerator" in entry
            else None,
            denominator=compile_condition(entry["denominator"], where)
            if "denominator" in entry
            else None,
            unit_kinds=tuple(entry.get("unit_kinds", ())),
            unit_field=entry.get("field"),
            requirement=compile_condition(entry.get("require", {}), where),
            target=_target(entry.get("target"), where),
            tags=_tuple(entry.get("tags", []), f"{where}: tags", list(TAGS)),
            short_en=str(entry.get("short_en") or ident),
        )
    return Catalogue(
        indicators=indicators,
        populations=populations,
        breakdowns=breakdowns,
        breakdown_scopes=_tuple(
            applic.get("breakdown_scopes", list(SCOPE_TYPES)), source, SCOPE_TYPES
        ),
        period_scopes={
            p: _tuple(s, source, SCOPE_TYPES) for p, s in applic.get("period_scopes", {}).items()
        },
        need_share=float(constants.get("specialised_need_share", 0.25)),
        registration_window_days=int(constants.get("registration_window_days", 183)),
        correction_days=int(constants.get("correction_days", 10)),
        nowcast_months=int(constants.get("nowcast_months", 12)),
        source=source,
    )


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """The catalogue at ``path``, else PALLIWATCH_CATALOGUE, else the packaged one."""
    p = Path(path or os.environ.get("PALLIWATCH_CATALOGUE") or DEFAULT_PATH)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogueError(
            f"indicator catalogue {p} not found: set PALLIWATCH_CATALOGUE to a catalogue file"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"indicator catalogue {p} is not valid TOML: {exc}") from exc
    return parse_catalogue(raw, str(p))


@cache
def default_catalogue() -> Catalogue:
    return load_catalogue()
