"""UNIT TESTS of the Kafka security and replication settings (streams/settings.py) and of how
streams/kafka_clients.py hands them to kafka-python, aiokafka and Faust. The brokers that
enforce them are in test_kafka_security.py and test_kafka_replication.py."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from streams import kafka_clients
from streams import settings as settings_mod
from tests.kafka_cluster import make_pki


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> settings_mod.Settings:
    for name in list(os.environ):
        if name.startswith("PALLIWATCH_KAFKA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_mod.load()


def test_plaintext_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _load(monkeypatch)
    assert s.kafka_security.protocol == "PLAINTEXT"
    assert (s.kafka_replication_factor, s.kafka_min_insync_replicas) == (1, 1)
    assert kafka_clients.auth_options(s) == {"security_protocol": "PLAINTEXT"}
    assert kafka_clients.faust_credentials(s) is None


def test_sasl_ssl_with_the_password_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = _load(monkeypatch, PALLIWATCH_KAFKA_SECURITY_PROTOCOL="sasl_ssl",
              PALLIWATCH_KAFKA_SASL_MECHANISM="scram-sha-512",
              PALLIWATCH_KAFKA_SASL_USERNAME="worker",
              PALLIWATCH_KAFKA_SASL_PASSWORD_FILE=str(secret),
              PALLIWATCH_KAFKA_SSL_CAFILE=str(pki.ca))  # fmt: skip
    sec = s.kafka_security
    assert (sec.protocol, sec.sasl_mechanism, sec.sasl_password) == (
        "SASL_SSL", "SCRAM-SHA-512", "s3cret")  # fmt: skip
    assert "s3cret" not in repr(s)  # secrets stay out of logs and tracebacks
    opts = kafka_clients.auth_options(s)
    assert opts["sasl_plain_username"] == "worker" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    assert opts["ssl_context"].check_hostname
    creds = kafka_clients.faust_credentials(s)
    assert isinstance(creds, SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"


def test_mutual_tls_loads_the_client_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    s = _load(monkeypatch, PALLIWATCH_KAFKA_SECURITY_PROTOCOL="SSL",
              PALLIWATCH_KAFKA_SSL_CAFILE=str(pki.ca),
              PALLIWATCH_KAFKA_SSL_CERTFILE=str(pki.client_cert),
              PALLIWATCH_KAFKA_SSL_KEYFILE=str(pki.client_key))  # fmt: skip
    assert isinstance(kafka_clients.faust_credentials(s), SSLCredentials)
    assert kafka_clients.auth_options(s)["security_protocol"] == "SSL"
    # The client key with another certificate cannot be loaded: said, not a traceback.
    wrong = _load(monkeypatch, PALLIWATCH_KAFKA_SECURITY_PROTOCOL="SSL",
                  PALLIWATCH_KAFKA_SSL_CERTFILE=str(pki.client_cert),
                  PALLIWATCH_KAFKA_SSL_KEYFILE=str(pki.ca.with_name("ca.key")))  # fmt: skip
    with pytest.raises(SystemExit, match="TLS files cannot be used"):
        kafka_clients.auth_options(wrong)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "is not one of PLAINTEXT, SSL"),
        ({"PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs PALLIWATCH_KAFKA_SASL_MECH"),
        ({"PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
          "PALLIWATCH_KAFKA_SASL_MECHANISM": "GSSAPI"}, "one of SCRAM-SHA-256"),
        ({"PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
          "PALLIWATCH_KAFKA_SASL_MECHANISM": "PLAIN", "PALLIWATCH_KAFKA_SASL_USERNAME": "u"},
         "PALLIWATCH_KAFKA_SASL_PASSWORD"),
        ({"PALLIWATCH_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "cannot be read"),
        ({"PALLIWATCH_KAFKA_SSL_CAFILE": "/etc/hostname"}, "does not use TLS"),
        ({"PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "SSL",
          "PALLIWATCH_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "cannot be read"),
        ({"PALLIWATCH_KAFKA_SECURITY_PROTOCOL": "SSL",
          "PALLIWATCH_KAFKA_SSL_CERTFILE": "/etc/hostname"}, "needs PALLIWATCH_KAFKA_SSL_KEYFILE"),
        ({"PALLIWATCH_KAFKA_REPLICATION_FACTOR": "2",
          "PALLIWATCH_KAFKA_MIN_INSYNC_REPLICAS": "3"}, "no write could succeed"),
        ({"PALLIWATCH_KAFKA_REPLICATION_FACTOR": "0"}, "at least 1"),
        ({"PALLIWATCH_KAFKA_MIN_INSYNC_REPLICAS": "two"}, "whole number"),
    ],
)  # fmt: skip
def test_a_wrong_setting_names_itself(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        _load(monkeypatch, **env)


def test_production_replication(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.topics import CATALOGUE
    from streams.tooling.kafka_admin import topic_configs

    s = _load(monkeypatch, PALLIWATCH_KAFKA_REPLICATION_FACTOR="3",
              PALLIWATCH_KAFKA_MIN_INSYNC_REPLICAS="2")  # fmt: skip
    assert (s.kafka_replication_factor, s.kafka_min_insync_replicas) == (3, 2)
    assert all(topic_configs(s, spec)["min.insync.replicas"] == "2" for spec in CATALOGUE)
