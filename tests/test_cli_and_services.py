"""The CLI's messages, the local services, migrations and the topic catalogue."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from processors.db import migrate, migration_files, pending_migrations
from processors.queries import Cell, RegionRow
from schemas.topics import CATALOGUE, DEATH_SURVEYS, SCOPE_DELTAS
from streams.settings import MIGRATIONS_DIR, REPO_ROOT, Settings, child_env, in_database
from streams.tooling import services
from streams.tooling.cli import format_indicator_table
from streams.tooling.kafka_admin import delete_run_topics
from tests.conftest import Isolated


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.tooling.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---- messages that name the fix (no services needed) ---------------------------------------


def test_unreachable_kafka_names_the_fix() -> None:
    r = run_cli("topics", "create", env={"PALLIWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert r.returncode == 1
    assert "Kafka not reachable at 127.0.0.1:1" in r.stderr
    assert "palliwatch services up" in r.stderr and "PALLIWATCH_KAFKA_BOOTSTRAP" in r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_database_names_the_fix_and_hides_the_password() -> None:
    url = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    r = run_cli("db", "migrate", env={"PALLIWATCH_DATABASE_URL": url})
    assert r.returncode == 1
    assert "PostgreSQL not reachable" in r.stderr and "PALLIWATCH_DATABASE_URL" in r.stderr
    assert "s3cret" not in r.stderr
    assert "Traceback" not in r.stderr


def _role_passwords() -> dict[str, str]:
    from grafana.orgs import orgs

    return {org.password_env: f"pw-{org.audience.key}" for org in orgs()}


def test_db_roles_names_every_missing_password() -> None:
    env = {k: "" for k in _role_passwords()}
    r = run_cli("db", "roles", env=env)
    assert r.returncode == 2
    assert "PALLIWATCH_GRAFANA_DB_PASSWORD_PUBLIC" in r.stderr
    assert "PALLIWATCH_GRAFANA_DB_PASSWORD_REGION_25" in r.stderr
    assert "Traceback" not in r.stderr


def test_db_roles_without_createrole_says_what_to_do(isolated: Isolated) -> None:
    env = {**_role_passwords(), "PALLIWATCH_DATABASE_URL": isolated.settings.database_url}
    r = run_cli("db", "roles", env=env)
    assert r.returncode == 1
    assert "may not create roles" in r.stderr and "CREATEROLE" in r.stderr
    assert "Traceback" not in r.stderr and "pw-" not in r.stderr


def test_simulate_rejects_a_malformed_rate() -> None:
    r = run_cli("simulate", "--rate", "fast")
    assert r.returncode == 2
    assert "rate must look like 50/s" in r.stderr


def test_indicator_table_lists_all_regions_and_shows_suppression_not_zero() -> None:
    from datetime import date

    rows = [
        RegionRow(
            "09",
            date(2025, 3, 1),
            date(2026, 2, 28),
            {
                "registry_coverage": Cell(0.5, 50, 100, 100, False),
                "home_death_share": Cell(None, None, None, None, True),
            },
        )
    ]
    text = format_indicator_table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + 21
    gotland = next(line for line in lines if line.startswith("09 Gotland"))
    assert "50.0%" in gotland and "n<5" in gotland
    assert "(no data yet)" in next(line for line in lines if line.startswith("01 Stockholm"))


# ---- the topic catalogue and the compose file -------------------------------------------------


def test_catalogue_has_the_contract_topics_once_each() -> None:
    names = [t.name for t in CATALOGUE]
    assert len(names) == len(set(names))
    for contract in (
        "registry.death-surveys.v1",
        "registry.unit-events.v1",
        "reference.official-deaths.v1",
        "reference.population.v1",
        "reference.targets.v1",
    ):
        assert contract in names


def test_compose_file_is_complete_and_binds_loopback_only() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    assert {"kafka", "timescaledb", "grafana", "prometheus", "worker"} <= set(compose["services"])
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == (
        "broker,controller"
    )
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for mount in compose["services"]["grafana"]["volumes"]:
        host_path = mount.split(":")[0]
        if host_path in compose.get("volumes", {}):
            continue  # a named volume, not a path on the host
        assert (REPO_ROOT / "deploy" / host_path).resolve().exists(), mount
    assert (REPO_ROOT / "deploy" / "Dockerfile").exists()
    # The worker needs the deployment's Cell Key Method secret and never carries one itself:
    # a Docker secret file (tests/test_deploy.py checks every secret of the file).
    worker_env = compose["services"]["worker"]["environment"]
    assert "PALLIWATCH_CELL_KEY_SECRET" not in worker_env
    assert worker_env["PALLIWATCH_CELL_KEY_SECRET_FILE"] == "/run/secrets/cell_key_secret"
    # The reader roles are made with the passwords Grafana's datasources log in with: the
    # same secret files.
    from grafana.build import password_secret
    from grafana.orgs import orgs

    migrate_svc = compose["services"]["migrate"]
    assert "palliwatch db roles" in " ".join(migrate_svc["command"])
    grafana_svc = compose["services"]["grafana"]
    for org in orgs():
        secret = password_secret(org)
        assert migrate_svc["environment"][f"{org.password_env}_FILE"] == f"/run/secrets/{secret}"
        assert secret in migrate_svc["secrets"] and secret in grafana_svc["secrets"], secret


# ---- on the real services -------------------------------------------------------------------


@pytest.mark.integration
def test_services_up_is_idempotent(local_stack: Settings) -> None:
    services.up(local_stack)  # already running: must leave it alone and succeed
    assert services.status(local_stack) == {"kafka": True, "postgres": True, "prometheus": True}
    r = run_cli("services", "status")
    assert r.returncode == 0 and "kafka     up" in r.stdout and "postgres  up" in r.stdout
    assert "prometheus" in r.stdout


@pytest.mark.integration
def test_topics_are_created_from_the_catalogue(isolated: Isolated) -> None:
    s = isolated.settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        existing = set(admin.list_topics())
        assert {s.topic(t) for t in CATALOGUE} <= existing
        described = admin.describe_topics([s.topic(DEATH_SURVEYS)])
        assert len(described[0]["partitions"]) == s.partitions
        configs = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, s.topic(DEATH_SURVEYS)),
                ConfigResource(ConfigResourceType.TOPIC, s.topic(SCOPE_DELTAS)),
            ]
        )
        text = repr(configs)
        assert "compact" in text and "delete" in text
    finally:
        admin.close()


@pytest.mark.integration
def test_migrations_are_idempotent_and_safe_concurrently(local_stack: Settings) -> None:
    db_name = f"palliwatch_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(local_stack.owner_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    s = local_stack.in_database(db_name)
    try:
        assert pending_migrations(s.database) == [p.name for p in migration_files(MIGRATIONS_DIR)]
        results: list[list[str]] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                results.append(migrate(s.database))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        applied = sorted(results, key=len)
        assert applied[0] == [] and applied[1] == [p.name for p in migration_files(MIGRATIONS_DIR)]
        assert migrate(s.database) == []
        assert pending_migrations(s.database) == []
        with psycopg.connect(s.database_url) as conn:
            count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert count is not None and count[0] == len(migration_files(MIGRATIONS_DIR))
    finally:
        with psycopg.connect(local_stack.owner_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@pytest.mark.integration
def test_worker_refuses_an_unmigrated_database(local_stack: Settings, tmp_path: Path) -> None:
    db_name = f"palliwatch_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(local_stack.owner_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    try:
        url = in_database(local_stack.database_url, db_name)
        worker = local_stack.replace(
            database_url=url, owner_database_url="", topic_namespace=namespace, state_dir=tmp_path
        )
        r = run_cli("worker", env=child_env(worker))
        assert r.returncode == 1
        assert "run `palliwatch db migrate`" in r.stderr
    finally:
        ns = local_stack.replace(topic_namespace=namespace)
        delete_run_topics(ns)
        with psycopg.connect(local_stack.owner_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def test_an_exited_child_service_is_not_taken_for_running(tmp_path: Path) -> None:
    """A service this process started and that has exited is a zombie until reaped: `services
    down` must not wait its full timeout for it."""
    child = subprocess.Popen(["sleep", "0.1"])
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(str(child.pid))
    deadline = time.monotonic() + 5
    while services._pid_alive(pid_file) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert services._pid_alive(pid_file) is None


def test_kafka_cluster_ids_never_start_with_a_dash() -> None:
    """A leading "-" made the storage tool read the id as an option (a CI run failed on it)."""
    ids = [services.kafka_cluster_id() for _ in range(3000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
