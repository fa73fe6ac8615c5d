"""Grafana's datasources take their TLS mode from configuration: nothing `palliwatch grafana
build` generates (nor what is checked in) names a TLS mode of its own."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from grafana import build
from grafana.panels import PG_TYPE
from streams.settings import REPO_ROOT

# Any spelling of a TLS mode setting: YAML/JSON keys, libpq's key=value and URL forms.
SSLMODE = re.compile(r"""\bsslmode["']?\s*[:=]\s*["']?([^"'\s,&]+)""", re.IGNORECASE)
ALLOWED = {build.env(build.DB_SSLMODE_ENV)}


def _checked_in() -> dict[Path, str]:
    roots = [build.PROVISIONING_DIR, build.GRAFANA_DIR / "dashboards"]
    return {p: p.read_text() for r in roots for p in sorted(r.rglob("*")) if p.is_file()}


def test_no_generated_or_checked_in_artefact_sets_a_tls_mode_of_its_own() -> None:
    files = {**build.artefacts(), **_checked_in()}
    assert any("sslmode" in text for text in files.values())  # the scan sees the datasources
    literal = {
        str(path.relative_to(REPO_ROOT)): sorted(set(values))
        for path, text in files.items()
        if (values := [v for v in SSLMODE.findall(text) if v not in ALLOWED])
    }
    assert literal == {}, "TLS modes written into artefacts instead of read from configuration"


def test_every_postgresql_datasource_reads_its_tls_mode_and_ca_from_the_environment() -> None:
    doc = yaml.safe_load(build.artefacts()[build.DATASOURCES_FILE])
    pg = [d for d in doc["datasources"] if d["type"] == PG_TYPE]
    assert pg
    for ds in pg:
        assert ds["jsonData"]["sslmode"] == build.env(build.DB_SSLMODE_ENV), ds["name"]
        assert ds["jsonData"]["sslRootCertFile"] == build.env(build.DB_SSLROOTCERT_ENV)
        assert ds["jsonData"]["tlsConfigurationMethod"] == "file-path"
