"""Fixtures for integration tests on the real local stack.

`local_stack` runs `palliwatch services up` (Kafka in KRaft mode and PostgreSQL as real local
processes) unless PALLIWATCH_KAFKA_BOOTSTRAP / PALLIWATCH_DATABASE_URL point elsewhere. If a
service does not come up the tests FAIL: they are never skipped for a missing service.

Each integration test gets its own topic namespace, Faust app id (consumer group, changelogs)
and database, so tests neither see each other's data nor the demo's.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from processors.db import drop_database, migrate
from streams import settings as settings_mod
from streams.settings import REPO_ROOT, Settings, child_env
from streams.tooling import services
from streams.tooling.kafka_admin import delete_run_topics, ensure_topics
from tests.keys import TEST_CELL_KEY_SECRET

TEST_AS_OF = datetime.now(UTC).date()
# Every worker the tests start, and every oracle, use the tests' Cell Key Method secret.
os.environ[Settings.variable("cell_key_secret")] = TEST_CELL_KEY_SECRET
os.environ.pop(Settings.variable("cell_key_secret_file"), None)


@pytest.fixture(scope="session")
def local_stack() -> Settings:
    base = settings_mod.load()
    try:
        services.up(base)
    except services.ServiceError as e:
        pytest.fail(f"the local stack did not come up: {e}", pytrace=False)
    status = services.status(base)
    if not all(status.values()):
        pytest.fail(f"services not healthy after `services up`: {status}", pytrace=False)
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Isolated:
    settings: Settings  # database_url: the writer's (the worker's); owner_url: the owner's
    env: dict[str, str]  # child_env(worker): the environment of the worker a test starts
    db_name: str
    # The worker's settings: these, with a state directory of its own, the test's as-of date
    # and a short re-evaluation period.
    worker: Settings


@pytest.fixture
def isolated(local_stack: Settings, request: pytest.FixtureRequest) -> Iterator[Isolated]:
    """Own topics, app id and database. ``@pytest.mark.partitions(n)`` sets the partition count:
    tests whose expectations depend on the order of records with *different* keys use 1, since
    Kafka orders records only within a partition."""
    marker = request.node.get_closest_marker("partitions")
    partitions = int(marker.args[0]) if marker else local_stack.partitions
    tag = uuid.uuid4().hex[:10]
    db_name = f"palliwatch_test_{tag}"
    # As a deployment runs: the owner creates and migrates the database, the worker writes as
    # the writer (no DDL; processors/access.py).
    admin_url = local_stack.owner_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    s = local_stack.in_database(db_name).replace(
        app_id=f"palliwatch-test-{tag}",
        topic_namespace=f"test-{tag}",
        web_port=_free_port(),
        partitions=partitions,
    )
    worker_settings = s.replace(
        state_dir=local_stack.state_dir / "tests" / tag,
        # Evaluate as of the test's start day: a run that crosses midnight stays deterministic.
        as_of_date=TEST_AS_OF,
        reevaluate_seconds=2.0,
    )
    migrate(s.database)
    ensure_topics(s)
    try:
        yield Isolated(s, child_env(worker_settings), db_name, worker_settings)
    finally:
        delete_run_topics(s)
        drop_database(admin_url, db_name)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM, and SIGKILL when it has not exited within ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class WorkerProcess:
    """A real `palliwatch worker` subprocess with its log kept for failure messages."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.env = env
        self._log = log_path.open("ab")
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.tooling.cli", "worker"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")

    def _terminate(self) -> None:
        stop_process(self.proc)

    def restart(self) -> None:
        """Stop the worker cleanly and start a new one on the same app id and state."""
        self._terminate()
        self.proc = self._start()

    def stop(self) -> None:
        self._terminate()
        self._log.close()


@pytest.fixture
def worker(isolated: Isolated) -> Iterator[WorkerProcess]:
    w = WorkerProcess(isolated.env, isolated.worker.state_dir / "worker.log")
    try:
        yield w
    finally:
        w.stop()


def wait_for(predicate, timeout_s: float, what: str, worker: WorkerProcess | None = None):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if worker is not None:
            worker.assert_alive()
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    tail = f"\nworker log:\n{worker.log_tail()}" if worker is not None else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{tail}")
