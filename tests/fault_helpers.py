"""Helpers for the fault-tolerance tests (tests/test_faults.py): a private Kafka broker that a
test may stop and start, a producer thread that keeps sending through a broker outage, the
partitions a worker's log says it holds, and synthetic identity-number-shaped values."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from schemas.topics import TopicSpec
from streams.settings import Settings
from streams.tooling import services
from streams.tooling.kafka_admin import admin_client
from tests.histories import History


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- a private broker ----------------------------------------------------------------------


@contextlib.contextmanager
def private_broker(base: Settings) -> Iterator[PrivateBroker]:
    """A second local KRaft broker, started with `services.kafka_up` on its own ports and state
    directory (sharing the already resolved jars), stopped and deleted afterwards.

    Stopping and starting it disturbs no other test or session that uses the shared local
    broker, and ends no process this test did not start.
    """
    root = base.state_dir / "tests" / f"broker-{uuid.uuid4().hex[:8]}"
    (root / "kafka").mkdir(parents=True)
    shared_libs = base.state_dir / "kafka" / "libs"
    if shared_libs.is_dir():  # already resolved by `services up`; else kafka_up resolves them
        (root / "kafka" / "libs").symlink_to(shared_libs)
    port, ctl = free_port(), free_port()
    s = base.replace(
        local_kafka_port=port,
        local_kafka_controller_port=ctl,
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_external=False,
        state_dir=root,
        kafka_heap="384m",
    )
    broker = PrivateBroker(s, port, ctl)
    try:
        broker.up()
        yield broker
    finally:
        broker.down()
        shutil.rmtree(root, ignore_errors=True)


@dataclasses.dataclass
class PrivateBroker:
    settings: Settings
    port: int
    controller_port: int

    def up(self) -> None:
        """`services.kafka_up` on this broker's ports and state directory."""
        services.kafka_up(self.settings)

    def down(self) -> None:
        # This process started the broker, so once it exits it stays a zombie child that
        # `kafka_down`'s liveness probe (kill -0) takes for alive: it would wait its full 30 s
        # and then SIGKILL. Reap our own child as soon as it exits.
        pid_file = self.settings.state_dir / "kafka" / "kafka.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else 0

        def reap() -> None:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)

        if pid:
            threading.Thread(target=reap, daemon=True).start()
        services.kafka_down(self.settings)

    def restart(self, down_for_s: float) -> float:
        """`kafka_down`, stay down ``down_for_s``, `kafka_up`; returns the outage in seconds."""
        t0 = time.monotonic()
        self.down()
        assert not services.port_open("127.0.0.1", self.port), "broker still listens after down"
        time.sleep(down_for_s)
        self.up()
        return time.monotonic() - t0


def precreate_worker_topics(s: Settings) -> None:
    """Create the Faust topics the worker would create at its start (table changelogs and the
    leader-assignor topic), so that its producer's first metadata snapshot already holds them.

    Works around a start-up race found by these tests (see test_faults.py, TestBrokerRestart):
    when a changelog topic is missing from that snapshot, the aiokafka producer's metadata later
    narrows to the topics it has sent to, `producer.key_partition` of a table write raises
    TypeError, and the agent crash-loops for good while the worker looks alive.
    """
    admin = admin_client(s)
    try:
        rf, isr = s.kafka_replication_factor, str(s.kafka_min_insync_replicas)
        wanted = [
            NewTopic(f"{s.app_id}-{table}-changelog", s.partitions, rf,
                     topic_configs={"cleanup.policy": "compact", "min.insync.replicas": isr})
            for table in ("people", "scope-months")
        ] + [NewTopic(f"{s.app_id}-__assignor-__leader", 1, rf)]  # fmt: skip
        admin.create_topics(wanted)
        names = {t.name for t in wanted}
        deadline = time.monotonic() + 30
        while not names <= set(admin.list_topics()):
            assert time.monotonic() < deadline, "worker topics not visible after 30 s"
            time.sleep(0.2)
    finally:
        admin.close()


# ---- a producer that keeps sending through an outage ---------------------------------------


def send_head(s: Settings, h: History) -> tuple[History, list[tuple[TopicSpec, dict[str, Any]]]]:
    """Send the structure, half the official deaths and a third of the surveys of ``h``; return
    that part as a history (for the oracle) and the rest, in order, for an OutageProducer."""
    from schemas.topics import DEATH_SURVEYS, OFFICIAL_DEATHS, POPULATION, UNIT_EVENTS
    from streams.tooling.producer import make_producer, send_records

    cut, half = len(h.surveys) // 3, len(h.official) // 2
    producer = make_producer(s)
    send_records(producer, s, POPULATION, h.population)
    send_records(producer, s, UNIT_EVENTS, h.units)
    send_records(producer, s, OFFICIAL_DEATHS, h.official[:half])
    send_records(producer, s, DEATH_SURVEYS, h.surveys[:cut])
    producer.close()
    assert h.admitted == h.surveys  # the head of the surveys is the head of what is admitted
    head = History(admitted=h.surveys[:cut], official=h.official[:half], units=h.units,
                   population=h.population)  # fmt: skip
    rest: list[tuple[TopicSpec, dict[str, Any]]] = [(DEATH_SURVEYS, r) for r in h.surveys[cut:]]
    rest += [(OFFICIAL_DEATHS, o) for o in h.official[half:]]
    return head, rest


class OutageProducer(threading.Thread):
    """Sends ``items`` (spec, record) in order at a steady pace with one kafka-python producer
    configured to ride out a broker outage (idempotent, unlimited retries within a delivery
    timeout longer than the outage, short reconnect backoff). Per-key order is kept (idempotent
    producer), which the oracle relies on. ``failed`` holds records whose delivery failed."""

    def __init__(self, s: Settings, items: list[tuple[TopicSpec, dict[str, Any]]], pace_s: float):
        super().__init__(daemon=True, name="outage-producer")
        self.s = s
        self.items = items
        self.pace_s = pace_s
        self.sent = 0
        self.failed: list[tuple[TopicSpec, dict[str, Any], str]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.s.kafka_bootstrap,
                client_id="palliwatch-fault-test",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                delivery_timeout_ms=180_000,
                request_timeout_ms=10_000,
                max_block_ms=180_000,
                reconnect_backoff_ms=100,
                reconnect_backoff_max_ms=1_000,
            )
            futures = []
            for spec, record in self.items:
                fut = producer.send(
                    self.s.topic(spec), key=spec.key_for(record), value=orjson.dumps(record)
                )
                futures.append((spec, record, fut))
                self.sent += 1
                time.sleep(self.pace_s)
            producer.flush(timeout=200)
            for spec, record, fut in futures:
                try:
                    fut.get(timeout=1)
                except KafkaError as e:
                    self.failed.append((spec, record, repr(e)))
            producer.close(timeout=10)
        except BaseException as e:  # reported by the test
            self.error = e


# ---- worker logs ---------------------------------------------------------------------------

_ASSIGNED = "Setting newly assigned partitions"


def _parse_set(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.strip().strip("{}").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(part))
    return out


def assigned_partitions(log_path: Path, topic: str) -> set[int] | None:
    """The partitions of ``topic`` in the worker's latest assignment (its log's last "Setting
    newly assigned partitions" table); None before the first assignment."""
    text = log_path.read_text(errors="replace")
    at = text.rfind(_ASSIGNED)
    if at < 0:
        return None
    table = text[at:].split(" for group ", 1)[0]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == topic:
            return _parse_set(cells[1])
    return set()


def committed(s: Settings, topic: str, partitions: set[int]) -> bool:
    """Whether the worker group has committed an offset for every one of ``partitions``."""
    consumer = KafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id, enable_auto_commit=False
    )
    try:
        return all(consumer.committed(TopicPartition(topic, p)) is not None for p in partitions)
    finally:
        consumer.close()


# ---- synthetic identity-number-shaped values -----------------------------------------------


def luhn_check_digit(nine_digits: str) -> str:
    total = 0
    for i, ch in enumerate(nine_digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def synthetic_identity_number(born: date, serial: int) -> str:
    """A 12-digit YYYYMMDD-NNNC value with a valid check digit, built from a synthetic date and
    serial at runtime (the test file holds no such number)."""
    yymmdd = born.strftime("%y%m%d")
    nnn = f"{serial % 1000:03d}"
    return f"{born:%Y%m%d}-{nnn}{luhn_check_digit(yymmdd + nnn)}"
