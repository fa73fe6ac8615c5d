"""FAULT TEST on a three-broker KRaft cluster on loopback (tests/kafka_cluster.py): every topic
has three replicas and min.insync.replicas=2; the broker that leads partitions of both the
survey topic and the scope topic is killed (SIGKILL) mid-stream. Writes and reads move to the
new leaders, nothing is lost, and the indicators equal the oracle.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaError

from schemas.topics import (
    CATALOGUE,
    DEATH_SURVEYS,
    SCOPE_DELTAS,
)
from streams import kafka_clients
from streams.settings import Settings
from tests.conftest import TEST_AS_OF, Isolated, WorkerProcess, wait_for
from tests.fault_helpers import OutageProducer, precreate_worker_topics, send_head
from tests.histories import random_history
from tests.kafka_cluster import Cluster, three_node_cluster, topic_setting
from tests.oracle_compare import oracle_of
from tests.test_engine_integration import wait_equal

pytestmark = pytest.mark.integration


def leaders(s: Settings, topic: str) -> dict[int, int]:
    """partition -> leader broker id."""
    admin = kafka_clients.admin(s)
    try:
        (desc,) = admin.describe_topics([topic])
        return {p["partition_index"]: p["leader_id"] for p in desc["partitions"]}
    finally:
        admin.close()


def replicas(s: Settings, topic: str) -> dict[int, tuple[list[int], list[int]]]:
    admin = kafka_clients.admin(s)
    try:
        (desc,) = admin.describe_topics([topic])
        return {p["partition_index"]: (p["replica_nodes"], p["isr_nodes"])
                for p in desc["partitions"]}  # fmt: skip
    finally:
        admin.close()


class TestLeaderKill:
    cluster: Cluster

    @pytest.fixture
    def local_stack(self, local_stack: Settings) -> Iterator[Settings]:
        with three_node_cluster(local_stack) as cluster:
            self.cluster = cluster
            yield local_stack.replace(
                kafka_bootstrap=cluster.bootstrap,
                kafka_external=True,
                kafka_replication_factor=3,
                kafka_min_insync_replicas=2,
            )

    @pytest.fixture
    def isolated(self, isolated: Isolated) -> Isolated:
        precreate_worker_topics(isolated.settings)  # as TestBrokerRestart (test_faults.py)
        return isolated

    def test_killing_the_leader_of_surveys_and_scopes_loses_nothing(
        self, isolated: Isolated, worker: WorkerProcess
    ) -> None:
        s = isolated.settings
        assert worker.env["PALLIWATCH_KAFKA_REPLICATION_FACTOR"] == "3"
        # Every topic palliwatch made has three replicas, all in sync.
        for spec in CATALOGUE:
            for reps, isr in replicas(s, s.topic(spec)).values():
                assert len(reps) == 3 and sorted(isr) == sorted(reps), (spec.name, reps, isr)
        wait_for(lambda: f"{s.app_id}-people-changelog" in set(_topics(s)), 60,
                 "the worker's changelogs", worker)  # fmt: skip
        for reps, _ in replicas(s, f"{s.app_id}-people-changelog").values():
            assert len(reps) == 3
        for name in [s.topic(spec) for spec in CATALOGUE] + [f"{s.app_id}-people-changelog"]:
            assert topic_setting(s, name, "min.insync.replicas") == ("2", "DYNAMIC_TOPIC_CONFIG")

        h = random_history(seed=83, n_surveys=300, as_of=TEST_AS_OF)
        first, rest = send_head(s, h)
        wait_equal(isolated, oracle_of(first, TEST_AS_OF), worker, timeout=180)

        # The broker leading the most partitions of the surveys' and the scope topics.
        surveys, scope = s.topic(DEATH_SURVEYS), s.topic(SCOPE_DELTAS)
        before = {surveys: leaders(s, surveys), scope: leaders(s, scope)}
        lead_count: dict[int, int] = {}
        for per_topic in before.values():
            for leader in per_topic.values():
                lead_count[leader] = lead_count.get(leader, 0) + 1
        victim = max(
            (b for b in lead_count if b in before[surveys].values()
             and b in before[scope].values()),
            key=lambda b: lead_count[b],
        )  # fmt: skip

        sender = OutageProducer(s, rest, pace_s=0.05)
        sender.start()
        wait_for(lambda: sender.sent >= 40, 60, "the producer to be under way", worker)
        at_kill = sender.sent
        self.cluster.node(victim).kill()
        killed_at = time.monotonic()

        # New leaders, none of them the killed broker.
        def moved() -> bool:
            try:
                now = {t: leaders(s, t) for t in before}
            except (kafka_clients.KafkaUnavailable, KafkaError):  # asked the killed broker
                return False
            return all(victim not in per.values() and -1 not in per.values()
                       for per in now.values())  # fmt: skip

        wait_for(moved, 60, f"leadership to move away from broker {victim}", worker)
        moved_after = time.monotonic() - killed_at

        sender.join(timeout=240)
        assert not sender.is_alive(), "the producer did not finish within 240 s"
        assert sender.error is None, f"the producer failed: {sender.error!r}"
        assert sender.failed == [], f"records not delivered: {sender.failed[:3]}"
        assert 0 < at_kill < len(rest), (at_kill, len(rest))

        wait_equal(isolated, oracle_of(h, TEST_AS_OF), worker, timeout=300)
        worker.assert_alive()
        print(f"leaders moved {moved_after:.1f} s after broker {victim} was killed")


def _topics(s: Settings) -> list[str]:
    admin = kafka_clients.admin(s)
    try:
        return list(admin.list_topics())
    finally:
        admin.close()
