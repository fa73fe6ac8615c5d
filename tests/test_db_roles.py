"""Least privilege on the real local PostgreSQL: the owner migrates, the worker's writer role
writes rows and nothing else, and every `db migrate` re-grants (a role created later works).

The worker end to end as the writer is the e2e suite itself (tests/conftest.py hands every
worker the writer's URL), e.g. tests/test_e2e_pipeline.py against the batch oracle.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime

import psycopg
import pytest

from processors import access
from processors.core import IndicatorValue
from processors.db import migrate, migrate_and_notices
from processors.sink import INDICATORS, OFFICIAL_DEATHS, Sink, UpsertSpec, fact_rows, indicator_row
from schemas.audiences import PUBLIC_ROLE
from schemas.models import DeathSurvey
from streams import settings as cfg
from streams.settings import REPO_ROOT, Settings, child_env, in_database
from streams.tooling import services
from tests.conftest import Isolated
from tests.keys import KEYS
from tests.pipeline_helpers import person, survey

pytestmark = pytest.mark.integration

Batches = Sequence[tuple[UpsertSpec, Sequence[Sequence[object]]]]


def _batches(tag: str) -> Batches:
    """One row for a table with row-level security (indicator_values, survey_arrivals) and one
    for a table without, as the worker writes them."""
    now = datetime.now(UTC)
    value = IndicatorValue(
        "registry_coverage", "region", "09", "rolling_12m", date(2025, 1, 1), date(2025, 12, 31),
        value=0.5, numerator=50, denominator=100, n=100, suppressed=False,
    ).public_as_exact()  # fmt: skip
    model = DeathSurvey.model_validate(survey(f"roles-{tag}", person(tag)))
    facts = [(spec, [row]) for spec, row in fact_rows(model, KEYS)]
    return [
        (INDICATORS, [indicator_row(value, now)]),
        (OFFICIAL_DEATHS, [("09", date(2025, 3, 1), 40, "scb", now)]),
        *facts,
    ]


def _write(url: str, batches: Batches) -> None:
    sink = Sink(url, give_up_after_s=5, record_keys=KEYS)

    async def go() -> None:
        try:
            await sink.write(batches)
        finally:
            await sink.close()

    asyncio.run(go())


def _login(url: str, role: str) -> str:
    host = url.split("@", 1)[1]
    return f"postgresql://{role}:{cfg.local_password(role)}@{host}"


def test_the_writer_is_no_superuser_owns_nothing_and_cannot_create_databases(
    isolated: Isolated,
) -> None:
    s = isolated.settings
    with psycopg.connect(s.owner_url) as conn:
        attrs = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
            "WHERE rolname = %s",
            (s.db_writer_role,),
        ).fetchone()
        assert attrs == (False, False, False, False)
        owners = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT relowner::regrole::text FROM pg_class WHERE relnamespace IN "
                "('public'::regnamespace, 'published'::regnamespace, 'exact'::regnamespace)"
            )
        }
        assert owners == {cfg.LOCAL_DB_OWNER}
        db_owner = conn.execute(
            "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert db_owner == (cfg.LOCAL_DB_OWNER,)


# Each is something the worker never does; the writer must be refused every one of them.
REFUSED = [
    "CREATE TABLE pw_intruder (a int)",
    "CREATE SCHEMA pw_intruder",
    "CREATE INDEX ON surveys (unit_id)",
    "ALTER TABLE surveys ADD COLUMN pw_extra int",
    "ALTER TABLE indicator_values DISABLE ROW LEVEL SECURITY",
    "DROP TABLE official_deaths",
    "DROP VIEW published.indicator_latest",
    "TRUNCATE surveys",
    "DELETE FROM indicator_values",
    "CREATE OR REPLACE FUNCTION exact.readable_regions() RETURNS text[] LANGUAGE sql "
    "AS $$ SELECT ARRAY['01'] $$",
    "DROP POLICY exact_by_region ON indicator_values",
    "INSERT INTO schema_migrations VALUES ('9999', '9999_x.sql', 'x')",
    "UPDATE regions SET name = 'x'",
    "DELETE FROM ckm_ptable",
    "ALTER TABLE surveys OWNER TO palliwatch_writer",
    "SELECT * FROM published.indicator_latest",  # the readers' layer is not the worker's
    "CREATE DATABASE pw_intruder",
    "CREATE ROLE pw_intruder",
]


def test_the_writer_can_write_rows_and_nothing_else(isolated: Isolated) -> None:
    s = isolated.settings
    _write(s.database_url, _batches("w"))
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (s.db_writer_role,)
        # Its own rows, through its row-level security policy (the readers' policies see none).
        assert conn.execute("SELECT count(*) FROM indicator_values").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM survey_arrivals").fetchone() == (1,)
        refused = []
        for statement in REFUSED:
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                refused.append(statement)
        assert refused == REFUSED
        # Granting on a table it does not own is a warning, not an error, and grants nothing.
        conn.execute(f"GRANT SELECT ON surveys TO {PUBLIC_ROLE}")
        held = conn.execute(
            "SELECT has_table_privilege(%s, 'surveys', 'SELECT')", (PUBLIC_ROLE,)
        ).fetchone()
        assert held == (False,)
    with psycopg.connect(s.owner_url) as conn:  # nothing of it happened
        assert conn.execute("SELECT count(*) FROM indicator_values").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('pw_intruder')").fetchone() == (None,)


def test_the_writer_may_write_exactly_the_sinks_tables() -> None:
    """One list: every UpsertSpec of processors/sink.py, and no reference or bookkeeping table."""
    assert access.writer_tables() == sorted(
        ["indicator_current", "indicator_values", "official_deaths", "population",
         "survey_arrivals", "surveys", "targets", "unit_events"]
    )  # fmt: skip


def test_a_writer_created_after_migrating_can_write_after_the_next_migrate(
    isolated: Isolated,
) -> None:
    s = isolated.settings
    role = f"pw_writer_{uuid.uuid4().hex[:8]}"
    # Created as carelessly as a deployment might: migrate grants it and names what is too much.
    services.pg_superuser_sql(
        s, f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{cfg.local_password(role)}'"
    )
    later = s.replace(database_url=_login(s.database_url, role), db_writer_role=role)
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _write(later.database_url, _batches("before"))
        assert migrate_and_notices(later.database) == [
            f"the writer role {role} has CREATEDB: ALTER ROLE {role} NOCREATEDB"
        ]
        services.pg_superuser_sql(s, f"ALTER ROLE {role} NOCREATEDB")
        assert migrate_and_notices(later.database) == []
        _write(later.database_url, _batches("after"))
        with psycopg.connect(later.database_url) as conn:
            assert conn.execute("SELECT count(*) FROM survey_arrivals").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("TRUNCATE surveys")
    finally:
        services.pg_superuser_sql(s, f"DROP OWNED BY {role}", db=isolated.db_name)
        services.pg_superuser_sql(s, f"DROP ROLE {role}")


def test_a_reader_without_grants_gets_them_back_from_the_next_migrate(
    isolated: Isolated,
) -> None:
    """Roles are the cluster's, so a reader "created later" is a reader this database has not
    granted yet: take its grants away, and the next migrate gives them back."""
    s = isolated.settings
    with psycopg.connect(s.owner_url, autocommit=True) as conn:
        conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA published FROM {PUBLIC_ROLE}")
        conn.execute(f"REVOKE USAGE ON SCHEMA published FROM {PUBLIC_ROLE}")
    reader = _login(s.database_url, PUBLIC_ROLE)
    with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM published.regions")
    migrate(s.database)
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM published.regions").fetchone() == (21,)


def test_migrate_names_what_a_single_role_or_a_missing_writer_lacks(isolated: Isolated) -> None:
    s = isolated.settings
    single = s.replace(database_url=s.owner_url, owner_database_url="")
    notices = migrate_and_notices(single.database)
    assert "PALLIWATCH_OWNER_DATABASE_URL is not set" in notices[0]
    assert "owns the schema" in notices[0]
    missing = s.replace(db_writer_role="pw_no_such_writer")
    (notice,) = migrate_and_notices(missing.database)
    assert "pw_no_such_writer does not exist" in notice
    assert "CREATE ROLE pw_no_such_writer" in notice and "PALLIWATCH_DB_WRITER_ROLE" in notice


def test_local_bootstrap_hands_an_earlier_versions_database_to_the_owner(
    local_stack: Settings,
) -> None:
    """Earlier versions made the writer own the database and every table, with CREATEDB:
    `services up` (already running: it bootstraps again) hands it all to the owner."""
    db_name = f"palliwatch_old_{uuid.uuid4().hex[:8]}"
    w, o = cfg.LOCAL_DB_WRITER, cfg.LOCAL_DB_OWNER
    services.pg_superuser_sql(local_stack, f"ALTER ROLE {w} CREATEDB")
    services.pg_superuser_sql(local_stack, f'CREATE DATABASE "{db_name}" OWNER {w}')
    old_url = in_database(local_stack.database_url, db_name)
    try:
        with psycopg.connect(old_url, autocommit=True) as conn:  # as the writer, as before
            conn.execute("CREATE TABLE indicator_values (a int)")
        services.pg_up(local_stack)
        services.pg_up(local_stack)  # idempotent
        with psycopg.connect(in_database(local_stack.owner_url, db_name)) as conn:
            row = conn.execute(
                "SELECT d.datdba::regrole::text, c.relowner::regrole::text, r.rolcreatedb "
                "FROM pg_database d, pg_class c, pg_roles r WHERE d.datname = current_database() "
                "AND c.oid = 'indicator_values'::regclass AND r.rolname = %s",
                (w,),
            ).fetchone()
        assert row == (o, o, False)
    finally:
        services.pg_superuser_sql(local_stack, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def test_db_migrate_without_an_owner_url_warns_and_still_works(isolated: Isolated) -> None:
    one_role = isolated.settings.replace(  # one role for everything
        database_url=isolated.settings.owner_url, owner_database_url=""
    )
    env = child_env(one_role)
    r = subprocess.run(
        [sys.executable, "-m", "streams.tooling.cli", "db", "migrate"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "database schema is up to date" in r.stdout
    assert "PALLIWATCH_OWNER_DATABASE_URL is not set" in r.stderr and "owns the schema" in r.stderr
    assert cfg.local_password(cfg.LOCAL_DB_OWNER) not in r.stderr
