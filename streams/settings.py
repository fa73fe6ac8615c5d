"""Runtime settings, all from environment variables with local-stack defaults.

When PALLIWATCH_KAFKA_BOOTSTRAP or PALLIWATCH_DATABASE_URL is set, palliwatch uses that service
and `palliwatch services up` starts nothing for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from processors.db import Database
from processors.disclosure import RecordKeys
from schemas.topics import TopicSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = REPO_ROOT / "deploy" / "migrations"

# The local stack's loopback ports; a second checkout (or a test that needs a stack of its own)
# moves them with these variables.
LOCAL_KAFKA_PORT = int(os.environ.get("PALLIWATCH_LOCAL_KAFKA_PORT", "19092"))
LOCAL_KAFKA_CONTROLLER_PORT = int(os.environ.get("PALLIWATCH_LOCAL_KAFKA_CONTROLLER_PORT", "19093"))
# The worker's state layout (its tables and internal topics). The default app id names it: a
# release that changes the layout starts a new consumer group with its own changelogs and
# internal topics, which rebuilds every indicator from the retained contract topics instead of
# mixing old state with new (layout 2: admission and revision state in one `people` table;
# layout 3: every counter carries the key sum of the Cell Key Method).
STATE_LAYOUT = 3
DEFAULT_APP_ID = f"palliwatch-s{STATE_LAYOUT}"
LOCAL_PG_PORT = int(os.environ.get("PALLIWATCH_LOCAL_PG_PORT", "54329"))
LOCAL_DB_NAME = "palliwatch"
LOCAL_DB_WRITER = "palliwatch_writer"
LOCAL_DB_READER = "palliwatch_reader"
# The role that owns the schema and runs the migrations (the writer only reads and writes rows).
LOCAL_DB_OWNER = "palliwatch_owner"
# Local, loopback-only development passwords; real deployments set PALLIWATCH_DATABASE_URL.
LOCAL_DB_WRITER_PASSWORD = "palliwatch_writer_local"
LOCAL_DB_READER_PASSWORD = "palliwatch_reader_local"


def in_database(url: str, db_name: str) -> str:
    """The same login on another database of the same server."""
    return url.rsplit("/", 1)[0] + f"/{db_name}"


def local_password(role: str) -> str:
    """The local stack's loopback-only password of a database role (schemas/audiences.py)."""
    return f"{role}_local"


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client authenticates and encrypts (streams/kafka_clients.py turns this
    into each library's options). SSL with a certificate and key is mutual TLS."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""  # empty: the system's trusted CAs
    ssl_certfile: str = ""  # the client certificate (mutual TLS)
    ssl_keyfile: str = ""
    ssl_key_password: str = field(default="", repr=False)
    ssl_check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def principal(self) -> str:
        """Who the broker sees, for messages: the SASL user, the client certificate, or none."""
        if self.uses_sasl:
            return f"user {self.sasl_username!r}"
        if self.ssl_certfile:
            return f"the client certificate {self.ssl_certfile}"
        return "an anonymous client"


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str
    database_url: str
    kafka_external: bool
    database_external: bool
    state_dir: Path
    app_id: str
    web_port: int
    web_bind: str
    partitions: int
    topic_namespace: str = ""
    # Evaluate as of this date instead of today (reproducing an evaluation; tests).
    as_of_date: date | None = None
    # How often the worker checks whether the date moved (daily re-evaluation).
    reevaluate_seconds: float = 10.0
    # How often the worker commits its consumer offsets (Faust's broker_commit_interval): a
    # restart re-reads at most this much input.
    commit_interval_seconds: float = 2.8
    # How far a survey's submitted_at may lie ahead of the worker's clock (else a dead letter).
    clock_skew: timedelta = timedelta(minutes=10)
    # How long the sink retries an unavailable or read-only database before the worker stops
    # (to be restarted by its supervisor), and how long one statement may run.
    db_retry_seconds: float = 600.0
    db_statement_timeout_seconds: float = 120.0
    # How long the broker waits for a worker that stopped without leaving its group (a crash,
    # or a stop from streams/failures.py) before its partitions go to others or its restart.
    session_timeout_seconds: float = 60.0
    # The Cell Key Method's secret (docs/indicators.md), from PALLIWATCH_CELL_KEY_SECRET or the
    # file PALLIWATCH_CELL_KEY_SECRET_FILE; empty: see record_keys().
    cell_key_secret: bytes = b""
    kafka_security: KafkaSecurity = KafkaSecurity()
    # Every topic palliwatch creates (contract, internal and Faust's changelogs) gets these;
    # production: 3 and 2, so a broker may fail without losing a write (README, Configuration).
    kafka_replication_factor: int = 1
    kafka_min_insync_replicas: int = 1
    # The schema owner's URL (migrations, `db roles`); empty: database_url, i.e. a single-role
    # deployment in which the writer owns the schema (`db migrate` says so).
    owner_database_url: str = ""
    # The role `db migrate` grants the worker's rights to (PALLIWATCH_DB_WRITER_ROLE).
    db_writer_role: str = LOCAL_DB_WRITER

    @property
    def owner_url(self) -> str:
        """The URL migrations and `db roles` connect with."""
        return self.owner_database_url or self.database_url

    @property
    def database(self) -> Database:
        """The database as plain values, for processors.db."""
        return Database(
            url=self.database_url,
            owner_url=self.owner_url,
            writer_role=self.db_writer_role,
            migrations=MIGRATIONS_DIR,
            owner_configured=bool(self.owner_database_url),
        )

    def in_database(self, db_name: str) -> Settings:
        """These settings on another database of the same server, the worker's and the
        owner's logins unchanged (benches and tests make a database of their own)."""
        return replace(
            self,
            database_url=in_database(self.database_url, db_name),
            owner_database_url=in_database(self.owner_url, db_name),
        )

    def record_keys(self) -> RecordKeys:
        """person_ref -> record key. The local stack makes a secret once and keeps it in the
        state directory; a deployment with its own database must set one, since a secret
        that changes changes every published figure (and a guessable one undoes the noise)."""
        try:
            return RecordKeys(self.resolved_cell_key_secret())
        except ValueError as exc:
            raise SystemExit(f"palliwatch: PALLIWATCH_CELL_KEY_SECRET: {exc}") from exc

    def resolved_cell_key_secret(self) -> bytes:
        """The secret record_keys() uses (a worker this process starts is given the same)."""
        secret = self.cell_key_secret
        if not secret:
            if self.database_external:
                raise SystemExit(
                    "palliwatch: PALLIWATCH_CELL_KEY_SECRET (or PALLIWATCH_CELL_KEY_SECRET_FILE) "
                    "is not set: the public layer's noise needs a deployment secret of at least "
                    "16 bytes, kept for good (e.g. `openssl rand -hex 32`)"
                )
            secret = _local_secret(self.state_dir / "cell-key.secret")
        return secret

    def as_of(self) -> date:
        """The evaluation date: PALLIWATCH_AS_OF, else today in UTC."""
        return self.as_of_date or datetime.now(UTC).date()

    def topic(self, spec: TopicSpec) -> str:
        """The topic's name in this deployment (tests isolate themselves with a namespace;
        a worker group's internal topics carry its app id)."""
        name = f"{self.app_id}.{spec.name}" if spec.per_app else spec.name
        return f"{self.topic_namespace}.{name}" if self.topic_namespace else name

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{h}" for h in self.kafka_bootstrap.split(","))


def load() -> Settings:
    env = os.environ
    state_dir = Path(env.get("PALLIWATCH_STATE_DIR", REPO_ROOT / ".palliwatch")).resolve()
    kafka = env.get("PALLIWATCH_KAFKA_BOOTSTRAP")
    replication, min_insync = _kafka_replication(env)
    db = _optional_secret(env, "PALLIWATCH_DATABASE_URL")
    owner_db = _optional_secret(env, "PALLIWATCH_OWNER_DATABASE_URL")
    return Settings(
        kafka_bootstrap=kafka or f"127.0.0.1:{LOCAL_KAFKA_PORT}",
        database_url=db
        or (
            f"postgresql://{LOCAL_DB_WRITER}:{LOCAL_DB_WRITER_PASSWORD}"
            f"@127.0.0.1:{LOCAL_PG_PORT}/{LOCAL_DB_NAME}"
        ),
        kafka_external=kafka is not None,
        database_external=db is not None,
        state_dir=state_dir,
        app_id=env.get("PALLIWATCH_APP_ID", DEFAULT_APP_ID),
        web_port=int(env.get("PALLIWATCH_WEB_PORT", "6066")),
        # Loopback by default; the Docker image binds 0.0.0.0 inside its container network.
        web_bind=env.get("PALLIWATCH_WEB_BIND", "127.0.0.1"),
        partitions=int(env.get("PALLIWATCH_PARTITIONS", "4")),
        topic_namespace=env.get("PALLIWATCH_TOPIC_NAMESPACE", ""),
        as_of_date=_date(env.get("PALLIWATCH_AS_OF")),
        reevaluate_seconds=float(env.get("PALLIWATCH_REEVALUATE_SECONDS", "10")),
        commit_interval_seconds=float(env.get("PALLIWATCH_COMMIT_INTERVAL_SECONDS", "2.8")),
        clock_skew=timedelta(seconds=_seconds(env, "PALLIWATCH_CLOCK_SKEW_SECONDS", 600)),
        db_retry_seconds=_seconds(env, "PALLIWATCH_DB_RETRY_SECONDS", 600),
        db_statement_timeout_seconds=_seconds(env, "PALLIWATCH_DB_STATEMENT_TIMEOUT_SECONDS", 120),
        session_timeout_seconds=_seconds(env, "PALLIWATCH_SESSION_TIMEOUT_SECONDS", 60),
        cell_key_secret=_secret(env, "PALLIWATCH_CELL_KEY_SECRET"),
        kafka_security=_kafka_security(env),
        kafka_replication_factor=replication,
        kafka_min_insync_replicas=min_insync,
        # The local stack's owner when no database is configured; else the operator's owner URL,
        # or none (the database URL's role then owns the schema).
        owner_database_url=owner_db
        or (
            ""
            if db is not None
            else (
                f"postgresql://{LOCAL_DB_OWNER}:{local_password(LOCAL_DB_OWNER)}"
                f"@127.0.0.1:{LOCAL_PG_PORT}/{LOCAL_DB_NAME}"
            )
        ),
        db_writer_role=env.get("PALLIWATCH_DB_WRITER_ROLE") or LOCAL_DB_WRITER,
    )


def _kafka_replication(env: os._Environ[str]) -> tuple[int, int]:
    replication = _count(env, "PALLIWATCH_KAFKA_REPLICATION_FACTOR", 1)
    min_insync = _count(env, "PALLIWATCH_KAFKA_MIN_INSYNC_REPLICAS", 1)
    if min_insync > replication:
        raise SystemExit(
            f"palliwatch: PALLIWATCH_KAFKA_MIN_INSYNC_REPLICAS={min_insync} is more than "
            f"PALLIWATCH_KAFKA_REPLICATION_FACTOR={replication}: no write could succeed "
            "(production: 3 and 2)"
        )
    return replication, min_insync


def _count(env: os._Environ[str], name: str, default: int) -> int:
    text = env.get(name) or str(default)
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"palliwatch: {name}={text!r} is not a whole number of at least 1")
    return int(text)


def _kafka_security(env: os._Environ[str]) -> KafkaSecurity:
    protocol = env.get("PALLIWATCH_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in KAFKA_PROTOCOLS:
        raise SystemExit(
            f"palliwatch: PALLIWATCH_KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of "
            + ", ".join(KAFKA_PROTOCOLS)
        )
    sec = KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=env.get("PALLIWATCH_KAFKA_SASL_MECHANISM", "").upper(),
        sasl_username=env.get("PALLIWATCH_KAFKA_SASL_USERNAME", ""),
        sasl_password=_secret(env, "PALLIWATCH_KAFKA_SASL_PASSWORD").decode(),
        ssl_cafile=env.get("PALLIWATCH_KAFKA_SSL_CAFILE", ""),
        ssl_certfile=env.get("PALLIWATCH_KAFKA_SSL_CERTFILE", ""),
        ssl_keyfile=env.get("PALLIWATCH_KAFKA_SSL_KEYFILE", ""),
        ssl_key_password=_secret(env, "PALLIWATCH_KAFKA_SSL_KEY_PASSWORD").decode(),
        ssl_check_hostname=env.get("PALLIWATCH_KAFKA_SSL_CHECK_HOSTNAME", "true").lower()
        not in ("0", "false", "no"),
    )
    if sec.uses_sasl:
        if sec.sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise SystemExit(
                f"palliwatch: PALLIWATCH_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                "PALLIWATCH_KAFKA_SASL_MECHANISM, one of " + ", ".join(KAFKA_SASL_MECHANISMS)
            )
        if not sec.sasl_username or not sec.sasl_password:
            raise SystemExit(
                f"palliwatch: PALLIWATCH_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                "PALLIWATCH_KAFKA_SASL_USERNAME and PALLIWATCH_KAFKA_SASL_PASSWORD "
                "(or PALLIWATCH_KAFKA_SASL_PASSWORD_FILE)"
            )
    if sec.ssl_certfile and not sec.ssl_keyfile:
        raise SystemExit(
            "palliwatch: PALLIWATCH_KAFKA_SSL_CERTFILE needs PALLIWATCH_KAFKA_SSL_KEYFILE "
            "(the client certificate's private key)"
        )
    for name, path in (
        ("PALLIWATCH_KAFKA_SSL_CAFILE", sec.ssl_cafile),
        ("PALLIWATCH_KAFKA_SSL_CERTFILE", sec.ssl_certfile),
        ("PALLIWATCH_KAFKA_SSL_KEYFILE", sec.ssl_keyfile),
    ):
        if path and not sec.uses_tls:
            raise SystemExit(
                f"palliwatch: {name} is set but PALLIWATCH_KAFKA_SECURITY_PROTOCOL={protocol} "
                "does not use TLS: set it to SSL or SASL_SSL"
            )
        if path and not os.access(path, os.R_OK):
            raise SystemExit(f"palliwatch: {name}={path!r} cannot be read")
    return sec


def _secret(env: os._Environ[str], name: str) -> bytes:
    """A secret from NAME, or from the file that NAME_FILE names (trailing newline dropped)."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise SystemExit(f"palliwatch: {name}_FILE={path!r} cannot be read: {exc}") from exc
    return env.get(name, "").encode()


def _optional_secret(env: os._Environ[str], name: str) -> str | None:
    """A URL (with its password) from NAME or the file NAME_FILE names; None when neither is
    set (an empty NAME still counts as set, as before)."""
    if env.get(f"{name}_FILE"):
        return _secret(env, name).decode()
    return env.get(name)


def _local_secret(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex())
    return path.read_bytes().strip()


def _seconds(env: os._Environ[str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise SystemExit(f"palliwatch: {name}={text!r} is not a number of seconds (e.g. {default})")
    return value


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise SystemExit(f"PALLIWATCH_AS_OF={text!r} is not a date: use YYYY-MM-DD") from exc
