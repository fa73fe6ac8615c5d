"""Creating the catalogue's topics and checking that the broker answers."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from processors import retry
from schemas.topics import CATALOGUE, TopicSpec
from streams import kafka_clients
from streams.kafka_clients import KafkaUnavailable, require_reachable, unreachable_message
from streams.settings import Settings

__all__ = ["KafkaUnavailable", "admin_client", "ensure_topics", "require_reachable",
           "unreachable_message"]  # fmt: skip

log = logging.getLogger(__name__)


def admin_client(settings: Settings, timeout_s: float = 10.0) -> KafkaAdminClient:
    return kafka_clients.admin(settings, timeout_s)


def topic_configs(settings: Settings, spec: TopicSpec) -> dict[str, str]:
    """The catalogue's configuration plus the deployment's min.insync.replicas."""
    return {**spec.config(), "min.insync.replicas": str(settings.kafka_min_insync_replicas)}


def ensure_topics(settings: Settings) -> list[str]:
    """Create every catalogue topic that is missing; return the names created."""
    admin = admin_client(settings)
    try:
        existing = _list_topics(admin, settings)
        wanted = [
            NewTopic(
                name=settings.topic(t),
                num_partitions=t.partitions or settings.partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=topic_configs(settings, t),
            )
            for t in CATALOGUE
            if settings.topic(t) not in existing
        ]
        created: list[str] = []
        for nt in wanted:
            try:
                admin.create_topics([nt])
                created.append(nt.name)
            except TopicAlreadyExistsError:
                pass  # another process created it in between: fine
            except KafkaError as e:
                raise KafkaUnavailable(kafka_clients.explain(e, settings, nt.name)) from e
        # A new topic reaches the broker's metadata a moment after creation; wait for it so the
        # caller's producers and consumers find every topic.
        names = {settings.topic(t) for t in CATALOGUE}
        if not retry.wait_until(lambda: names <= set(admin.list_topics()), 30, 0.2):
            missing = sorted(names - set(admin.list_topics()))
            raise KafkaUnavailable(f"topics not visible 30 s after creation: {missing}")
        return created
    finally:
        admin.close()


def _list_topics(admin: KafkaAdminClient, settings: Settings) -> set[str]:
    try:
        return set(admin.list_topics())
    except KafkaError as e:
        raise KafkaUnavailable(kafka_clients.explain(e, settings)) from e


def run_topics(settings: Settings, existing: set[str]) -> list[str]:
    """Of ``existing``, the topics a run with these settings made: its catalogue topics, and
    what Faust made for its app id (changelogs, the assignor's topic; also of app ids that
    extend it, such as ``<app id>-next``). Only for a run with a topic namespace of its own:
    without one these are the deployment's topics."""
    if not settings.topic_namespace:
        raise ValueError("run_topics: these settings have no topic namespace of their own")
    mine = {settings.topic(t) for t in CATALOGUE}
    prefixes = (f"{settings.app_id}-", f"{settings.topic_namespace}.")
    return sorted(n for n in existing if n in mine or n.startswith(prefixes))


def delete_run_topics(settings: Settings) -> None:
    """Delete what a test or bench run left on the broker (``run_topics``)."""
    admin = admin_client(settings)
    try:
        doomed = run_topics(settings, set(admin.list_topics()))
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()


def delete_topics(settings: Settings, names: list[str]) -> None:
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()
