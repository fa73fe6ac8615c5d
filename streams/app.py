"""The Faust app, its topics and its tables. The agents are in streams/agents/, one file each;
streams/worker.py applies streams/faust_compat.py and registers them.

Partitioning (see README, "Architecture"):
- ``people`` keyed by person_ref, fed by palliwatch.surveys-by-person.v1 (batch messages sent
  to the person's partition): one survey per person, and which revision of it counts;
- ``scope-months`` keyed by ``<scope>|<month>``, fed by palliwatch.scope-deltas.v1 (key: the
  scope, a region code or SE).
Every table computes a key's changelog partition from its source key (the person, the scope):
it equals the partition the key's source records are in, so a worker restores exactly the state
of the partitions it is assigned, and the agents can batch with ``take_events``.
"""

from __future__ import annotations

from typing import Any

import faust

from processors.flow import SETTLE_BATCH
from schemas import topics
from streams import kafka_clients, web
from streams.faust_compat import ScopeTable, SourceKeyedTable
from streams.settings import load

settings = load()

# person_ref -> record key (the Cell Key Method's secret): read once, before any record; a
# deployment without a secret stops here with the line that says what to set.
RECORD_KEYS = settings.record_keys()

app = faust.App(
    settings.app_id,
    **kafka_clients.faust_app_settings(settings),
    datadir=str(settings.state_dir / "faust"),
    broker_commit_interval=settings.commit_interval_seconds,
    broker_session_timeout=settings.session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
    table_standby_replicas=0,
    # The web port: /metrics and /health only, none of Faust's own pages (streams/web.py).
    **web.app_settings(bind=settings.web_bind, port=settings.web_port),
)
web.install(app)


def _topic(spec: topics.TopicSpec, maxsize: int | None = None) -> faust.TopicT:
    """``maxsize``: how many records the worker reads ahead of its agent (Faust's default,
    ``stream_buffer_maxsize``, is 4096 — fine for single records, but 4096 batch messages of a
    quarter megabyte each would be a gigabyte of read-ahead)."""
    # Contract topics are created from the catalogue, never declared by Faust.
    return app.topic(
        settings.topic(spec),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions or settings.partitions,
        internal=False,
        maxsize=maxsize,
    )


contract_topics = {spec.name: _topic(spec) for spec in topics.CONTRACT_TOPICS}
valid_topics = {spec.name: _topic(spec.valid) for spec in topics.CONTRACT_TOPICS}
# Batch messages: a few in hand are thousands of surveys or deltas.
by_person_topic = _topic(topics.SURVEYS_BY_PERSON, maxsize=2 * SETTLE_BATCH)
scope_topic = _topic(topics.SCOPE_DELTAS, maxsize=256)
dead_letter_topic = _topic(topics.DEAD_LETTER)


def _table(name: str, cls: type[SourceKeyedTable] = SourceKeyedTable) -> Any:
    return app.tables.add(
        cls(
            app,
            name=name,
            default=None,
            beacon=app.tables.beacon,
            # Keys are the source topic's key, byte for byte (raw codec). Values are compact
            # JSON bytes, decoded on access: a million surveys' states as Python dicts and
            # lists would cost several times the memory (the changelog holds the same JSON).
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            extra_topic_configs={"min.insync.replicas": settings.kafka_min_insync_replicas},
        )
    )


# person_ref -> the person's surveys: admission and revision state (processors/admission.py)
people = _table("people")
# <scope>|<month> -> scope-month state; <scope>|months; SE|structure (processors/aggregate.py)
scope_months = _table("scope-months", ScopeTable)


# The deployed name of every catalogue topic -> its catalogue name (metric labels).
catalogue_names = {settings.topic(spec): spec.name for spec in topics.CATALOGUE}
# The topics the agents consume: consumer lag, and the aggregation's view of its backlog.
lag_sources = {
    name: catalogue_names.get(name, name)
    for topic in [*contract_topics.values(), *valid_topics.values(), by_person_topic, scope_topic]
    for name in topic.topics
}

__all__ = ["app", "people", "scope_months"]
