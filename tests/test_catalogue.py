"""The indicator catalogue as data: what it holds, how it fails, and that adding an indicator
is a catalogue edit and nothing else."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import psycopg
import pytest

from processors.catalogue import (
    DEFAULT_PATH,
    CatalogueError,
    default_catalogue,
    load_catalogue,
    parse_catalogue,
)
from processors.db import migrate
from processors.oracle import oracle
from schemas.models import DeathSurvey
from tests.conftest import Isolated
from tests.keys import KEYS
from tests.pipeline_helpers import person, survey

# Every indicator domain.md names.
DOMAIN_INDICATORS = {
    "eol_conversation", "pain_assessed", "oral_health_assessed", "prn_opioid", "prn_anxiolytic",
    "pressure_ulcer_free", "not_alone_at_death", "bereavement_followup_offered",
    "individual_plan", "hospital_admission_last_30d", "registry_coverage", "spec_need",
    "spec_received", "spec_unmet", "spec_unmet_share", "home_death_share",
    "home_death_share_sphs", "non_cancer_share_specialised", "palliative_beds_per_100k",
    "hospital_palliative_beds_per_100k", "specialist_physicians_per_100k",
    "specialist_nurses_per_100k", "on_call_24_7_available", "consult_team_available",
    "outpatient_clinic_available", "specialised_home_care_available",
}  # fmt: skip
RAW = tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))


def test_the_catalogue_holds_every_indicator_of_the_domain_with_its_targets() -> None:
    cat = default_catalogue()
    assert set(cat.indicators) == DOMAIN_INDICATORS
    targets = {i: t for i, ind in cat.indicators.items() if (t := ind.target) is not None}
    assert targets["eol_conversation"].value == 0.98
    assert targets["pain_assessed"].value == 1.0
    assert targets["oral_health_assessed"].value == 0.90
    assert targets["pressure_ulcer_free"].value == 0.90
    assert (targets["spec_unmet_share"].comparator, targets["spec_unmet_share"].value,
            targets["spec_unmet_share"].warn_value) == ("<=", 0.25, 0.50)  # fmt: skip
    assert targets["palliative_beds_per_100k"].value == 8.0
    assert targets["specialist_physicians_per_100k"].value == 4.0
    assert targets["specialist_nurses_per_100k"].value == 5.0
    assert targets["non_cancer_share_specialised"].value == 0.20
    assert "registry_coverage" not in targets  # the operator sets it
    for ind in cat.indicators.values():
        assert ind.title_en and ind.title_sv and ind.min_n == 5
        if ind.target:
            assert ind.target.source and ind.target.valid_from <= date(2025, 1, 1)
    assert cat.indicators["hospital_admission_last_30d"].direction == "lower_is_better"


def test_process_indicators_count_expected_deaths_only() -> None:
    cat = default_catalogue()
    s = DeathSurvey.model_validate(
        survey("C1", person("C1"), expected_death=True,
               measures={"eol_conversation": True, "pain_assessed": None,
                         "hospital_admission_last_30d": None, "present_at_death": "staff"})
    )  # fmt: skip
    v = cat.survey_vector(s)
    assert v["eol_conversation.num"] == v["eol_conversation.den"] == 1
    assert "pain_assessed.num" not in v and v["pain_assessed.den"] == 1  # unanswered = not done
    assert "hospital_admission_last_30d.den" not in v  # lower is better: unanswered left out
    assert v["not_alone_at_death.num"] == 1
    unexpected = DeathSurvey.model_validate(
        survey("C2", person("C2"), expected_death=False, measures={"eol_conversation": True})
    )
    assert "eol_conversation.den" not in cat.survey_vector(unexpected)


def _with(**changes: object) -> dict:  # type: ignore[type-arg]
    raw = tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    raw["indicator"][0].update(changes)
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_with(kind="ratio"), "kind must be one of"),
        (_with(population="adults"), "population must name a [population] entry"),
        (_with(periods=["fortnight"]), "expected a list drawn from"),
        (_with(target={"comparator": ">=", "value": 0.9}), "target needs comparator"),
        (_with(title_sv=""), "missing title_sv"),
        (_with(id="Bad-Id"), "lower_snake_case"),
        (_with(numerator={"measures.pain_assessed": {"maybe": 1}}), "matcher for"),
        (_with(tags=["headline"]), "tags: expected a list drawn from"),
    ],
)
def test_a_broken_catalogue_is_refused_with_the_indicator_named(raw: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(raw, "edited.toml")
    assert message in str(err.value)
    assert "edited.toml" in str(err.value)


def test_the_lists_other_parts_read_are_tags_of_the_catalogue() -> None:
    """The overview's key indicators, the CLI's summary and the bench's load are tags; a tag
    nobody reads is refused (a typo would otherwise empty a list silently)."""
    cat = default_catalogue()
    assert {i.id for i in cat.tagged("key")} == {
        "registry_coverage", "eol_conversation", "pain_assessed", "prn_opioid",
        "pressure_ulcer_free", "spec_unmet_share", "non_cancer_share_specialised",
        "home_death_share",
    }  # fmt: skip
    summary = cat.tagged("summary")
    assert [(i.id, i.short_en) for i in summary][:2] == [
        ("registry_coverage", "coverage"), ("spec_need", "need"),
    ]  # fmt: skip
    bench = {i.id for i in cat.tagged("bench")}
    assert len(bench) == 20 and bench <= set(cat.indicators)
    assert "palliative_beds_per_100k" in bench
    assert cat.indicators["pain_assessed"].short_en == "pain_assessed"  # defaults to the id
    with pytest.raises(KeyError, match="unknown indicator tag"):
        cat.tagged("headline")


def test_duplicate_ids_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    raw = tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    raw["indicator"].append(dict(raw["indicator"][0]))
    with pytest.raises(CatalogueError, match="used twice"):
        parse_catalogue(raw)
    with pytest.raises(CatalogueError, match="PALLIWATCH_CATALOGUE"):
        load_catalogue(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[indicator]\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid TOML"):
        load_catalogue(bad)


def test_adding_an_indicator_is_a_catalogue_edit() -> None:
    """A new share indicator appears in the counters, the vectors and every row, with no code
    change (the worker-level twin is in tests/test_engine_integration.py)."""
    raw = tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    raw["indicator"].append(
        {
            "id": "nursing_home_death_share",
            "title_en": "Deaths in nursing homes",
            "title_sv": "Avlidna på särskilt boende",
            "kind": "share",
            "population": "all_deaths",
            "numerator": {"place_of_death": ["nursing_home", "short_term_care"]},
            "direction": "none",
            "breakdowns": ["sex"],
        }
    )
    cat = parse_catalogue(raw)
    assert "nursing_home_death_share.num" in cat.counters()
    surveys = [
        DeathSurvey.model_validate(
            survey(f"N{i}", person(f"N{i}"), month="2026-09",
                   place_of_death="nursing_home" if i < 3 else "hospital")
        )
        for i in range(8)
    ]  # fmt: skip
    rows = oracle(surveys, [], [], [], date(2026, 11, 23), cat, record_keys=KEYS)
    month = rows[("nursing_home_death_share", "region", "09", "all", "month", date(2026, 9, 30))]
    assert (month.numerator, month.n, month.value) == (3, 8, 3 / 8)
    by_sex = {k[3] for k in rows if k[0] == "nursing_home_death_share" and k[1] == "nation"}
    assert by_sex == {"all", "sex:male"}


@pytest.mark.integration
def test_migrate_seeds_definitions_and_default_targets_without_overwriting(
    isolated: Isolated,
) -> None:
    url = isolated.settings.database_url
    with psycopg.connect(url) as conn:
        ids = {r[0] for r in conn.execute("SELECT indicator_id FROM indicator_catalogue")}
        assert ids == DOMAIN_INDICATORS
        conn.execute(
            "UPDATE targets SET value = 0.97, source = 'operator' "
            "WHERE indicator_id = 'eol_conversation' AND scope = 'national'"
        )
        conn.commit()
    migrate(isolated.settings.database)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT value, source FROM targets WHERE indicator_id = 'eol_conversation'"
        ).fetchall()
        assert row == [(0.97, "operator")]
        n = conn.execute("SELECT count(*) FROM targets WHERE scope = 'national'").fetchone()
        assert n == (11,)  # the catalogue's default targets
