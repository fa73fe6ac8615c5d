"""INTEGRATION TESTS on a secured broker the tests start from the project's own jars: a SASL_SSL
listener (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN users) and an SSL listener that requires a
client certificate (mutual TLS), a CA and certificates made by openssl at test time, and ACLs
enforced by KRaft's StandardAuthorizer (nobody but the admin may do anything without an ACL).

The worker, `topics create`, the simulator and `dlq` run end to end against it as the real CLI
and the result equals the oracle; a wrong password, a missing ACL, a missing client
certificate or an untrusted CA each fail with one line that says what to fix.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from schemas.models import DeathSurvey, OfficialDeaths, Population, UnitEvent
from schemas.topics import DEATH_SURVEYS, OFFICIAL_DEATHS, POPULATION, UNIT_EVENTS
from streams import kafka_clients
from streams import settings as settings_mod
from streams.settings import REPO_ROOT, Settings, child_env
from streams.tooling.kafka_admin import ensure_topics
from tests.conftest import TEST_AS_OF, Isolated, WorkerProcess
from tests.kafka_cluster import (
    MTLS_CN,
    SecureBroker,
    secure_broker,
    topic_setting,
)
from tests.keys import KEYS
from tests.pipeline_helpers import dead_letters, read_topic
from tests.test_engine_integration import wait_equal

pytestmark = pytest.mark.integration

WORKER = "palliwatch-worker"  # SCRAM-SHA-512: topics, changelogs, its consumer group
SIMULATOR = "palliwatch-sim"  # SCRAM-SHA-256: writes the contract topics, nothing else
NO_GROUP = "palliwatch-nogroup"  # the worker's topics but not its consumer group
NOBODY = "palliwatch-nobody"  # no ACL at all
# The isolated fixture's names: topic namespace "test-<tag>", app id "palliwatch-test-<tag>".
TOPIC_PREFIXES = ("test-", "palliwatch-test-")


def _allow(principal: str, kind: ResourceType, prefix: str, op: ACLOperation) -> ACL:
    return ACL(
        principal=principal,
        host="*",
        operation=op,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(kind, prefix, ACLResourcePatternType.PREFIXED),
    )


def _grant(broker: SecureBroker, base: Settings) -> None:
    admin_settings = base.replace(**broker.sasl("palliwatch-admin"))
    acls = []
    for user in (
        f"User:{WORKER}",
        f"User:{WORKER}-plain",
        f"User:CN={MTLS_CN}",
        f"User:{NO_GROUP}",
    ):
        for prefix in TOPIC_PREFIXES:
            acls.append(_allow(user, ResourceType.TOPIC, prefix, ACLOperation.ALL))
        if user != f"User:{NO_GROUP}":
            acls.append(_allow(user, ResourceType.GROUP, "palliwatch-", ACLOperation.ALL))
    for op in (ACLOperation.WRITE, ACLOperation.DESCRIBE):
        acls.append(_allow(f"User:{SIMULATOR}", ResourceType.TOPIC, "test-", op))
    client = kafka_clients.admin(admin_settings)
    try:
        result = client.create_acls(acls)
        assert not result["failed"], result["failed"]
    finally:
        client.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[SecureBroker]:
    # Not from `local_stack`: TestEndToEnd overrides that fixture with this broker's settings.
    base = settings_mod.load()
    users = {WORKER: "SCRAM-SHA-512", SIMULATOR: "SCRAM-SHA-256", NO_GROUP: "SCRAM-SHA-256",
             NOBODY: "SCRAM-SHA-256"}  # fmt: skip
    with secure_broker(base, users) as b:
        _grant(b, base)
        yield b


def _as(base: Settings, broker: SecureBroker, user: str, **changes: Any) -> Settings:
    return base.replace(**{**broker.sasl(user), **changes})


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.tooling.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_line_failure(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The command failed with exit 1 and one line on stderr holding ``expected``."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


class TestEndToEnd:
    """`isolated` and `worker` (tests/conftest.py) on the secured broker, as the worker user."""

    @pytest.fixture
    def local_stack(self, local_stack: Settings, broker: SecureBroker) -> Settings:
        return _as(local_stack, broker, WORKER)

    def test_worker_cli_and_simulator_over_sasl_ssl_equal_the_oracle(
        self, broker: SecureBroker, isolated: Isolated, worker: WorkerProcess, local_stack: Settings
    ) -> None:
        s = isolated.settings
        assert s.kafka_security.protocol == "SASL_SSL"
        assert isolated.env["PALLIWATCH_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        # `topics create` as the worker user (it holds Create on its prefixes).
        made = _cli(isolated.env, "topics", "create")
        assert made.returncode == 0, made.stderr[-2000:]

        # The simulator as its own SCRAM-SHA-256 user, which may only write the contract topics.
        sim_env = child_env(_as(isolated.worker, broker, SIMULATOR))
        sent = _cli(sim_env, "simulate", "--backfill", "300", "--months", "2", "--seed", "7")
        assert sent.returncode == 0, sent.stderr[-2000:]
        # 300 deaths' first surveys plus their corrections and withdrawals.
        m = re.search(r"backfill: (\d+) survey records sent", sent.stdout)
        assert m and int(m.group(1)) >= 300, sent.stdout
        n_sent = int(m.group(1))

        def records(spec: Any) -> list[dict[str, Any]]:
            dead = {(d["source_topic"], d["source_partition"], d["source_offset"])
                    for d in dead_letters(s)}  # fmt: skip
            return [orjson.loads(r.value) for r in read_topic(s, s.topic(spec))
                    if (r.topic, r.partition, r.offset) not in dead]  # fmt: skip

        # Every contract record is in; the worker has judged them all (dead letters included).
        deadline = time.monotonic() + 120
        while len(records(DEATH_SURVEYS)) + len(dead_letters(s)) < n_sent:
            worker.assert_alive()
            assert time.monotonic() < deadline, "the surveys did not arrive"
            time.sleep(1)
        from processors.oracle import oracle

        want = oracle(
            [DeathSurvey.model_validate(r) for r in records(DEATH_SURVEYS)],
            [OfficialDeaths.model_validate(r) for r in records(OFFICIAL_DEATHS)],
            [UnitEvent.model_validate(r) for r in records(UNIT_EVENTS)],
            [Population.model_validate(r) for r in records(POPULATION)],
            TEST_AS_OF,
            record_keys=KEYS,
        )
        assert len(want) > 1000
        wait_equal(isolated, want, worker, timeout=300)
        # The changelogs the worker created carry the deployment's min.insync.replicas.
        for table in ("people", "scope-months"):
            name = f"{s.app_id}-{table}-changelog"
            assert topic_setting(s, name, "min.insync.replicas") == ("1", "DYNAMIC_TOPIC_CONFIG")

        # dlq list and a dry-run replay work over SASL_SSL too.
        listed = _cli(isolated.env, "dlq", "list")
        assert listed.returncode == 0, listed.stderr[-2000:]
        assert f"dead letters in {s.topic_namespace}." in listed.stdout
        replay = _cli(isolated.env, "dlq", "replay", "--reason", "outside_registration_window",
                      "--dry-run")  # fmt: skip
        assert replay.returncode == 0, replay.stderr[-2000:]


# ---- clients of every mechanism and protocol ---------------------------------------------


def _round_trip(s: Settings) -> None:
    """Create the catalogue's topics, write a record and read it back with this client."""
    ensure_topics(s)
    topic = s.topic(POPULATION)
    producer = kafka_clients.producer(s)
    producer.send(topic, key=b"k", value=b'{"probe": 1}').get(timeout=30)
    producer.close()
    got = read_topic(s, topic)
    assert [r.value for r in got] == [b'{"probe": 1}']


@pytest.mark.parametrize("how", ["scram-sha-512", "plain", "mtls"])
def test_each_mechanism_creates_writes_and_reads(
    how: str, broker: SecureBroker, local_stack: Settings
) -> None:
    ns = f"test-{how}-{time.monotonic_ns() % 10**8}"
    if how == "mtls":
        s = local_stack.replace(**broker.mtls(), topic_namespace=ns)
        assert s.kafka_security.protocol == "SSL" and s.kafka_security.ssl_certfile
    else:
        user = WORKER if how == "scram-sha-512" else f"{WORKER}-plain"
        s = _as(local_stack, broker, user, topic_namespace=ns)
        assert s.kafka_security.sasl_mechanism == how.upper()
    _round_trip(s)


# ---- refusals: one line naming the fix ----------------------------------------------------


def _env_for(base: Settings, s: Settings, tag: str) -> dict[str, str]:
    return child_env(
        s.replace(
            topic_namespace=f"test-{tag}",
            app_id=f"palliwatch-test-{tag}",
            state_dir=base.state_dir / "tests" / tag,
        )
    )


def test_a_wrong_password_fails_in_one_line(broker: SecureBroker, local_stack: Settings) -> None:
    wrong = broker.sasl(WORKER)["kafka_security"].replace(sasl_password="not-the-password")
    s = _as(local_stack, broker, WORKER, kafka_security=wrong)
    started = time.monotonic()
    proc = _cli(_env_for(local_stack, s, "wrongpw"), "topics", "create")
    # Usually "authentication failed"; after several refused logins the broker sometimes closes
    # the connections before saying why, and the line then names the credentials and protocol.
    line = _one_line_failure(proc, "PALLIWATCH_KAFKA_SASL_PASSWORD", "palliwatch-worker")
    assert "authentication failed" in line or "closed every SASL_SSL login" in line, line
    assert time.monotonic() - started < 60, "a refused login must not look like a hang"


def test_a_user_without_acls_fails_in_one_line(broker: SecureBroker, local_stack: Settings) -> None:
    s = _as(local_stack, broker, NOBODY)
    env = _env_for(local_stack, s, "nobody")
    line = _one_line_failure(_cli(env, "simulate", "--backfill", "5"),
                             "TOPIC_AUTHORIZATION_FAILED", "kafka-acls")  # fmt: skip
    assert "palliwatch-nobody" in line
    _one_line_failure(_cli(env, "worker"), "TOPIC_AUTHORIZATION_FAILED", "kafka-acls")


def test_a_worker_without_its_group_acl_fails_in_one_line(
    broker: SecureBroker, local_stack: Settings
) -> None:
    s = _as(local_stack, broker, NO_GROUP)
    env = _env_for(local_stack, s, "nogroup")
    # The database is the local stack's; the worker stops before it matters.
    _one_line_failure(_cli(env, "worker"), "GROUP_AUTHORIZATION_FAILED", "palliwatch-test-nogroup")


def test_mutual_tls_without_a_certificate_or_with_another_ca_fails_in_one_line(
    broker: SecureBroker, local_stack: Settings
) -> None:
    no_cert = local_stack.replace(**broker.mtls(with_certificate=False))
    _one_line_failure(_cli(_env_for(local_stack, no_cert, "nocert"), "topics", "create"),
                      "client certificate", "PALLIWATCH_KAFKA_SSL_CERTFILE")  # fmt: skip
    other_ca = local_stack.replace(**broker.mtls(cafile=broker.pki.other_ca))
    _one_line_failure(_cli(_env_for(local_stack, other_ca, "otherca"), "topics", "create"),
                      "not accepted", "PALLIWATCH_KAFKA_SSL_CAFILE")  # fmt: skip


def test_plaintext_client_on_a_tls_listener_fails_in_one_line(
    broker: SecureBroker, local_stack: Settings
) -> None:
    s = local_stack.replace(kafka_bootstrap=broker.ssl_bootstrap, kafka_external=True)
    _one_line_failure(_cli(_env_for(local_stack, s, "plaintext"), "topics", "create"),
                      "PALLIWATCH_KAFKA_SECURITY_PROTOCOL")  # fmt: skip
