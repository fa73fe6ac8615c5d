"""deploy/: the compose stack's promises, and the scripts it runs, run for real.

There is no Docker engine on the development machines, so compose itself is checked by parsing
deploy/compose.yaml: every password and secret a Docker secret file read through *_FILE (no
default, no literal), healthchecks on every long-running service, one-shot jobs gated by
service_completed_successfully, the worker on palliwatch_writer and the migrations on
palliwatch_owner. The scripts are run: deploy/make-secrets.sh into a temporary directory,
deploy/timescaledb/010-palliwatch-roles.sh (the database container's init script) against a
PostgreSQL cluster of this test's own, deploy/grafana-orgs.sh, and `palliwatch db roles` with
its passwords from files.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from grafana.build import password_secret
from grafana.orgs import orgs
from streams import web
from streams.settings import REPO_ROOT
from streams.tooling import services
from tests.conftest import Isolated
from tests.test_cli_and_services import run_cli

DEPLOY = REPO_ROOT / "deploy"
MAKE_SECRETS = DEPLOY / "make-secrets.sh"
INIT_ROLES = DEPLOY / "timescaledb" / "010-palliwatch-roles.sh"
ONE_SHOT = {"migrate", "grafana-orgs"}
SENSITIVE = re.compile(r"PASSWORD|SECRET|DATABASE_URL|TOKEN|CREDENTIAL", re.I)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _secret_names(svc: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in svc.get("secrets", [])}


# ---- compose.yaml ---------------------------------------------------------------------------


def test_every_password_and_secret_is_a_secret_file_without_default() -> None:
    compose = _compose()
    top = compose["secrets"]
    used: set[str] = set()
    for name, svc in compose["services"].items():
        mounted = _secret_names(svc)
        used |= mounted
        for key, value in svc.get("environment", {}).items():
            if not SENSITIVE.search(key):
                continue
            # Only the file's path is in the environment, never the value.
            assert key.endswith("_FILE"), f"{name}: {key} must be read from a file ({key}_FILE)"
            m = re.fullmatch(r"/run/secrets/(\w+)", str(value))
            assert m, (name, key, value)
            assert m.group(1) in mounted, f"{name}: {key} names a secret it does not mount"
    for name in used:
        assert top[name] == {"file": f"./secrets/{name}"}, name
    assert set(top) == used, set(top) - used  # no secret declared that nothing reads
    text = (DEPLOY / "compose.yaml").read_text()
    # No interpolation of a sensitive variable, with or without a default, and no local
    # passwords of the development stack.
    for var in re.findall(r"\$\{(\w+)", text):
        assert not SENSITIVE.search(var), var
    assert "_local" not in text and "admin:admin" not in text


def test_the_admin_password_and_every_readers_password_are_required_files() -> None:
    services_ = _compose()["services"]
    for name in ("grafana", "grafana-orgs"):
        env = services_[name]["environment"]
        assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
        assert "grafana_admin_password" in _secret_names(services_[name])
    readers = {password_secret(org) for org in orgs()}
    assert readers <= _secret_names(services_["grafana"])
    assert readers <= _secret_names(services_["migrate"])


def test_long_running_services_have_healthchecks_and_one_shots_gate_their_dependants() -> None:
    services_ = _compose()["services"]
    assert set(services_) - ONE_SHOT == {"kafka", "timescaledb", "worker", "prometheus", "grafana"}
    for name, svc in services_.items():
        if name in ONE_SHOT:
            assert "restart" not in svc, name  # a job that finished must stay finished
            continue
        assert svc["healthcheck"]["test"], name
        assert svc["restart"] == "unless-stopped", name
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep in ONE_SHOT:
                assert cond == {"condition": "service_completed_successfully"}, (name, dep)
    for dep in ("kafka", "timescaledb"):
        assert services_["migrate"]["depends_on"][dep] == {"condition": "service_healthy"}
    assert services_["grafana"]["depends_on"]["grafana-orgs"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_worker_healthcheck_asks_its_health_endpoint() -> None:
    worker = _compose()["services"]["worker"]
    port = worker["environment"]["PALLIWATCH_WEB_PORT"]
    check = worker["healthcheck"]["test"]
    # python's urllib: the image has no curl; urlopen raises (exit 1) on a 503.
    assert check[:3] == ["CMD", "python", "-c"], check
    assert f"urllib.request.urlopen('http://127.0.0.1:{port}{web.HEALTH_PATH}'" in check[3]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"worker:{port}"]  # Prometheus's default metrics_path: /metrics
    assert "metrics_path" not in scrape["scrape_configs"][0] and web.METRICS_PATH == "/metrics"


def test_the_worker_writes_as_writer_and_the_migrations_run_as_owner() -> None:
    services_ = _compose()["services"]
    worker, migrate = services_["worker"], services_["migrate"]
    assert worker["environment"]["PALLIWATCH_DATABASE_URL_FILE"] == "/run/secrets/db_writer_url"
    assert _secret_names(worker) == {"db_writer_url", "cell_key_secret"}
    assert migrate["environment"]["PALLIWATCH_OWNER_DATABASE_URL_FILE"] == (
        "/run/secrets/db_owner_url"
    )
    assert "db_writer_url" not in _secret_names(migrate)
    # The superuser's password reaches the database container only.
    for name, svc in services_.items():
        if name != "timescaledb":
            assert not _secret_names(svc) & {
                "postgres_superuser_password",
                "db_owner_password",
                "db_writer_password",
            }, name
    db = services_["timescaledb"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_superuser_password"
    assert not db["environment"]["POSTGRES_USER"].startswith("palliwatch")
    mount = f"./timescaledb/{INIT_ROLES.name}:/docker-entrypoint-initdb.d/{INIT_ROLES.name}:ro"
    assert mount in db["volumes"]
    # The healthcheck goes over TCP (the init phase's server listens on the socket only).
    assert db["healthcheck"]["test"][2:4] == ["-h", "127.0.0.1"]


def test_the_kafka_clients_match_the_single_plaintext_broker() -> None:
    compose = _compose()
    broker = compose["services"]["kafka"]["environment"]
    assert set(
        broker["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(",", ":").split(":")[1::2]
    ) == {"PLAINTEXT"}
    for name in ("migrate", "worker"):
        env = compose["services"][name]["environment"]
        assert env["PALLIWATCH_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT", name
        assert env["PALLIWATCH_KAFKA_BOOTSTRAP"] == "kafka:29092", name
        # One broker: replication 1 (a replication factor above the broker count fails).
        assert env["PALLIWATCH_KAFKA_REPLICATION_FACTOR"] == "1", name
        assert env["PALLIWATCH_KAFKA_MIN_INSYNC_REPLICAS"] == "1", name


def test_the_image_has_what_the_jobs_import_and_the_context_leaves_the_secrets_out() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for package in ("schemas", "streams", "processors", "grafana"):  # db roles: grafana.orgs
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "USER nobody" in dockerfile
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "deploy/secrets" in ignored
    gitignore = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert "*" in gitignore


# ---- deploy/make-secrets.sh -----------------------------------------------------------------


def _make_secrets(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(MAKE_SECRETS)],
        env={**os.environ, "PALLIWATCH_SECRETS_DIR": str(target)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _read_all(target: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in target.iterdir() if not p.name.startswith(".")}


def test_make_secrets_writes_every_file_compose_reads_once(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    done = _make_secrets(target)
    assert done.returncode == 0, done.stderr
    assert "back up" in done.stdout and "cell_key_secret" in done.stdout
    found = _read_all(target)
    assert set(found) == set(_compose()["secrets"])
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    for name, value in found.items():
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o444, name
        if not name.endswith("_url"):
            assert re.fullmatch(r"[0-9a-f]{48,64}", value), name
    passwords = [v for n, v in found.items() if not n.endswith("_url")]
    assert len(set(passwords)) == len(passwords)  # every one drawn on its own
    assert len(found["cell_key_secret"]) == 64  # 32 bytes: the worker wants at least 16
    for role, file in (("palliwatch_owner", "db_owner"), ("palliwatch_writer", "db_writer")):
        url = urllib.parse.urlsplit(found[f"{file}_url"])
        assert (url.scheme, url.username, url.password) == (
            "postgresql",
            role,
            found[f"{file}_password"],
        )
        assert (url.hostname, url.port, url.path) == ("timescaledb", 5432, "/palliwatch")

    # Again: nothing changes. A deleted password is made anew, and its URL follows it.
    again = _make_secrets(target)
    assert again.returncode == 0 and "nothing new" in again.stdout, again
    assert _read_all(target) == found
    (target / "db_writer_password").unlink()
    third = _make_secrets(target)
    assert third.returncode == 0 and "made 1 secret(s)" in third.stdout, third
    now = _read_all(target)
    assert now["db_writer_password"] != found["db_writer_password"]
    assert now["db_writer_password"] in now["db_writer_url"]
    assert {k: v for k, v in now.items() if not k.startswith("db_writer")} == {
        k: v for k, v in found.items() if not k.startswith("db_writer")
    }


def test_make_secrets_refuses_a_password_that_breaks_the_url(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    target.mkdir(mode=0o700)
    (target / "db_owner_password").write_text("p@ss/word")
    done = _make_secrets(target)
    assert done.returncode == 1
    assert "db_owner_password" in done.stderr and "delete it and run this again" in done.stderr
    assert not (target / "db_owner_url").exists()


# ---- deploy/grafana-orgs.sh -----------------------------------------------------------------


def test_grafana_orgs_wrapper_passes_the_admin_password_from_its_file(tmp_path: Path) -> None:
    shown = tmp_path / "show-env.sh"  # stands in for create_orgs.sh: prints what it was given
    shown.write_text(
        'echo "password=${GF_SECURITY_ADMIN_PASSWORD-unset}"\n'
        'echo "file=${GF_SECURITY_ADMIN_PASSWORD__FILE-unset}"\n'
    )
    secret = tmp_path / "grafana_admin_password"

    def run(content: str | None) -> subprocess.CompletedProcess[str]:
        if content is not None:
            secret.write_text(content)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GF_")}
        env |= {
            "GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret),
            "PALLIWATCH_CREATE_ORGS": str(shown),
        }
        return subprocess.run(
            ["bash", str(DEPLOY / "grafana-orgs.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    done = run("s3cret-admin")
    assert done.returncode == 0, done.stderr
    # Grafana's run.sh would refuse GF_..._PASSWORD and GF_..._PASSWORD__FILE set together.
    assert done.stdout.split() == ["password=s3cret-admin", "file=unset"]
    empty = run("")
    assert empty.returncode == 1 and "run deploy/make-secrets.sh" in empty.stderr
    secret.unlink()
    missing = run(None)
    assert missing.returncode == 1 and "missing or empty" in missing.stderr


# ---- deploy/timescaledb/010-palliwatch-roles.sh on a real PostgreSQL ----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster of this test's own, made the way the timescaledb image makes its
    cluster: superuser `postgres`, a database palliwatch, trust on the local socket and
    scram-sha-256 over TCP (the image's appended "host all all all scram-sha-256")."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.bindir = services.ensure_pg_binaries()
        self.data, self.sock = root / "data", root / "sock"

    def run(self, cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            services._as_pg_user(cmd),
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
        )

    def start(self) -> None:
        self.sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        made = self.run(services.initdb_command(self.bindir, self.data))
        assert made.returncode == 0, made.stderr
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock}"
        up = self.run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-w",
                "-l",
                str(self.root / "log"),
                "start",
            ]
        )
        assert up.returncode == 0, up.stderr + up.stdout
        self.psql("CREATE DATABASE palliwatch")

    def psql(self, sql: str) -> str:
        done = self.run(
            [
                str(self.bindir / "psql"),
                "-h",
                str(self.sock),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qAtc",
                sql,
            ]
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def init_script(self, secrets: Path) -> subprocess.CompletedProcess[str]:
        # The entrypoint's environment for /docker-entrypoint-initdb.d (its temporary server
        # on the socket; PGHOST/PGPORT point psql at ours).
        return self.run(
            ["bash", str(INIT_ROLES)],
            POSTGRES_USER="postgres",
            POSTGRES_DB="palliwatch",
            PGDATA=str(self.data),
            PGHOST=str(self.sock),
            PGPORT=str(self.port),
            PALLIWATCH_DB_OWNER_PASSWORD_FILE=str(secrets / "db_owner_password"),
            PALLIWATCH_DB_WRITER_PASSWORD_FILE=str(secrets / "db_writer_password"),
        )

    def reload(self) -> None:
        done = self.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "reload"])
        assert done.returncode == 0, done.stderr

    def stop(self) -> None:
        self.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def login(self, user: str, password: str) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname="palliwatch",
            user=user,
            password=password,
            connect_timeout=5,
            autocommit=True,
        )


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="palliwatch-initdb-"))
    root.chmod(0o755)
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_init_script_makes_owner_and_writer_and_keeps_the_superuser_off_the_network(
    cluster: Cluster,
) -> None:
    secrets = cluster.root / "secrets"
    secrets.mkdir()
    made = _make_secrets(secrets)
    assert made.returncode == 0, made.stderr
    secrets.chmod(0o755)  # the script runs as postgres here (in the image too)
    read = {p.name: p.read_text() for p in secrets.iterdir()}

    # A password unfit for a URL stops it before anything is made.
    bad = cluster.root / "bad"
    bad.mkdir(mode=0o755)
    (bad / "db_owner_password").write_text("it's")
    (bad / "db_writer_password").write_text(read["db_writer_password"])
    for p in bad.iterdir():
        p.chmod(0o444)
    refused = cluster.init_script(bad)
    assert refused.returncode == 1 and "make it with deploy/make-secrets.sh" in refused.stderr
    assert cluster.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'palliwatch%'") == "0"

    done = cluster.init_script(secrets)
    assert done.returncode == 0, done.stderr
    assert read["db_owner_password"] not in done.stdout + done.stderr
    cluster.reload()
    roles = cluster.psql(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        "FROM pg_roles WHERE rolname LIKE 'palliwatch%' ORDER BY 1"
    )
    assert roles.splitlines() == ["palliwatch_owner|f|t|f|f|f", "palliwatch_writer|f|f|f|f|f"]
    owner_of = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'palliwatch'"
    assert cluster.psql(owner_of) == "palliwatch_owner"

    # The URLs make-secrets wrote log in (with the test cluster's port).
    for role in ("owner", "writer"):
        url = urllib.parse.urlsplit(read[f"db_{role}_url"])
        with cluster.login(str(url.username), str(url.password)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (f"palliwatch_{role}",)
    with cluster.login("palliwatch_owner", read["db_owner_password"]) as conn:
        conn.execute("CREATE SCHEMA published")  # owns the database: may create schemas
        conn.execute("CREATE ROLE palliwatch_reader_probe LOGIN")  # CREATEROLE: db roles
    with cluster.login("palliwatch_writer", read["db_writer_password"]) as conn:
        for ddl in (
            "CREATE TABLE public.probe (x int)",
            "CREATE SCHEMA probe",
            "CREATE ROLE probe",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(ddl)
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):
        cluster.login("postgres", "whatever")
    # ...while the socket, inside the container, still lets the superuser in.
    assert cluster.psql("SELECT current_user") == "postgres"


# ---- `palliwatch db roles` with its passwords from files -------------------------------------


@pytest.mark.integration
def test_db_roles_reads_the_passwords_from_files(isolated: Isolated, tmp_path: Path) -> None:
    env = {"PALLIWATCH_DATABASE_URL": isolated.settings.database_url}
    for org in orgs():
        path = tmp_path / password_secret(org)
        path.write_text(f"pw-file-{org.key}\n")
        env[org.password_env] = ""
        env[f"{org.password_env}_FILE"] = str(path)
    r = run_cli("db", "roles", env=env)
    # Every password was found (else exit 2 naming the missing ones): it went on to the
    # database, where the local writer may not create roles.
    assert r.returncode == 1 and "may not create roles" in r.stderr, r.stderr
    assert "pw-file-" not in r.stderr and "Traceback" not in r.stderr

    env["PALLIWATCH_GRAFANA_DB_PASSWORD_REGION_25_FILE"] = str(tmp_path / "absent")
    r = run_cli("db", "roles", env=env)
    assert r.returncode == 1
    assert "PALLIWATCH_GRAFANA_DB_PASSWORD_REGION_25_FILE" in r.stderr and "absent" in r.stderr
    assert "cannot be read" in r.stderr and "Traceback" not in r.stderr
