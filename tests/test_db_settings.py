"""The database settings: the worker's URL and the owner's, each from the environment or from a
mounted file, and the writer role migrations grant to (streams/settings.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import settings as cfg

VARIABLES = (
    "PALLIWATCH_DATABASE_URL", "PALLIWATCH_DATABASE_URL_FILE", "PALLIWATCH_OWNER_DATABASE_URL",
    "PALLIWATCH_OWNER_DATABASE_URL_FILE", "PALLIWATCH_DB_WRITER_ROLE",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_local_stack_has_a_writer_and_an_owner() -> None:
    s = cfg.load()
    assert s.database_url.startswith(f"postgresql://{cfg.LOCAL_DB_WRITER}:")
    assert s.owner_url.startswith(
        f"postgresql://{cfg.LOCAL_DB_OWNER}:{cfg.local_password(cfg.LOCAL_DB_OWNER)}@"
    )
    assert s.owner_url.endswith(f":{s.local_pg_port}/{cfg.LOCAL_DB_NAME}")
    assert not s.database_external and s.db_writer_role == cfg.LOCAL_DB_WRITER


def test_a_deployment_without_an_owner_url_migrates_as_the_database_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PALLIWATCH_DATABASE_URL", "postgresql://app:pw@db.example/pw")
    s = cfg.load()
    assert s.database_external and s.owner_database_url == ""  # `db migrate` warns
    assert s.owner_url == s.database_url == "postgresql://app:pw@db.example/pw"


def test_urls_and_writer_role_from_files_and_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    writer, owner = tmp_path / "writer-url", tmp_path / "owner-url"
    writer.write_text("postgresql://w:secret-w@db.example/pw?sslmode=verify-full\n")
    owner.write_text("postgresql://o:secret-o@db.example/pw?sslmode=verify-full\n")
    # The file wins over the variable, as for the Cell Key Method's secret.
    monkeypatch.setenv("PALLIWATCH_DATABASE_URL", "postgresql://ignored@x/y")
    monkeypatch.setenv("PALLIWATCH_DATABASE_URL_FILE", str(writer))
    monkeypatch.setenv("PALLIWATCH_OWNER_DATABASE_URL_FILE", str(owner))
    monkeypatch.setenv("PALLIWATCH_DB_WRITER_ROLE", "w")
    s = cfg.load()
    assert s.database_url == "postgresql://w:secret-w@db.example/pw?sslmode=verify-full"
    assert s.owner_url == "postgresql://o:secret-o@db.example/pw?sslmode=verify-full"
    assert s.database_external and s.db_writer_role == "w"


def test_an_unreadable_url_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PALLIWATCH_OWNER_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SystemExit, match="PALLIWATCH_OWNER_DATABASE_URL_FILE=.*cannot be read"):
        cfg.load()
