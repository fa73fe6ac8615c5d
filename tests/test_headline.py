"""The headline pass: the few rows live traffic sees first (processors/aggregate.py,
``Aggregator.evaluate_headline``; engine.headline_periods)."""

from __future__ import annotations

from datetime import date

from processors.aggregate import Aggregator
from processors.catalogue import ROLLING_DAYS, default_catalogue
from processors.core import month_last_day
from processors.engine import NATION
from tests.engine_sim import EngineSim
from tests.histories import random_history
from tests.keys import KEYS
from tests.strategies import make_survey

AS_OF = date(2026, 11, 23)
CAT = default_catalogue()


def _one_survey_headline(death: str) -> list:  # type: ignore[type-arg]
    sim = EngineSim(CAT)
    s = make_survey(
        "h-1",
        1,
        {
            "submitted_at": f"{AS_OF.isoformat()}T08:00:00Z",
            "unit_id": "unit-03-001",
            "region_code": "03",
            "municipality_code": "0305",
            "date_of_death": death,
            "sex": "female",
            "age_years": 81,
            "ses_quintile": 2,
            "diagnosis_group": "cancer",
            "expected_death": True,
            "place_of_death": "own_home",
            "care_setting": "specialised_home_care",
            "palliative_consult": True,
            "measures": {"pain_assessed": True},
        },
    )
    agg: Aggregator = sim.agg
    for d in admit_deltas(sim, s):
        for scope in (d[3][0], NATION):
            agg.apply_survey_deltas(scope, [d])
    agg.commit()
    return agg.evaluate_headline(AS_OF)


def admit_deltas(sim: EngineSim, s):  # type: ignore[no-untyped-def]
    from processors.admission import admit

    result = admit(None, 0, s, CAT, KEYS)
    return [d.to_wire(0) for d in result.deltas]


def test_a_survey_shows_in_its_regions_and_the_nations_totals_for_its_periods() -> None:
    rows = _one_survey_headline("2026-11-20")
    assert rows
    assert {(v.scope_type, v.scope_code) for v in rows} == {("region", "03"), ("nation", "SE")}
    assert {v.breakdown for v in rows} == {"all"}
    ends = {(v.period_type, v.period_end) for v in rows}
    assert ("month", date(2026, 11, 30)) in ends
    assert ("quarter", date(2026, 12, 31)) in ends
    assert ("year", date(2026, 12, 31)) in ends
    assert ("rolling_12m", month_last_day("2026-11")) in ends
    for ptype in ROLLING_DAYS:
        assert (ptype, AS_OF) in ends
    # Only today's window ends, not the later ones of the full evaluation.
    assert {e for p, e in ends if p in ROLLING_DAYS} == {AS_OF}


def test_an_old_death_shows_in_its_month_and_the_current_rolling_12_months_only() -> None:
    rows = _one_survey_headline("2026-05-02")
    ends = {(v.period_type, v.period_end) for v in rows}
    assert ("month", date(2026, 5, 31)) in ends
    assert {e for p, e in ends if p == "rolling_12m"} == {month_last_day("2026-11")}
    # 205 days ago: inside the 365-day window ending today, not the 30- or 90-day ones.
    assert {(p, e) for p, e in ends if p in ROLLING_DAYS} == {("rolling_365d", AS_OF)}


def test_headline_rows_equal_the_full_rows_over_a_random_history() -> None:
    h = random_history(seed=23, n_surveys=400, as_of=AS_OF)
    sim = EngineSim(CAT)
    from schemas.models import DeathSurvey, OfficialDeaths

    sim.official([OfficialDeaths.model_validate(o) for o in h.official], AS_OF)
    surveys = [DeathSurvey.model_validate(s) for s in h.surveys]
    for i in range(0, len(surveys), 37):
        sim.surveys(surveys[i : i + 37], AS_OF, redeliver=3)
    # EngineSim._finish checks each headline row against the full evaluation's.
    assert sim.headline_rows > 0
