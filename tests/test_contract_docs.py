"""The documented contracts: every example validates, every reason is documented, no drift."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson

from processors.validation import REASON_MEANINGS, Reason, parse
from schemas.export import MODELS, drifted, render
from schemas.topics import CONTRACT_TOPICS
from streams.settings import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def examples() -> dict[str, tuple[str, str]]:
    """topic -> (documented key, JSON example)."""
    out = {}
    for section in re.split(r"^## ", DOC, flags=re.M)[1:]:
        topic = re.match(r"`([^`]+)`", section)
        key = re.search(r"^Key `([^`]+)`:", section, flags=re.M)
        block = re.search(r"```json\n(.*?)```", section, flags=re.S)
        if topic and key and block:
            out[topic.group(1)] = (key.group(1), block.group(1))
    return out


def test_every_contract_topic_has_a_valid_documented_example() -> None:
    found = examples()
    assert set(found) == {t.name for t in CONTRACT_TOPICS}
    for spec in CONTRACT_TOPICS:
        key, text = found[spec.name]
        raw = orjson.dumps(orjson.loads(text))
        assert spec.model is not None
        result = parse(raw, spec.model, NOW, key=key.encode(), expected_key=spec.key_for)
        assert isinstance(result, spec.model), (spec.name, result)


def test_every_dead_letter_reason_is_documented() -> None:
    assert set(REASON_MEANINGS) == set(Reason)
    for reason in Reason:
        assert f"`{reason.value}`" in DOC, reason


def test_json_schema_files_match_the_models() -> None:
    assert drifted() == [], "run `palliwatch schemas export` and commit schemas/json"
    for topic in MODELS:
        assert orjson.loads(render(topic))["title"] == topic


def test_a_newer_minor_shape_is_accepted_and_an_unknown_major_is_not() -> None:
    key, text = examples()["reference.population.v1"]
    spec = next(t for t in CONTRACT_TOPICS if t.name == "reference.population.v1")
    assert spec.model is not None
    newer = {**orjson.loads(text), "source_note": "added in 1.1"}
    assert isinstance(parse(orjson.dumps(newer), spec.model, NOW), spec.model)
    major = {**orjson.loads(text), "schema_version": 2}
    dead = parse(orjson.dumps(major), spec.model, NOW)
    assert not isinstance(dead, spec.model)
    assert dead.reason is Reason.UNSUPPORTED_SCHEMA_VERSION
