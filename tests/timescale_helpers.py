"""A real TimescaleDB server for the tests that need one, and the same tests on both backends.

CI and the local stack have plain PostgreSQL only. Tests that need TimescaleDB run where
``PALLIWATCH_TEST_TIMESCALE_URL`` points at a TimescaleDB server (its ``timescaledb`` in
``shared_preload_libraries``), as a role with CREATEDB and CREATEROLE: each test gets its own
database there, and the reader roles of schemas/audiences.py are created on the server with the
local stack's passwords (streams.settings.local_password), as `palliwatch services up` does
locally. ``PALLIWATCH_TEST_TIMESCALE_UNPRELOADED_URL`` points at a server with TimescaleDB
installed but not preloaded. Unset, those tests skip and say so. A URL that is set but points at
the wrong kind of server fails the test: it was asked for.

``any_isolated`` gives a test the local stack's plain PostgreSQL and, as a second parameter,
TimescaleDB: the same assertions hold on both.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from processors import access
from processors.db import SUPERSEDED, drop_database, migrate
from schemas.audiences import all_audiences
from streams import settings as settings_mod
from streams.settings import MIGRATIONS_DIR, child_env, in_database, local_password
from tests.conftest import Isolated

ENV_URL = "PALLIWATCH_TEST_TIMESCALE_URL"
ENV_UNPRELOADED_URL = "PALLIWATCH_TEST_TIMESCALE_UNPRELOADED_URL"
BACKENDS = ("postgresql", "timescaledb")


def _url_or_skip(env: str, what: str) -> str:
    url = os.environ.get(env)
    if not url:
        pytest.skip(
            f"needs {what}: set {env} to a postgresql:// URL of one (a role with CREATEDB and "
            "CREATEROLE; see tests/timescale_helpers.py)"
        )
    return url


def server_state(url: str) -> tuple[bool, bool]:
    """(TimescaleDB installed, its loader preloaded) on the server at ``url``."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        installed = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        # Defined by the loader only where it was preloaded (readable by any role, unlike
        # shared_preload_libraries).
        loader = conn.execute(
            "SELECT current_setting('timescaledb.bgw_launcher_poll_time', true)"
        ).fetchone()
    return installed is not None, bool(loader and loader[0])


def _reader_roles(url: str) -> None:
    """The audiences' login roles, with the local stack's passwords (idempotent)."""
    with psycopg.connect(url, autocommit=True) as conn:
        access.create_roles(conn, {a.role: local_password(a.role) for a in all_audiences()})


def fresh_database(admin_url: str, prefix: str = "palliwatch_tsdb") -> tuple[str, str]:
    """A new empty database on the server of ``admin_url``: (its name, its URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, in_database(admin_url, name)


@pytest.fixture(scope="session")
def timescale_url() -> str:
    url = _url_or_skip(ENV_URL, "a TimescaleDB server")
    installed, preloaded = server_state(url)
    if not (installed and preloaded):
        pytest.fail(
            f"{ENV_URL} points at a server without TimescaleDB preloaded (installed: "
            f"{installed}, preloaded: {preloaded}): add timescaledb to its "
            "shared_preload_libraries and restart it, or unset the variable",
            pytrace=False,
        )
    _reader_roles(url)
    return url


@pytest.fixture(scope="session")
def unpreloaded_url() -> str:
    url = _url_or_skip(ENV_UNPRELOADED_URL, "a server with TimescaleDB installed, not preloaded")
    installed, preloaded = server_state(url)
    if not installed or preloaded:
        pytest.fail(
            f"{ENV_UNPRELOADED_URL} must point at a server with TimescaleDB installed but not "
            f"in shared_preload_libraries (installed: {installed}, preloaded: {preloaded})",
            pytrace=False,
        )
    _reader_roles(url)
    return url


@pytest.fixture
def timescale_isolated(timescale_url: str) -> Iterator[Isolated]:
    """A migrated database of its own on the TimescaleDB server (no Kafka: these tests write
    through the sink or directly)."""
    name, url = fresh_database(timescale_url)
    s = settings_mod.load().replace(database_url=url, owner_database_url=url)
    try:
        migrate(s.database)
        # The worker, as a deployment's, with no owner URL of its own.
        worker = s.replace(owner_database_url="")
        yield Isolated(s, child_env(worker), name, worker)
    finally:
        drop_database(timescale_url, name)


@pytest.fixture(params=BACKENDS)
def any_isolated(request: pytest.FixtureRequest) -> Isolated:
    """The local stack's PostgreSQL, then TimescaleDB (skipped where it is not configured)."""
    fixture = "isolated" if request.param == "postgresql" else "timescale_isolated"
    isolated: Isolated = request.getfixturevalue(fixture)
    return isolated


def is_timescale(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            is not None
        )


# The guard of 0002 as released, before the shared_preload_libraries check (issue 16).
_ORIGINAL_0002_GUARD = """DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
"""


def original_0002() -> str:
    """0002_storage.sql as first released: today's text with its guard put back. Its digest
    must be the one processors/db.py accepts, so this is that text, byte for byte."""
    text = (MIGRATIONS_DIR / "0002_storage.sql").read_text(encoding="utf-8")
    start = text.index("-- Installed is not enough")
    end = text.index(
        "    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN\n"
        "        PERFORM create_hypertable"
    )
    original = text[:start] + _ORIGINAL_0002_GUARD + text[end:]
    digest = hashlib.sha256(original.encode()).hexdigest()
    assert digest in SUPERSEDED["0002_storage.sql"], "not the released 0002: update the helper"
    return original


def old_migrations(directory: Path) -> Path:
    """The migrations a database had before issue 16: 0001 to 0005, 0002 as released."""
    for path in sorted(MIGRATIONS_DIR.glob("000[1-5]_*.sql")):
        text = original_0002() if path.name == "0002_storage.sql" else path.read_text("utf-8")
        (directory / path.name).write_text(text, encoding="utf-8")
    return directory
