"""Comparing indicator rows from the engine (in memory or in the database) with the oracle."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import psycopg

from processors.core import IndicatorValue
from processors.oracle import oracle
from schemas.models import DeathSurvey, OfficialDeaths, Population, UnitEvent
from tests.histories import History
from tests.keys import KEYS

Key = tuple[str, str, str, str, str, date]
FIELDS = ("value", "numerator", "denominator", "n", "suppressed", "ci_low", "ci_high",
          "period_complete", "nowcast", "pub_value", "pub_numerator", "pub_denominator",
          "pub_n", "pub_ci_low", "pub_ci_high", "pub_suppressed")  # fmt: skip


def oracle_of(h: History, as_of: date) -> dict[Key, IndicatorValue]:
    return oracle(
        [DeathSurvey.model_validate(s) for s in h.admitted],
        [OfficialDeaths.model_validate(o) for o in h.official],
        [UnitEvent.model_validate(u) for u in h.units],
        [Population.model_validate(p) for p in h.population],
        as_of,
        record_keys=KEYS,
    )


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def differences(
    got: Mapping[Key, Any], want: Mapping[Key, IndicatorValue], limit: int = 8
) -> list[str]:
    """Human-readable differences (empty when equal): missing, extra and differing rows."""
    out = []
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing:
        out.append(f"{len(missing)} rows missing, e.g. {missing[:3]}")
    if extra:
        out.append(f"{len(extra)} unexpected rows, e.g. {extra[:3]}")
    for k in sorted(set(got) & set(want)):
        g, w = got[k], want[k]
        for f in FIELDS:
            gv = g[f] if isinstance(g, Mapping) else getattr(g, f)
            if not _same(gv, getattr(w, f)):
                out.append(f"{k}: {f} is {gv!r}, oracle says {getattr(w, f)!r}")
                break
        if len(out) >= limit:
            break
    return out


def db_rows(url: str) -> dict[Key, dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT indicator_id, scope_type, scope_code, breakdown, period_type, period_end, "
            + ", ".join(FIELDS)
            + " FROM indicator_values"
        )
        return {tuple(r[:6]): dict(zip(FIELDS, r[6:], strict=True)) for r in cur}  # type: ignore[misc]
