"""Who read what: the local stack's PostgreSQL logs each read of a published view with the
reading role (pgaudit's object audit through the audit role, schemas/audiences.py) and every
connection, and does not log the worker's writes."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from processors.sink import OFFICIAL_DEATHS, Sink
from schemas.audiences import PUBLIC_ROLE, region_role
from streams import settings as cfg
from streams.settings import Settings
from streams.tooling import services
from tests.conftest import Isolated

pytestmark = pytest.mark.integration


def _log(settings: Settings) -> Path:
    return settings.state_dir / "postgres" / "postgres.log"


def _login(url: str, role: str, password: str | None = None) -> str:
    host = url.split("@", 1)[1]
    return f"postgresql://{role}:{password or cfg.local_password(role)}@{host}"


def _lines_after(path: Path, offset: int, wanted: str, timeout_s: float = 10.0) -> list[str]:
    """The log's lines written after ``offset``, once one holds ``wanted`` (the server writes
    its log as it goes; this waits a moment for the last line)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with path.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        if any(wanted in line for line in lines) or time.monotonic() > deadline:
            return lines


def test_reads_of_published_views_are_logged_with_the_role_and_writes_are_not(
    isolated: Isolated, local_stack: Settings
) -> None:
    s, db = isolated.settings, isolated.db_name
    preload = services.pg_superuser_sql(local_stack, "SHOW shared_preload_libraries")
    bindir = services.ensure_pg_binaries()
    assert services.pgaudit_available(bindir), (
        "pgaudit is not installed: bash deploy/local/ensure-system-packages.sh "
        "(Debian's postgresql-NN-pgaudit)"
    )
    assert "pgaudit" in preload, (
        "the local PostgreSQL was started without pgaudit: `palliwatch services down` and up"
    )
    # A person's own login, a member of their audience's role: logged under their name.
    person = f"pw_reader_{uuid.uuid4().hex[:8]}"
    services.pg_superuser_sql(
        local_stack,
        f"CREATE ROLE {person} LOGIN PASSWORD 'pw-{person}' IN ROLE {region_role('09')}",
    )
    log = _log(local_stack)
    offset = log.stat().st_size
    tag = uuid.uuid4().hex[:8]
    try:
        sink = Sink(s.database_url, give_up_after_s=10)
        now = datetime.now(UTC)

        async def writes() -> None:
            try:
                for month in range(1, 13):
                    await sink.write([(OFFICIAL_DEATHS, [("09", date(2025, month, 1), 40 + month,
                                                         "scb", now)])])  # fmt: skip
            finally:
                await sink.close()

        asyncio.run(writes())
        with psycopg.connect(_login(s.database_url, PUBLIC_ROLE)) as conn:
            conn.execute(f"SELECT /* public-{tag} */ count(*) FROM published.indicator_latest")
        with psycopg.connect(_login(s.database_url, person, f"pw-{person}")) as conn:
            conn.execute(f"SELECT /* person-{tag} */ count(*) FROM exact.indicator_series")
        lines = _lines_after(log, offset, f"person-{tag}")
    finally:
        services.pg_superuser_sql(local_stack, f"DROP ROLE {person}")
    audit = [line for line in lines if "AUDIT:" in line and f"@{db} " in line]
    public = [line for line in audit if f"public-{tag}" in line]
    assert len(public) == 1, audit
    assert f"{PUBLIC_ROLE}@{db} LOG:  AUDIT: OBJECT," in public[0]
    assert ",READ,SELECT,VIEW,published.indicator_latest," in public[0]
    personal = [line for line in audit if f"person-{tag}" in line]
    assert len(personal) == 1 and f"{person}@{db} " in personal[0], audit
    assert ",VIEW,exact.indicator_series," in personal[0]
    # Every connection, with its role; the worker's twelve batches leave no audit line.
    assert any(f"connection authorized: user={person} database={db}" in line for line in lines)
    writer = s.db_writer_role
    assert any(f"connection authorized: user={writer} database={db}" in line for line in lines)
    assert not [line for line in audit if line.split(" LOG:", 1)[0].endswith(f"{writer}@{db}")]
    assert not [line for line in lines if "official_deaths" in line], "the writes were logged"
