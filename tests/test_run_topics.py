"""What a test or bench run deletes from the broker when it ends (kafka_admin.run_topics): its
own catalogue topics and Faust's topics for its app id, never another run's or the shared
deployment's."""

from __future__ import annotations

import pytest

from schemas.topics import CATALOGUE
from streams import settings as settings_mod
from streams.tooling.kafka_admin import run_topics


def test_a_runs_own_topics_and_its_faust_changelogs_only() -> None:
    base = settings_mod.load()
    mine = base.replace(app_id="palliwatch-test-abc", topic_namespace="test-abc")
    other = base.replace(app_id="palliwatch-test-abd", topic_namespace="test-abd")
    faust_made = [
        "palliwatch-test-abc-people-changelog",
        "palliwatch-test-abc-scope-months-changelog",
        "palliwatch-test-abc-__assignor-__leader",
        "palliwatch-test-abc-next-people-changelog",  # a second app id of the same run
    ]
    shared = [t.name for t in CATALOGUE] + [f"{base.app_id}-people-changelog"]
    others = [other.topic(t) for t in CATALOGUE] + ["palliwatch-test-abd-people-changelog"]
    existing = {*(mine.topic(t) for t in CATALOGUE), *faust_made, *shared, *others}
    assert set(run_topics(mine, existing)) == {*(mine.topic(t) for t in CATALOGUE), *faust_made}


def test_refused_without_a_namespace_of_its_own() -> None:
    with pytest.raises(ValueError, match="namespace"):
        run_topics(settings_mod.load().replace(topic_namespace=""), {"x"})
