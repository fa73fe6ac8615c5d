"""Runtime settings: every ``PALLIWATCH_*`` variable is a field here, with local-stack defaults.

A field's variable is its model's ``env_prefix`` and its name in capitals (``partitions`` is
``PALLIWATCH_PARTITIONS``, ``KafkaSecurity.sasl_username`` is ``PALLIWATCH_KAFKA_SASL_USERNAME``);
the few that differ say so in their definition and ``variable()`` knows them. Nothing else in
palliwatch spells a settings variable: messages ask ``Settings.variable(field)``, and a child
process (a worker that tests, benches or ``palliwatch demo`` start) gets its settings from
``child_env(settings)``, which renders them as variables from these same definitions.

A secret ``NAME`` may instead be read from the file that ``NAME_FILE`` names (Docker secrets;
the file wins when both are set). A child is then given ``NAME_FILE``, not the secret.

When PALLIWATCH_KAFKA_BOOTSTRAP or PALLIWATCH_DATABASE_URL is set, palliwatch uses that service
and `palliwatch services up` starts nothing for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from processors.db import Database
from processors.disclosure import RecordKeys
from schemas.topics import TopicSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = REPO_ROOT / "deploy" / "migrations"

# The worker's state layout (its tables and internal topics). The default app id names it: a
# release that changes the layout starts a new consumer group with its own changelogs and
# internal topics, which rebuilds every indicator from the retained contract topics instead of
# mixing old state with new (layout 2: admission and revision state in one `people` table;
# layout 3: every counter carries the key sum of the Cell Key Method).
STATE_LAYOUT = 3
DEFAULT_APP_ID = f"palliwatch-s{STATE_LAYOUT}"
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

# The words of a type error, for "palliwatch: VARIABLE: expected ..., got 'x'".
_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false",
    "date_from_datetime_parsing": "expected a date (YYYY-MM-DD)",
}


def _variable_name(suffix: str) -> Any:
    """A field whose variable is the prefix and ``suffix``, not the field's own name."""
    return {"variable": suffix}


class _Environment(PydanticBaseSettingsSource):
    """The settings' values from os.environ: for each field its variable (a group of fields,
    such as KafkaSecurity, from its own variables). An empty variable counts as unset, except
    for the fields a model lists in ``_empty_is_set``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field itself

    def __call__(self) -> dict[str, Any]:
        model = self.settings_cls
        assert issubclass(model, _Variables)
        return _read(model, os.environ)


def _read(model: type[_Variables], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.exclude:
            continue  # derived, not a variable
        group = _group(info)
        if group is not None:
            values[name] = _read(group, env)
            continue
        text = env.get(model.variable(name))
        if text is not None and (text != "" or name in model._empty_is_set):
            values[name] = text
    return values


def _group(info: FieldInfo) -> type[_Variables] | None:
    """The model of a field that is a group of variables (Settings.kafka_security)."""
    t = info.annotation
    return t if isinstance(t, type) and issubclass(t, _Variables) else None


def _render(value: Any) -> str:
    """A field's value as its variable's text (what _read and the field's type parse back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode(errors="surrogateescape")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class _Variables(BaseSettings):
    """Fields read from variables: how they are named, read (secret files included), checked,
    replaced and passed on to a child process."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")
    # Fields whose empty variable still counts as set (else empty is unset: the default).
    _empty_is_set: ClassVar[frozenset[str]] = frozenset()
    # Whether Model() reads os.environ (Settings; load()), or holds only what it is given.
    _reads_environment: ClassVar[bool] = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A group of variables (KafkaSecurity) is read by the Settings it belongs to; made
        # by hand, a model holds what it is given (as a dataclass would).
        return (
            (init_settings, _Environment(settings_cls))
            if cls._reads_environment
            else (init_settings,)
        )

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field: ``variable("partitions")`` is
        PALLIWATCH_PARTITIONS."""
        extra = cls.model_fields[field].json_schema_extra
        suffix = extra.get("variable") if isinstance(extra, dict) else None
        return cls.model_config.get("env_prefix", "") + str(suffix or field.upper())

    @classmethod
    def variables(cls) -> Iterator[tuple[str, str]]:
        """(field path, variable) of every variable, groups' fields as ``group.field``."""
        for name, info in cls.model_fields.items():
            if info.exclude:
                continue
            group = _group(info)
            if group is None:
                yield name, cls.variable(name)
            else:
                yield from ((f"{name}.{f}", v) for f, v in group.variables())

    @classmethod
    def _secrets(cls) -> list[str]:
        """The fields with a ``NAME_FILE`` twin (the field ``name_file``)."""
        return [n for n in cls.model_fields if f"{n}_file" in cls.model_fields]

    @model_validator(mode="before")
    @classmethod
    def _before(cls, data: Any) -> Any:
        return cls._resolve(dict(data)) if isinstance(data, dict) else data

    @classmethod
    def _resolve(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The given values completed: secrets read from their files (Settings adds the
        local stack's defaults)."""
        for name in cls._secrets():
            path = data.get(f"{name}_file")
            if not path:
                continue
            try:
                secret = Path(path).read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise ValueError(
                    f"{cls.variable(name + '_file')}={str(path)!r} cannot be read: {exc}"
                ) from exc
            bytes_field = cls.model_fields[name].annotation in (bytes, "bytes")
            data[name] = secret if bytes_field else secret.decode()
        return data

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (as dataclasses.replace). A secret given a new value forgets
        the file it was read from, so that child_env() passes on the new value."""
        for name in self._secrets():
            if name in changes:
                changes.setdefault(f"{name}_file", None)
        return self.model_copy(update=changes)

    def environ(self) -> dict[str, str]:
        """These values as their variables (unset fields left out; a secret read from a file
        as NAME_FILE, not as its value)."""
        out: dict[str, str] = {}
        secrets = self._secrets()
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.exclude or value is None:
                continue
            if _group(info) is not None:
                out.update(value.environ())
                continue
            if name in secrets and getattr(self, f"{name}_file"):
                continue
            text = _render(value)
            if text != "" or name in self._empty_is_set:
                out[self.variable(name)] = text
        return out


class KafkaSecurity(_Variables):
    """How every Kafka client authenticates and encrypts (streams/kafka_clients.py turns this
    into each library's options). SSL with a certificate and key is mutual TLS."""

    model_config = SettingsConfigDict(env_prefix="PALLIWATCH_KAFKA_")

    protocol: str = Field(
        default="PLAINTEXT", json_schema_extra=_variable_name("SECURITY_PROTOCOL")
    )
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = Field(default="", repr=False)
    sasl_password_file: Path | None = None
    ssl_cafile: str = ""  # empty: the system's trusted CAs
    ssl_certfile: str = ""  # the client certificate (mutual TLS)
    ssl_keyfile: str = ""
    ssl_key_password: str = Field(default="", repr=False)
    ssl_key_password_file: Path | None = None
    ssl_check_hostname: bool = True

    @field_validator("protocol", mode="before")
    @classmethod
    def _known_protocol(cls, value: Any) -> Any:
        protocol = str(value).upper()
        if protocol not in KAFKA_PROTOCOLS:
            raise ValueError(
                f"{cls.variable('protocol')}={protocol!r} is not one of "
                + ", ".join(KAFKA_PROTOCOLS)
            )
        return protocol

    @field_validator("sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return str(value).upper()

    @field_validator("ssl_check_hostname", mode="before")
    @classmethod
    def _only_an_explicit_no(cls, value: Any) -> Any:
        """Anything but 0, false or no checks the host name (as it always has)."""
        if isinstance(value, str):
            return value.lower() not in ("0", "false", "no")
        return value

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

    def check(self) -> None:
        """What load() refuses: a SASL protocol without its mechanism and credentials, a
        certificate without its key, TLS files without TLS, or files that cannot be read."""
        v, protocol = self.variable, self.protocol
        if self.uses_sasl:
            if self.sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                raise ValueError(
                    f"{v('protocol')}={protocol} needs {v('sasl_mechanism')}, one of "
                    + ", ".join(KAFKA_SASL_MECHANISMS)
                )
            if not self.sasl_username or not self.sasl_password:
                raise ValueError(
                    f"{v('protocol')}={protocol} needs {v('sasl_username')} and "
                    f"{v('sasl_password')} (or {v('sasl_password_file')})"
                )
        if self.ssl_certfile and not self.ssl_keyfile:
            raise ValueError(
                f"{v('ssl_certfile')} needs {v('ssl_keyfile')} (the client certificate's "
                "private key)"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not self.uses_tls:
                raise ValueError(
                    f"{v(name)} is set but {v('protocol')}={protocol} does not use TLS: set it "
                    "to SSL or SASL_SSL"
                )
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"{v(name)}={path!r} cannot be read")


class Settings(_Variables):
    """Everything palliwatch reads from its environment (README, Configuration)."""

    model_config = SettingsConfigDict(env_prefix="PALLIWATCH_")
    # Set but empty still means "that service, not the local stack's" (as it always has).
    _empty_is_set: ClassVar[frozenset[str]] = frozenset({"kafka_bootstrap", "database_url"})
    _reads_environment: ClassVar[bool] = True

    state_dir: Path = REPO_ROOT / ".palliwatch"
    # The local stack's loopback ports; a second checkout (or a test that needs a stack of its
    # own) moves them.
    local_kafka_port: int = 19092
    local_kafka_controller_port: int = 19093
    local_pg_port: int = 54329
    prometheus_port: int = 19090
    # The local stack broker's Java heap (a test's private brokers take less).
    kafka_heap: str = "768m"
    # Unset: the local stack's broker (and then kafka_external is False).
    kafka_bootstrap: str = ""
    kafka_external: bool = Field(default=False, exclude=True)
    # The worker's URL; unset: the local stack's writer (and then database_external is False).
    database_url: str = ""
    database_url_file: Path | None = None
    database_external: bool = Field(default=False, exclude=True)
    # The schema owner's URL (migrations, `db roles`); empty: database_url, i.e. a single-role
    # deployment in which the writer owns the schema (`db migrate` says so). Unset without a
    # database_url: the local stack's owner.
    owner_database_url: str = ""
    owner_database_url_file: Path | None = None
    # The role `db migrate` grants the worker's rights to.
    db_writer_role: str = LOCAL_DB_WRITER
    app_id: str = DEFAULT_APP_ID
    web_port: int = 6066
    # Loopback by default; the Docker image binds 0.0.0.0 inside its container network.
    web_bind: str = "127.0.0.1"
    partitions: int = 4
    topic_namespace: str = ""
    # Evaluate as of this date instead of today (reproducing an evaluation; tests).
    as_of_date: date | None = Field(default=None, json_schema_extra=_variable_name("AS_OF"))
    # How often the worker checks whether the date moved (daily re-evaluation).
    reevaluate_seconds: float = 10.0
    # How often the worker commits its consumer offsets (Faust's broker_commit_interval): a
    # restart re-reads at most this much input.
    commit_interval_seconds: float = 2.8
    # How far a survey's submitted_at may lie ahead of the worker's clock (else a dead letter).
    clock_skew_seconds: float = 600.0
    # How long the sink retries an unavailable or read-only database before the worker stops
    # (to be restarted by its supervisor), and how long one statement may run.
    db_retry_seconds: float = 600.0
    db_statement_timeout_seconds: float = 120.0
    # How long the broker waits for a worker that stopped without leaving its group (a crash,
    # or a stop from streams/failures.py) before its partitions go to others or its restart.
    session_timeout_seconds: float = 60.0
    # The Cell Key Method's secret (docs/indicators.md); empty: see record_keys().
    cell_key_secret: bytes = Field(default=b"", repr=False)
    cell_key_secret_file: Path | None = None
    kafka_security: KafkaSecurity = KafkaSecurity()
    # Every topic palliwatch creates (contract, internal and Faust's changelogs) gets these;
    # production: 3 and 2, so a broker may fail without losing a write (README, Configuration).
    kafka_replication_factor: int = 1
    kafka_min_insync_replicas: int = 1

    @classmethod
    def _resolve(cls, data: dict[str, Any]) -> dict[str, Any]:
        """...and the local stack's URLs for the services that are not configured."""
        data = super()._resolve(data)
        host = "127.0.0.1"
        kafka_port = cls._port(data, "local_kafka_port")
        pg = f"{host}:{cls._port(data, 'local_pg_port')}/{LOCAL_DB_NAME}"
        data.setdefault("kafka_external", "kafka_bootstrap" in data)
        data["kafka_bootstrap"] = data.get("kafka_bootstrap") or f"{host}:{kafka_port}"
        db_given = "database_url" in data or bool(data.get("database_url_file"))
        data.setdefault("database_external", db_given)
        writer = f"postgresql://{LOCAL_DB_WRITER}:{LOCAL_DB_WRITER_PASSWORD}@{pg}"
        data["database_url"] = data.get("database_url") or writer
        owner = f"postgresql://{LOCAL_DB_OWNER}:{local_password(LOCAL_DB_OWNER)}@{pg}"
        data["owner_database_url"] = data.get("owner_database_url") or ("" if db_given else owner)
        return data

    @classmethod
    def _port(cls, data: dict[str, Any], name: str) -> int:
        try:
            return int(data.get(name, cls.model_fields[name].default))
        except (TypeError, ValueError):
            return 0  # the field's own validation reports it

    @field_validator("state_dir")
    @classmethod
    def _resolved(cls, value: Path) -> Path:
        return value.resolve()

    @field_validator("as_of_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(
                f"{cls.variable('as_of_date')}={value!r} is not a date: use YYYY-MM-DD"
            ) from exc

    @field_validator(
        "clock_skew_seconds",
        "db_retry_seconds",
        "db_statement_timeout_seconds",
        "session_timeout_seconds",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: Any, info: ValidationInfo) -> Any:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if seconds < 0:
            name = str(info.field_name)
            raise ValueError(
                f"{cls.variable(name)}={value!r} is not a number of seconds "
                f"(e.g. {cls.model_fields[name].default:g})"
            )
        return seconds

    @field_validator("kafka_replication_factor", "kafka_min_insync_replicas", mode="before")
    @classmethod
    def _count(cls, value: Any, info: ValidationInfo) -> Any:
        text = str(value)
        if not text.isdigit() or int(text) < 1:
            raise ValueError(
                f"{cls.variable(str(info.field_name))}={text!r} is not a whole number of at least 1"
            )
        return int(text)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        v = self.variable
        replication, min_insync = self.kafka_replication_factor, self.kafka_min_insync_replicas
        if min_insync > replication:
            raise ValueError(
                f"{v('kafka_min_insync_replicas')}={min_insync} is more than "
                f"{v('kafka_replication_factor')}={replication}: no write could succeed "
                "(production: 3 and 2)"
            )
        self.kafka_security.check()
        return self

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)

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
            url_variable=self.variable("database_url"),
            owner_variable=self.variable("owner_database_url"),
        )

    def in_database(self, db_name: str) -> Settings:
        """These settings on another database of the same server, the worker's and the
        owner's logins unchanged (benches and tests make a database of their own)."""
        return self.replace(
            database_url=in_database(self.database_url, db_name),
            owner_database_url=in_database(self.owner_url, db_name),
        )

    def replace(self, **changes: Any) -> Settings:
        copy: Settings = super().replace(**changes)
        return copy

    def record_keys(self) -> RecordKeys:
        """person_ref -> record key. The local stack makes a secret once and keeps it in the
        state directory; a deployment with its own database must set one, since a secret
        that changes changes every published figure (and a guessable one undoes the noise)."""
        try:
            return RecordKeys(self.resolved_cell_key_secret())
        except ValueError as exc:
            raise SystemExit(f"palliwatch: {self.variable('cell_key_secret')}: {exc}") from exc

    def resolved_cell_key_secret(self) -> bytes:
        """The secret record_keys() uses (a worker this process starts is given the same)."""
        secret = self.cell_key_secret
        if not secret:
            if self.database_external:
                raise SystemExit(
                    f"palliwatch: {self.variable('cell_key_secret')} (or "
                    f"{self.variable('cell_key_secret_file')}) is not set: the public layer's "
                    "noise needs a deployment secret of at least 16 bytes, kept for good (e.g. "
                    "`openssl rand -hex 32`)"
                )
            secret = _local_secret(self.local_secret_path)
        return secret

    @property
    def local_secret_path(self) -> Path:
        """Where the local stack keeps the Cell Key Method's secret it made."""
        return self.state_dir / "cell-key.secret"

    def with_resolved_cell_key_secret(self) -> Settings:
        """These settings with the secret record_keys() uses given explicitly: for a child
        process on a database of its own (which counts as external, so it would not make
        the local stack's secret). A local secret is passed on as its file, not its value."""
        if self.cell_key_secret:
            return self
        secret = self.resolved_cell_key_secret()
        return self.replace(cell_key_secret=secret, cell_key_secret_file=self.local_secret_path)

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

    def environ(self) -> dict[str, str]:
        """These settings as the variables that give a child process the same: a service
        that is the local stack's is left out, so that the child, too, takes it for the
        local stack's (load(environ) == self for what load() returns)."""
        out = super().environ()
        local = Settings.model_validate(
            {"local_kafka_port": self.local_kafka_port, "local_pg_port": self.local_pg_port}
        )
        if not self.kafka_external and self.kafka_bootstrap == local.kafka_bootstrap:
            out.pop(self.variable("kafka_bootstrap"))
        if not self.database_external and self.database_url == local.database_url:
            out.pop(self.variable("database_url"))
            if self.owner_database_url == local.owner_database_url:
                out.pop(self.variable("owner_database_url"))
        return out


def load() -> Settings:
    """The settings from os.environ; a wrong value exits with one line naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SystemExit(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    """The first error as "palliwatch: VARIABLE: what is wrong" (a check's own message already
    names its variables)."""
    errors = exc.errors()
    error = errors[0]
    if error["type"] == "value_error":
        message = str(error["ctx"]["error"])
    else:
        model: type[_Variables] = Settings
        name = "?"
        for part in error["loc"]:
            name = str(part)
            info = model.model_fields.get(name)
            group = _group(info) if info is not None else None
            if group is not None:
                model = group
        variable = model.variable(name) if name in model.model_fields else name
        expected = _EXPECTED.get(error["type"], error["msg"])
        message = f"{variable}: {expected}, got {error['input']!r}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"palliwatch: {message}{more}"


def variables() -> dict[str, str]:
    """Every settings variable -> its field (``group.field`` in a group)."""
    return {variable: path for path, variable in Settings.variables()}


def child_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process (a worker, the CLI) that is to run with
    ``settings``: ``base`` (default os.environ) without any settings variable of its own, and
    ``settings.environ()``. The one way palliwatch passes settings to a process it starts."""
    names = variables()
    inherited = os.environ if base is None else base
    return {k: v for k, v in inherited.items() if k not in names} | settings.environ()


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


def secret(name: str, env: Mapping[str, str] | None = None) -> bytes:
    """A secret that is not a settings field (the Grafana roles' passwords, named by the
    catalogue of organisations): from ``name``, or the file ``name``_FILE names."""
    env = os.environ if env is None else env
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise SystemExit(f"palliwatch: {name}_FILE={path!r} cannot be read: {exc}") from exc
    return env.get(name, "").encode()
