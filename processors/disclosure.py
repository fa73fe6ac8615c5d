"""Disclosure control for the public layer: the Cell Key Method (docs/indicators.md).

Every survey gets a *record key*, a keyed hash of its person_ref with the deployment secret,
read as a 32-bit integer (a point of [0, 1) in units of 2^-32). A cell's key is the sum of the
keys of the records it counts, modulo 2^32: additive, so the aggregation keeps it beside each
counter and a correction or withdrawal subtracts it exactly. The published count is the true
count plus a perturbation read from the fixed table below by (count, cell key), so the same
cell always gets the same noise, and two cells that differ by a few records get independent
noise: the difference of published cells no longer gives the count between them.

Pure: no Kafka, no database, no clock. The engine and the oracle both call it; the table is
seeded into PostgreSQL (``ckm_ptable``) for the arrivals view, from this module.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from bisect import bisect_right
from dataclasses import dataclass

from processors.core import wilson_interval

KEY_BITS = 32
KEY_SPACE = 1 << KEY_BITS
KEY_MASK = KEY_SPACE - 1
# The version of the method and its table; published rows computed with another version are
# not comparable (a change needs a rebuild, like a catalogue change).
METHOD = "ckm-1"
# The largest perturbation either way.
MAX_PERTURBATION = 4
# P(perturbation = ±k) for a count of at least MAX_PERTURBATION (no truncation at 0 needed).
# Zero mean, variance 2.24 (standard deviation 1.5). Mass at ±3 and ±4 is small but present,
# so that a published cell rarely sits at the edge of its support, where the ranges of two
# routes to one count could meet in a single value.
BASE = {0: 0.30, 1: 0.20, 2: 0.10, 3: 0.04, 4: 0.01}


@dataclass(frozen=True)
class Row:
    """The perturbations for one count: perturbations[i] applies to cell keys in
    [bounds[i-1], bounds[i]) (bounds[-1] = 2^32), probabilities[i] their probability."""

    count: int
    perturbations: tuple[int, ...]
    probabilities: tuple[float, ...]
    bounds: tuple[int, ...]  # upper bounds, exclusive, in key units; the last is KEY_SPACE


def _base_row() -> list[tuple[int, float]]:
    return [(e, BASE[abs(e)]) for e in range(-MAX_PERTURBATION, MAX_PERTURBATION + 1)]


def _tilted_row(count: int) -> list[tuple[int, float]]:
    """A small count's row: the base shape cut at a published value of 0, then tilted
    exponentially until the mean perturbation is 0 again (published counts stay unbiased)."""
    support = [(e, BASE[abs(e)]) for e in range(-count, MAX_PERTURBATION + 1)]

    def mean(t: float) -> float:
        w = [p * math.exp(-t * e) for e, p in support]
        return sum(e * x for (e, _), x in zip(support, w, strict=True)) / sum(w)

    lo, hi = 0.0, 10.0  # mean(0) > 0 and mean decreases in t
    for _ in range(200):
        mid = (lo + hi) / 2
        if mean(mid) > 0:
            lo = mid
        else:
            hi = mid
    w = [p * math.exp(-lo * e) for e, p in support]
    total = sum(w)
    return [(e, x / total) for (e, _), x in zip(support, w, strict=True)]


def _row(count: int) -> Row:
    if count == 0:
        pairs = [(0, 1.0)]  # an empty cell stays empty
    elif count < MAX_PERTURBATION:
        pairs = _tilted_row(count)
    else:
        pairs = _base_row()
    bounds, running = [], 0.0
    for _, p in pairs:
        running += p
        bounds.append(min(KEY_SPACE, round(running * KEY_SPACE)))
    bounds[-1] = KEY_SPACE
    return Row(
        count,
        tuple(e for e, _ in pairs),
        tuple(p for _, p in pairs),
        tuple(bounds),
    )


# Rows 0 .. MAX_PERTURBATION; larger counts use the last.
PTABLE: tuple[Row, ...] = tuple(_row(c) for c in range(MAX_PERTURBATION + 1))


def table_row(count: int) -> Row:
    return PTABLE[min(count, MAX_PERTURBATION)]


def perturbation_distribution(count: int) -> dict[int, float]:
    """P(published = count + e) for a true count, as the public may know it (the attacker's
    model: the method and its table are public, the secret is not)."""
    row = table_row(count)
    return dict(zip(row.perturbations, row.probabilities, strict=True))


def perturb(count: int, key_sum: int) -> int:
    """The published count of a cell with ``count`` records whose keys sum to ``key_sum``."""
    if count <= 0:
        return count
    row = table_row(count)
    return count + row.perturbations[bisect_right(row.bounds, key_sum & KEY_MASK)]


class RecordKeys:
    """person_ref -> record key, keyed with the deployment secret (HMAC-SHA256, first 32
    bits). Without the secret a key cannot be computed, so neither can a cell's noise."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the cell key secret must be at least 16 bytes")
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def __call__(self, person_ref: str) -> int:
        mac = self._mac.copy()
        mac.update(person_ref.encode())
        return int.from_bytes(mac.digest()[:4], "big")

    def __repr__(self) -> str:  # never the secret
        return "RecordKeys(<secret>)"


# ---- public figures of a row ----------------------------------------------------------------

PublicFigures = tuple[
    float | None, float | None, float | None, int | None, float | None, float | None, bool
]
# (value, numerator, denominator, n, ci_low, ci_high, suppressed)
SUPPRESSED: PublicFigures = (None, None, None, None, None, None, True)


def public_share(num: int, den: int, num_key: int, den_key: int, min_n: int) -> PublicFigures:
    """A share's public figures: both counts perturbed, the numerator capped at the
    denominator, share and interval from the perturbed counts, suppressed under min_n (true or
    published)."""
    if den < min_n:
        return SUPPRESSED
    p_den = perturb(den, den_key)
    if p_den < min_n:
        return SUPPRESSED
    p_num = min(perturb(num, num_key), p_den)
    ci = wilson_interval(p_num, p_den)
    return (
        p_num / p_den, float(p_num), float(p_den), p_den,
        None if ci is None else ci[0], None if ci is None else ci[1], False,
    )  # fmt: skip


def public_coverage(registered: int, key: int, official: int, min_n: int) -> PublicFigures:
    """Registered surveys (perturbed) over official deaths (public already, exact)."""
    if official < min_n:
        return SUPPRESSED
    p = perturb(registered, key)
    ci = wilson_interval(p, official) if p <= official else None
    return (
        p / official, float(p), float(official), official,
        None if ci is None else ci[0], None if ci is None else ci[1], False,
    )  # fmt: skip


def count_figures(value: float | None) -> PublicFigures:
    """The public figures of a published count (``received``, ``unmet``): value and
    numerator, nothing else; None: suppressed."""
    if value is None:
        return SUPPRESSED
    return (float(value), float(value), None, None, None, None, False)


def public_received(received: int, key: int, min_n: int) -> int | None:
    """The perturbed count of deaths that received specialised care; None when suppressed
    (a true or published count between 1 and min_n - 1)."""
    if 0 < received < min_n:
        return None
    p = perturb(received, key)
    return None if 0 < p < min_n else p


def public_unmet_share(
    need: float, p_received: int | None, official: int, min_n: int
) -> PublicFigures:
    """(need − perturbed received) / need; need comes from official deaths (public)."""
    if p_received is None or official < min_n:
        return SUPPRESSED
    unmet = need - p_received
    ci = wilson_interval(unmet, need) if 0 <= unmet <= need and need > 0 else None
    return (
        None if need == 0 else unmet / need, unmet, need, official,
        None if ci is None else ci[0], None if ci is None else ci[1], False,
    )  # fmt: skip


def share_error(num: int, den: int) -> tuple[float, float, float]:
    """What the method costs a share of num/den: the mean, the 95th percentile and the largest
    absolute difference between the published and the true share, over the table (numerator
    and denominator keys are independent). docs/indicators.md quotes these."""
    true = num / den
    outcomes: list[tuple[float, float]] = []  # (|error|, probability)
    for en, pn in perturbation_distribution(num).items():
        for ed, pd in perturbation_distribution(den).items():
            p_den = den + ed
            p_num = min(num + en, p_den)
            outcomes.append((abs(p_num / p_den - true), pn * pd))
    outcomes.sort()
    mean = sum(e * p for e, p in outcomes)
    running, p95 = 0.0, outcomes[-1][0]
    for e, p in outcomes:
        running += p
        if running >= 0.95:
            p95 = e
            break
    return mean, p95, outcomes[-1][0]
