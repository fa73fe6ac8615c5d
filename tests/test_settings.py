"""UNIT TESTS of streams/settings.py as a whole: every variable is named once, by its field;
load() reads them back from what environ() renders; a wrong value is one line naming its
variable; secrets come from NAME or the file NAME_FILE names, and a child process is given the
file, not the secret. (Kafka security: test_kafka_settings.py; databases: test_db_settings.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from streams import settings as cfg
from streams.settings import REPO_ROOT, KafkaSecurity, Settings, child_env


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No settings variable of the outer environment (the tests' stack, their secret)."""
    for name in cfg.variables():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _load_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name in cfg.variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cfg.load()


def test_every_field_has_exactly_one_variable_and_each_is_the_prefix_and_its_name() -> None:
    pairs = list(Settings.variables())
    variables = [v for _, v in pairs]
    assert len(variables) == len(set(variables)), "two fields share a variable"
    assert all(re.fullmatch(r"PALLIWATCH_[A-Z0-9_]+", v) for v in variables), variables
    derived = {"kafka_external", "database_external"}  # facts about a load, not variables
    fields = {n for n in Settings.model_fields if n not in derived | {"kafka_security"}}
    fields |= {f"kafka_security.{n}" for n in KafkaSecurity.model_fields}
    assert {path for path, _ in pairs} == fields
    # The few that are not the prefix and the field's name say so in their definition.
    named = {path: v for path, v in pairs}
    assert named["partitions"] == "PALLIWATCH_PARTITIONS"
    assert named["as_of_date"] == "PALLIWATCH_AS_OF"
    assert named["kafka_security.protocol"] == "PALLIWATCH_KAFKA_SECURITY_PROTOCOL"
    assert named["kafka_security.sasl_password_file"] == "PALLIWATCH_KAFKA_SASL_PASSWORD_FILE"
    assert Settings.variable("database_url") == "PALLIWATCH_DATABASE_URL"


def test_no_other_module_spells_a_settings_variable() -> None:
    """In the shell, messages ask Settings.variable() and children get child_env(). (Tests
    that set a raw variable to test its parsing are the exception; processors/, below the
    shell, is given the names it reports, as processors.db.Database's url_variable.)"""
    spelled = re.compile("|".join(re.escape(f'"{v}') for v in cfg.variables()))
    found = [
        f"{path.relative_to(REPO_ROOT)}: {m.group()}"
        for path in (REPO_ROOT / "streams").rglob("*.py")
        if path != REPO_ROOT / "streams" / "settings.py"
        for m in spelled.finditer(path.read_text())
    ]
    assert not found, found


def test_load_environ_load_is_the_same_settings(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The local stack: its services are left out, so that the child, too, takes them for the
    # local stack's (and starts or expects nothing else).
    local = cfg.load()
    assert cfg.Settings.variable("kafka_bootstrap") not in local.environ()
    assert cfg.Settings.variable("database_url") not in local.environ()
    assert _load_from(clean, local.environ()) == local
    # A deployment: every kind of value (text, numbers, a date, a bool, bytes, paths).
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a CA")
    deployment = _load_from(
        clean,
        {
            "PALLIWATCH_KAFKA_BOOTSTRAP": "k1:9093,k2:9093",
            "PALLIWATCH_DATABASE_URL": "postgresql://w:pw@db.example/pw",
            "PALLIWATCH_OWNER_DATABASE_URL": "postgresql://o:pw@db.example/pw",
            "PALLIWATCH_AS_OF": "2025-03-31",
            "PALLIWATCH_PARTITIONS": "12",
            "PALLIWATCH_CLOCK_SKEW_SECONDS": "30",
            "PALLIWATCH_COMMIT_INTERVAL_SECONDS": "0.5",
            "PALLIWATCH_CELL_KEY_SECRET": "0123456789abcdef0123",
            "PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "PALLIWATCH_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "PALLIWATCH_KAFKA_SASL_USERNAME": "worker",
            "PALLIWATCH_KAFKA_SASL_PASSWORD": "pw",
            "PALLIWATCH_KAFKA_SSL_CAFILE": str(ca),
            "PALLIWATCH_KAFKA_SSL_CHECK_HOSTNAME": "false",
            "PALLIWATCH_KAFKA_REPLICATION_FACTOR": "3",
            "PALLIWATCH_KAFKA_MIN_INSYNC_REPLICAS": "2",
        },
    )
    assert deployment.kafka_external and deployment.database_external
    assert deployment.as_of() == date(2025, 3, 31) and deployment.clock_skew.total_seconds() == 30
    assert not deployment.kafka_security.ssl_check_hostname
    assert _load_from(clean, deployment.environ()) == deployment
    # Settings changed in this process (a test's own database and namespace) reach the child.
    changed = local.in_database("palliwatch_other").replace(topic_namespace="t", web_port=1)
    child = _load_from(clean, changed.environ())
    assert (child.database_url, child.owner_url, child.topic_namespace, child.web_port) == (
        changed.database_url,
        changed.owner_url,
        "t",
        1,
    )


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("PALLIWATCH_PARTITIONS", "x", ": expected an integer, got 'x'"),
        ("PALLIWATCH_LOCAL_PG_PORT", "5432x", ": expected an integer, got '5432x'"),
        ("PALLIWATCH_REEVALUATE_SECONDS", "soon", ": expected a number, got 'soon'"),
        ("PALLIWATCH_AS_OF", "31/03/2025", "='31/03/2025' is not a date: use YYYY-MM-DD"),
        ("PALLIWATCH_DB_RETRY_SECONDS", "-1", "='-1' is not a number of seconds (e.g. 600)"),
        ("PALLIWATCH_KAFKA_SECURITY_PROTOCOL", "TLS", "='TLS' is not one of PLAINTEXT, SSL"),
        ("PALLIWATCH_CELL_KEY_SECRET_FILE", "/nonexistent/key", "='/nonexistent/key' cannot be"),
    ],
)
def test_a_wrong_value_is_one_line_naming_its_variable(
    clean: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    with pytest.raises(SystemExit) as info:
        _load_from(clean, {variable: value})
    message = str(info.value)
    assert message.startswith(f"palliwatch: {variable}{said}") and "\n" not in message, message


def test_the_cli_says_it_in_one_line_without_a_traceback(clean: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "PALLIWATCH_PARTITIONS": "four"}
    r = subprocess.run(
        [sys.executable, "-m", "streams.tooling.cli", "topics", "create"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == "palliwatch: PALLIWATCH_PARTITIONS: expected an integer, got 'four'"


def test_a_secret_from_its_file_wins_and_a_child_gets_the_file(
    clean: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, pw = tmp_path / "cell-key", tmp_path / "sasl-pw"
    key.write_bytes(b"from-the-file-0123456789\n")
    pw.write_text("s3cret\n")
    s = _load_from(
        clean,
        {
            "PALLIWATCH_CELL_KEY_SECRET": "from-the-variable-0123",
            "PALLIWATCH_CELL_KEY_SECRET_FILE": str(key),
            "PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PALLIWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
            "PALLIWATCH_KAFKA_SASL_USERNAME": "worker",
            "PALLIWATCH_KAFKA_SASL_PASSWORD_FILE": str(pw),
        },
    )
    assert s.cell_key_secret == b"from-the-file-0123456789"  # trailing newline dropped
    assert s.kafka_security.sasl_password == "s3cret"
    env = child_env(s)
    # The child reads the same files: no secret in its environment, where /proc and `ps e`
    # would show it.
    assert env["PALLIWATCH_CELL_KEY_SECRET_FILE"] == str(key)
    assert env["PALLIWATCH_KAFKA_SASL_PASSWORD_FILE"] == str(pw)
    assert "PALLIWATCH_CELL_KEY_SECRET" not in env
    assert "PALLIWATCH_KAFKA_SASL_PASSWORD" not in env
    assert not any("s3cret" in v or "from-the-file" in v for v in env.values())
    assert _load_from(clean, env) == s
    # A secret this process changes forgets its file: the child gets the new value.
    changed = child_env(s.replace(cell_key_secret=b"another-secret-0123456"))
    assert changed["PALLIWATCH_CELL_KEY_SECRET"] == "another-secret-0123456"
    assert "PALLIWATCH_CELL_KEY_SECRET_FILE" not in changed


def test_a_child_on_a_database_of_its_own_gets_the_local_secret_as_its_file(
    clean: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean.setenv("PALLIWATCH_STATE_DIR", str(tmp_path))
    local = cfg.load()
    child = local.in_database("palliwatch_bench").with_resolved_cell_key_secret()
    env = child_env(child)
    assert env["PALLIWATCH_CELL_KEY_SECRET_FILE"] == str(tmp_path / "cell-key.secret")
    assert "PALLIWATCH_CELL_KEY_SECRET" not in env
    loaded = _load_from(clean, env)
    assert loaded.database_external  # its own database: it would not make a secret itself
    assert loaded.resolved_cell_key_secret() == local.resolved_cell_key_secret()


def test_child_env_replaces_the_outer_settings_and_keeps_the_rest(
    clean: pytest.MonkeyPatch,
) -> None:
    s = cfg.load().replace(partitions=4)
    outer = {
        "PATH": "/usr/bin",
        "PALLIWATCH_LOG_FORMAT": "json",  # not a setting of Settings: passed on as it is
        "PALLIWATCH_PARTITIONS": "8",  # the outer value, not these settings'
        "PALLIWATCH_KAFKA_SASL_PASSWORD": "outer",  # a stale secret of the outer environment
        "PALLIWATCH_DATABASE_URL_FILE": "/run/secrets/other",
    }
    env = child_env(s, outer)
    assert env["PATH"] == "/usr/bin" and env["PALLIWATCH_LOG_FORMAT"] == "json"
    assert env["PALLIWATCH_PARTITIONS"] == "4"
    assert "PALLIWATCH_KAFKA_SASL_PASSWORD" not in env
    assert "PALLIWATCH_DATABASE_URL_FILE" not in env


def test_settings_are_frozen_and_replace_makes_a_copy(clean: pytest.MonkeyPatch) -> None:
    s = cfg.load()
    with pytest.raises(ValueError, match="frozen"):
        s.partitions = 1
    t = s.replace(partitions=1)
    assert (s.partitions, t.partitions) == (4, 1) and t != s
    assert hash(s) == hash(cfg.load())
