"""TLS with sslmode=verify-full against a real PostgreSQL that speaks TLS only: a CA and a
server certificate for 127.0.0.1/localhost made at test time, palliwatch's own connect paths
(processors/db.py: migrate, connect; processors/sink.py: the worker's writes), and a wrong CA,
a wrong host name or a missing CA file failing with one line that names the fix."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from processors.db import DatabaseTLSError, connect, migrate
from processors.sink import OFFICIAL_DEATHS, Sink
from streams import settings as cfg
from streams.settings import REPO_ROOT, Settings, child_env
from tests.tls_cluster import TLSCluster, make_ca, make_server_cert, start_tls_cluster

pytestmark = pytest.mark.integration

OWNER, WRITER = cfg.LOCAL_DB_OWNER, cfg.LOCAL_DB_WRITER


@dataclasses.dataclass
class TLS:
    cluster: TLSCluster
    ca: Path
    wrong_ca: Path

    def url(self, role: str, ca: Path | str | None = None, host: str = "localhost") -> str:
        root = self.ca if ca is None else ca
        query = f"sslmode=verify-full&sslrootcert={quote(str(root))}"
        if host not in ("localhost", "127.0.0.1"):
            query += "&hostaddr=127.0.0.1"  # reach the server by address, verify this name
        return (
            f"postgresql://{role}:{cfg.local_password(role)}@{host}:{self.cluster.port}"
            f"/{cfg.LOCAL_DB_NAME}?{query}"
        )

    def settings(self, base: Settings, **urls: str) -> Settings:
        return base.replace(
            database_url=urls.get("writer", self.url(WRITER)),
            owner_database_url=urls.get("owner", self.url(OWNER)),
        )


@pytest.fixture(scope="module")
def tls(local_stack: Settings) -> Iterator[TLS]:
    # Under the state directory: the postgres user must reach it (pytest's tmp is root-only).
    root = local_stack.state_dir / "tls" / uuid.uuid4().hex[:8]
    keys = root / "keys"
    ca = make_ca(keys, "palliwatch-test-ca")
    wrong_ca = make_ca(keys, "some-other-ca")
    cert, key = make_server_cert(keys, ca, ["localhost", "127.0.0.1"])
    cluster = start_tls_cluster(root / "cluster", cert, key)
    try:
        for role, attrs in ((OWNER, "CREATEDB"), (WRITER, "")):
            cluster.sql(f"CREATE ROLE {role} LOGIN {attrs} PASSWORD '{cfg.local_password(role)}'")
        cluster.sql(f"CREATE DATABASE {cfg.LOCAL_DB_NAME} OWNER {OWNER}")
        yield TLS(cluster, ca, wrong_ca)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _one_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    return message


def test_migrate_and_the_worker_connect_with_verify_full(tls: TLS, local_stack: Settings) -> None:
    s = tls.settings(local_stack)
    assert migrate(s.database)  # as the owner, over TLS
    with connect(s.database) as conn:  # as the writer
        row = conn.execute(
            "SELECT current_user, ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert row is not None and row[:2] == (WRITER, True) and row[2].startswith("TLS")
    sink = Sink(s.database_url, give_up_after_s=10)
    now = datetime.now(UTC)

    async def go() -> None:
        try:
            await sink.write([(OFFICIAL_DEATHS, [("09", date(2025, 3, 1), 40, "scb", now)])])
        finally:
            await sink.close()

    asyncio.run(go())
    with connect(s.database) as conn:
        assert conn.execute("SELECT deaths FROM official_deaths").fetchall() == [(40,)]
    # Over TCP without TLS there is no way in (pg_hba.conf: hostssl only).
    plain = s.database_url.split("?", 1)[0] + "?sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain, connect_timeout=5).close()


def test_a_wrong_ca_fails_with_one_line_naming_the_fix(tls: TLS, local_stack: Settings) -> None:
    s = tls.settings(local_stack, writer=tls.url(WRITER, ca=tls.wrong_ca))
    with pytest.raises(DatabaseTLSError) as info:
        connect(s.database)
    message = _one_line(str(info.value))
    assert "not signed by the CA in sslrootcert=" in message and str(tls.wrong_ca) in message
    assert "set sslrootcert in PALLIWATCH_DATABASE_URL" in message
    assert cfg.local_password(WRITER) not in message
    # The sink stops at once (configuration is not an outage to wait out).
    sink = Sink(s.database_url, give_up_after_s=60)
    started = time.monotonic()
    with pytest.raises(DatabaseTLSError, match="not signed by the CA"):
        asyncio.run(sink.write([(OFFICIAL_DEATHS, [("09", date(2025, 4, 1), 1, "scb",
                                                    datetime.now(UTC))])]))  # fmt: skip
    assert time.monotonic() - started < 10


def test_a_wrong_host_name_fails_with_one_line_naming_the_fix(
    tls: TLS, local_stack: Settings
) -> None:
    s = tls.settings(local_stack, owner=tls.url(OWNER, host="db.wrong-name.invalid"))
    with pytest.raises(DatabaseTLSError) as info:
        migrate(s.database)
    message = _one_line(str(info.value))
    assert "does not name host 'db.wrong-name.invalid'" in message
    assert "subjectAltName" in message and "PALLIWATCH_OWNER_DATABASE_URL" in message


def test_a_missing_ca_file_fails_with_one_line_naming_the_fix(
    tls: TLS, local_stack: Settings
) -> None:
    missing = tls.ca.parent / "no-such-ca.crt"
    s = tls.settings(local_stack, writer=tls.url(WRITER, ca=missing))
    with pytest.raises(DatabaseTLSError) as info:
        connect(s.database)
    message = _one_line(str(info.value))
    assert f"sslrootcert={missing} does not exist" in message


def test_db_migrate_with_a_wrong_ca_exits_with_that_one_line(tls: TLS) -> None:
    env = child_env(
        cfg.load().replace(
            database_url=tls.url(WRITER), owner_database_url=tls.url(OWNER, ca=tls.wrong_ca)
        )
    )
    r = subprocess.run(
        [sys.executable, "-m", "streams.tooling.cli", "db", "migrate"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "not signed by the CA" in lines[0] and "PALLIWATCH_OWNER_DATABASE_URL" in lines[0]
