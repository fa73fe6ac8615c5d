"""Creating the catalogue's topics and checking that the broker answers."""

from __future__ import annotations

import logging
import socket
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.settings import Settings
from streams.topics import CATALOGUE

log = logging.getLogger(__name__)


class KafkaUnavailable(RuntimeError):
    pass


def unreachable_message(settings: Settings) -> str:
    return (
        f"Kafka not reachable at {settings.kafka_bootstrap}: run `palliwatch services up` "
        "or set PALLIWATCH_KAFKA_BOOTSTRAP"
    )


def require_reachable(settings: Settings) -> None:
    """Fail fast, naming the fix, when no bootstrap server accepts a TCP connection."""
    for hostport in settings.kafka_bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except (OSError, ValueError):
            continue
    raise KafkaUnavailable(unreachable_message(settings))


def admin_client(settings: Settings, timeout_s: float = 10.0) -> KafkaAdminClient:
    require_reachable(settings)
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            client_id="palliwatch-admin",
            request_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError) as e:
        raise KafkaUnavailable(unreachable_message(settings)) from e


def ensure_topics(settings: Settings) -> list[str]:
    """Create every catalogue topic that is missing; return the names created."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=settings.topic(t),
                num_partitions=t.partitions or settings.partitions,
                replication_factor=1,
                topic_configs=t.config(),
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
        # A new topic reaches the broker's metadata a moment after creation; wait for it so the
        # caller's producers and consumers find every topic.
        names = {settings.topic(t) for t in CATALOGUE}
        deadline = time.monotonic() + 30
        while not names <= set(admin.list_topics()):
            if time.monotonic() > deadline:
                missing = sorted(names - set(admin.list_topics()))
                raise KafkaUnavailable(f"topics not visible 30 s after creation: {missing}")
            time.sleep(0.2)
        return created
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
