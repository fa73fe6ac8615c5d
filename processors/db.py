"""Database connection and migrations.

Migrations are the numbered SQL files in deploy/migrations, applied in order inside one
transaction each and recorded in ``schema_migrations``. A transaction-level advisory lock makes
two processes migrating at once safe: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from processors import access, retry

_MIGRATION_LOCK = 74_221_001  # arbitrary, constant: the advisory lock id for migrations
_CONCURRENT_RETRIES = 5
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Migrations corrected after release: {file: {digest a database may have recorded: digest of
# the correction that supersedes it}}. A correction is listed here only when it changes
# nothing on any server where the earlier text could run (it fixes a server where it could
# not), so a database migrated with the earlier text is as the corrected one would have left
# it. The recorded digest is accepted only beside that exact correction: any further edit is
# refused like an edit of any applied migration.
SUPERSEDED: dict[str, dict[str, str]] = {
    "0002_storage.sql": {
        # Issue 16: before the shared_preload_libraries check, CREATE EXTENSION on a server with
        # TimescaleDB installed but not preloaded ended the session: it never applied there.
        "558a5b8be46fcd0a8f2c890c406b3f5ee440ed626b7a0651b64c9faf177d1048": (
            "18799210cfc6f7f3ea87e022f1c280cc902cb1ad1e8f838afc1ece5c0c0504c8"
        ),
    },
}


log = logging.getLogger("palliwatch.db")


class DatabaseUnavailable(RuntimeError):
    pass


class DatabaseTLSError(DatabaseUnavailable):
    """The server's certificate does not verify: a configuration error, not an outage, so it is
    never retried."""


@dataclass(frozen=True)
class Database:
    """Where the database is, as plain values (the shell builds this from its settings):
    ``url`` the worker's login, ``owner_url`` the schema owner's (migrations), ``migrations``
    the folder of numbered SQL files. The variable names are only for messages that name the
    fix."""

    url: str
    owner_url: str
    writer_role: str
    migrations: Path
    # False: no owner login of its own, so migrations run as the worker's role.
    owner_configured: bool
    url_variable: str
    owner_variable: str

    def login(self, owner: bool) -> tuple[str, str]:
        """(URL, the variable that sets it) of the worker's login or the owner's."""
        if not owner:
            return self.url, self.url_variable
        if self.owner_configured:
            return self.owner_url, self.owner_variable
        return self.owner_url, f"{self.owner_variable} (unset: {self.url_variable})"


def unreachable_message(database: Database, owner: bool = False) -> str:
    url, variable = database.login(owner)
    return (
        f"PostgreSQL not reachable at {redact_url(url)}: run "
        f"`palliwatch services up` or set {variable}"
    )


def tls_problem(
    exc: BaseException, url: str, variable: str = "PALLIWATCH_DATABASE_URL"
) -> str | None:
    """One line naming the fix when ``exc`` is a failed TLS verification (sslmode=verify-ca or
    verify-full), else None. libpq's own text spans lines and does not say which setting to
    change."""
    text = str(exc)
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        params = {}
    where = (
        f"PostgreSQL at {params.get('host', '?')}:{params.get('port', '5432')}"
        f"/{params.get('dbname', '')}"
        if params
        else f"PostgreSQL at {redact_url(url)}"
    )
    root = params.get("sslrootcert") or "~/.postgresql/root.crt"
    if "certificate verify failed" in text:
        return (
            f"{where}: the server's certificate is not signed by the CA in sslrootcert={root}: "
            f"set sslrootcert in {variable} to the CA that signed the server's certificate"
        )
    match = re.search(r'does not match host name "([^"]*)"', text)
    if match:
        return (
            f"{where}: the server's certificate does not name host {match.group(1)!r}: connect "
            f"by a name the certificate holds (its subjectAltName) in {variable}, or reissue "
            "the certificate for this name"
        )
    if "root certificate file" in text and "does not exist" in text:
        return (
            f"{where}: the CA file sslrootcert={root} does not exist: set sslrootcert in "
            f"{variable} to the CA that signed the server's certificate"
        )
    if "server does not support SSL" in text:
        return (
            f"{where}: the server does not offer TLS but {variable} requires it "
            f"(sslmode={params.get('sslmode')}): turn ssl on in the server's configuration"
        )
    return None


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def connect(database: Database, owner: bool = False, **kwargs: object) -> psycopg.Connection:
    """A connection as the worker's role, or (``owner``) as the schema owner's."""
    url, variable = database.login(owner)
    try:
        return psycopg.connect(url, connect_timeout=5, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as e:
        tls = tls_problem(e, url, variable)
        if tls is not None:
            raise DatabaseTLSError(tls) from None
        raise DatabaseUnavailable(f"{unreachable_message(database, owner)} ({e})") from e


def migration_files(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if _NAME.match(p.name))
    versions = [p.name[:4] for p in files]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number in {directory}")
    return files


def migrate(database: Database, directory: Path | None = None) -> list[str]:
    """Apply pending migrations as the schema owner, then re-apply every grant (readers,
    writer, audit); return the names applied (empty when up to date). What the database lacks
    for least privilege or access logging is logged as warnings (``migrate_and_notices``)."""
    applied_now: list[str] = []
    for notice in migrate_and_notices(database, directory, applied_now):
        log.warning("%s", notice)
    return applied_now


def migrate_and_notices(
    database: Database, directory: Path | None = None, applied_now: list[str] | None = None
) -> list[str]:
    """``migrate`` returning its notices instead of logging them (tests, callers that print).
    ``directory``: other migrations than ``database.migrations`` (tests of upgrades)."""
    applied = applied_now if applied_now is not None else []
    notices: list[str] = []
    directory = directory or database.migrations
    with connect(database, owner=True, autocommit=True) as conn:
        # Warnings the migrations raise say something the operator must know (e.g. why
        # TimescaleDB was not used); routine notices ("already exists, skipping") are left out.
        conn.add_notice_handler(functools.partial(_migration_warning, notices))
        # One session-level lock for the whole run (migrations and seeding): two concurrent
        # `migrate` calls then apply everything once, in order, and never seed at the same time.
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            _migrate_locked(conn, directory, applied)
            seed_reference_data(conn)
            notices += access.apply(conn, database.writer_role)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    if not database.owner_configured:
        notices.insert(
            0,
            f"{database.owner_variable} is not set: migrating as the role of "
            f"{database.url_variable}, which then owns the schema and may alter or drop it; "
            "give migrations an owner role of their own (README, Operations)",
        )
    return notices


def _migration_warning(notices: list[str], diag: psycopg.errors.Diagnostic) -> None:
    if diag.severity_nonlocalized == "WARNING" and diag.message_primary:
        notices.append(f"migration: {diag.message_primary}")


def _migrate_locked(conn: psycopg.Connection, directory: Path, applied_now: list[str]) -> None:
    with conn.transaction():
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   sha256 text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
    for path in migration_files(directory):
        sql = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(sql.encode()).hexdigest()
        # TimescaleDB's background jobs (a policy added by an earlier migration starts at once)
        # update their aggregate's catalog rows without a lock the migration would wait for; a
        # migration that drops or alters that aggregate at the same moment fails with "tuple
        # concurrently updated" (or "deleted"). Its transaction rolled back whole: run it again.
        retry.database_contention(
            psycopg.errors.InternalError_,
            attempts=_CONCURRENT_RETRIES,
            step_s=0.2,
            when=lambda e: "tuple concurrently" in str(e),
        )(_apply_one, conn, path, sql, digest, applied_now)


def _apply_one(
    conn: psycopg.Connection, path: Path, sql: str, digest: str, applied_now: list[str]
) -> None:
    with conn.transaction():
        row = conn.execute(
            "SELECT sha256 FROM schema_migrations WHERE version = %s", (path.name[:4],)
        ).fetchone()
        if row is not None:
            if row[0] != digest and SUPERSEDED.get(path.name, {}).get(row[0]) != digest:
                raise RuntimeError(
                    f"migration {path.name} changed after it was applied; add a new "
                    "migration instead of editing an applied one"
                )
            return
        conn.execute(sql)  # type: ignore[call-overload,unused-ignore]
        conn.execute(
            "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
            (path.name[:4], path.name, digest),
        )
        applied_now.append(path.name)


def seed_reference_data(conn: psycopg.Connection) -> None:
    """Regions and municipalities from the code list (idempotent upserts)."""
    from schemas.codes import municipalities, regions

    exists = conn.execute("SELECT to_regclass('regions') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO regions (region_code, name, population_2024, deaths_2024, seat,
                   seat_lat, seat_lon) VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (region_code) DO UPDATE SET name = EXCLUDED.name,
                   population_2024 = EXCLUDED.population_2024,
                   deaths_2024 = EXCLUDED.deaths_2024, seat = EXCLUDED.seat,
                   seat_lat = EXCLUDED.seat_lat, seat_lon = EXCLUDED.seat_lon""",
            [
                (r.code, r.name, r.population_2024, r.deaths_2024, r.seat, r.seat_lat, r.seat_lon)
                for r in regions().values()
            ],
        )
        cur.executemany(
            """INSERT INTO municipalities (municipality_code, name, region_code)
               VALUES (%s, %s, %s)
               ON CONFLICT (municipality_code) DO UPDATE SET name = EXCLUDED.name,
                   region_code = EXCLUDED.region_code""",
            [(m.code, m.name, m.region_code) for m in municipalities().values()],
        )
    seed_catalogue(conn)


def seed_catalogue(conn: psycopg.Connection) -> None:
    """The indicator catalogue's definitions and default targets (idempotent)."""
    from processors.catalogue import default_catalogue

    exists = conn.execute("SELECT to_regclass('indicator_catalogue') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return
    cat = default_catalogue()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM indicator_catalogue")
        cur.executemany(
            """INSERT INTO indicator_catalogue (indicator_id, family, title_en, title_sv, kind,
                   direction, unit, min_n, periods, scopes, breakdowns, position)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    i.id,
                    i.family,
                    i.title_en,
                    i.title_sv,
                    i.kind,
                    i.direction,
                    i.unit,
                    i.min_n,
                    list(i.periods),
                    list(i.scopes),
                    list(i.breakdowns),
                    pos,
                )
                for pos, i in enumerate(cat.indicators.values())
            ],  # fmt: skip
        )
        # Defaults never overwrite a target an operator set for the same valid_from.
        cur.executemany(
            """INSERT INTO targets (indicator_id, scope, comparator, value, warn_value,
                   valid_from, source)
               VALUES (%s, 'national', %s, %s, %s, %s, %s)
               ON CONFLICT (indicator_id, scope, valid_from) DO NOTHING""",
            [
                (i.id, t.comparator, t.value, t.warn_value, t.valid_from, t.source)
                for i in cat.indicators.values()
                if (t := i.target) is not None
            ],
        )


def pending_migrations(database: Database) -> list[str]:
    """Names of migrations not yet applied to the database."""
    directory = database.migrations
    with connect(database) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        applied: set[str] = set()
        if exists and exists[0]:
            applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    return [p.name for p in migration_files(directory) if p.name[:4] not in applied]


def drop_database(admin_url: str, db_name: str) -> None:
    """DROP ... WITH (FORCE), retried: an autovacuum worker on the database, or the backend of
    a client that has just exited (superuser or another role's backends, which the writer role
    may not terminate), can be in the way for a moment."""

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    retry.database_contention(
        psycopg.errors.InsufficientPrivilege,
        psycopg.errors.ObjectInUse,
        attempts=20,
        step_s=0.1,
        when=lambda e: True,
    )(drop)
