"""Streaming equals batch, in memory: the engine's agents' logic (tests/engine_sim.py) over
randomised histories, in random batches with redeliveries, equals the independent oracle on
every row. The same comparison runs on the real broker and database in
tests/test_engine_integration.py; here it is fast enough to try many histories."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta

import pytest

from schemas.models import DeathSurvey, OfficialDeaths, UnitEvent
from tests.engine_sim import EngineSim
from tests.histories import random_history
from tests.oracle_compare import differences, oracle_of

AS_OF = date(2026, 11, 23)


def run_sim(seed: int, n: int, as_of: date = AS_OF) -> tuple[EngineSim, object]:
    h = random_history(seed, n, as_of)
    rng = random.Random(seed)
    sim = EngineSim(partitions=rng.choice([1, 3]))
    sim.structure(
        [{"kind": "population", **p} for p in h.population]
        + [{"kind": "unit", "event": UnitEvent.model_validate(u).model_dump(mode="json")}
           for u in h.units],
        as_of,
    )  # fmt: skip
    sim.official([OfficialDeaths.model_validate(o) for o in h.official[: len(h.official) // 2]],
                 as_of)  # fmt: skip
    surveys = [DeathSurvey.model_validate(s) for s in h.admitted]
    i = 0
    while i < len(surveys):
        step = rng.randint(1, 60)
        sim.surveys(surveys[i : i + step], as_of, redeliver=rng.choice([0, 0, 1, 3]))
        i += step
    sim.official([OfficialDeaths.model_validate(o) for o in h.official[len(h.official) // 2 :]],
                 as_of)  # fmt: skip
    return sim, h


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_in_memory_streaming_equals_the_oracle(seed: int) -> None:
    sim, h = run_sim(seed, 250)
    want = oracle_of(h, AS_OF)  # type: ignore[arg-type]
    assert len(want) > 1000
    assert differences(sim.rows, want) == []


def test_daily_reevaluation_equals_the_oracle_of_the_new_day() -> None:
    """No event arrives, the date moves on: windows, completeness and nowcasts follow."""
    sim, h = run_sim(7, 200)
    sim.day(AS_OF)  # the first tick: the scopes' first daily pass
    for later in (AS_OF + timedelta(days=1), AS_OF + timedelta(days=45)):
        sim.day(later)
        want = oracle_of(h, later)  # type: ignore[arg-type]
        # Daily windows that fell out of the open horizon are final and stay as written;
        # every row the oracle has must be there and match.
        assert set(want) <= set(sim.rows)
        assert differences({k: v for k, v in sim.rows.items() if k in want}, want) == []


def test_structure_only_history() -> None:
    h = dataclasses.replace(random_history(11, 0, AS_OF), official=[])
    sim = EngineSim()
    sim.structure([{"kind": "population", **p} for p in h.population], AS_OF)
    sim.structure(
        [{"kind": "unit", "event": UnitEvent.model_validate(u).model_dump(mode="json")}
         for u in h.units], AS_OF)  # fmt: skip
    want = oracle_of(h, AS_OF)
    assert differences(sim.rows, want) == []


def test_every_indicator_is_produced_for_every_scope_period_and_breakdown_it_applies_to() -> None:
    sim, _ = run_sim(3, 250)
    cat = sim.cat
    expected = {
        (ind.id, stype, ptype, dim)
        for ind in cat.indicators.values()
        for ptype in ind.periods
        for stype in cat.scopes_for(ind, ptype)
        for dim in ("all", *cat.breakdowns_for(ind, stype, ptype))
    }
    produced = {(k[0], k[1], k[4], k[3].split(":", 1)[0]) for k in sim.rows}
    assert produced == expected
    # Every domain indicator, including every structural one at every municipality.
    assert {k[0] for k in sim.rows} == set(cat.indicators)
    munis = {k[2] for k in sim.rows if k[0] == "on_call_24_7_available" and k[1] == "municipality"}
    assert len(munis) == 290
