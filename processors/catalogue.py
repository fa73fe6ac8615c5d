"""The indicator catalogue: definitions as data.

Socialstyrelsen revises indicators and targets, so nothing here is hard-wired into agents: the
aggregation code reads the counters and ratios named below. The walking skeleton carries the three
population indicators per region over rolling 12 months; the full catalogue (issue 4) extends this
same structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# National care programme: about a quarter of all deaths need specialised palliative care.
SPECIALISED_NEED_SHARE = 0.25
# Published cells counting fewer people than this identify individuals and are suppressed.
MIN_CELL_N = 5

Kind = Literal["proportion", "count"]


@dataclass(frozen=True)
class Indicator:
    id: str
    title_en: str
    title_sv: str
    kind: Kind
    direction: Literal["higher_is_better", "lower_is_better", "none"]
    numerator: str
    denominator: str | None
    unit: str = "share"


INDICATORS: dict[str, Indicator] = {
    i.id: i
    for i in (
        Indicator(
            "registry_coverage",
            "Registry coverage (registered / official deaths)",
            "Täckningsgrad",
            "proportion",
            "higher_is_better",
            numerator="registered deaths",
            denominator="official deaths",
        ),
        Indicator(
            "spec_need",
            "Estimated need for specialised palliative care (25 % of deaths)",
            "Uppskattat behov av specialiserad palliativ vård",
            "count",
            "none",
            numerator="0.25 x official deaths",
            denominator=None,
            unit="people",
        ),
        Indicator(
            "spec_received",
            "Deaths with specialised palliative care or consult support",
            "Avlidna med specialiserad palliativ vård eller konsultstöd",
            "count",
            "higher_is_better",
            numerator="registered deaths in specialised care or with palliative consult",
            denominator=None,
            unit="people",
        ),
        Indicator(
            "spec_unmet",
            "Unmet need for specialised palliative care",
            "Ej tillgodosett behov av specialiserad palliativ vård",
            "count",
            "lower_is_better",
            numerator="need - received",
            denominator=None,
            unit="people",
        ),
        Indicator(
            "spec_unmet_share",
            "Unmet share of the need for specialised palliative care",
            "Andel ej tillgodosett behov",
            "proportion",
            "lower_is_better",
            numerator="need - received",
            denominator="need",
        ),
        Indicator(
            "home_death_share",
            "Share of registered deaths in own home",
            "Andel avlidna i eget hem",
            "proportion",
            "none",
            numerator="registered deaths in own home",
            denominator="registered deaths",
        ),
    )
}
