"""Prometheus rules and configs: promtool checks and unit tests, and their coverage.

promtool comes from Debian's `prometheus` package (deploy/local/ensure-system-packages.sh
installs it). These tests FAIL when it is missing: CI must run the alert tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import REPO_ROOT

PROM_DIR = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package "
            "(bash deploy/local/ensure-system-packages.sh, or apt-get install prometheus)",
            pytrace=False,
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=300
    )


def _alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM_DIR / "rules" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_rule_files_pass_promtool_check() -> None:
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    r = run_promtool("check", "rules", *map(str, RULE_FILES))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("config", ["prometheus.local.yml", "prometheus.compose.yml"])
def test_configs_pass_promtool_check(config: str) -> None:
    r = run_promtool("check", "config", config)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_local_config_passes_promtool_check(tmp_path: Path) -> None:
    from streams.tooling.services import write_prometheus_config

    config = write_prometheus_config(tmp_path, ["127.0.0.1:6066", "127.0.0.1:6067"])
    r = run_promtool("check", "config", str(config))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout + r.stderr, r.stdout + r.stderr


def test_promtool_unit_tests_pass() -> None:
    assert TEST_FILES, "no promtool tests in deploy/prometheus/tests"
    r = run_promtool("test", "rules", *map(str, TEST_FILES))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names, "no alerts in deploy/prometheus/rules/alerts.yml"
    assert not names - firing, f"alerts without a firing test: {sorted(names - firing)}"
    assert not names - quiet, f"alerts without a not-firing test: {sorted(names - quiet)}"
    assert not (firing | quiet) - names, "tests for alerts that do not exist"


def test_every_alert_has_severity_and_plain_language_annotations() -> None:
    for rule in _alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        for key in ("summary", "description", "runbook"):
            assert len(rule["annotations"].get(key, "")) > 10, f"{name} lacks {key}"


def _exported_names() -> set[str]:
    from prometheus_client import REGISTRY

    import processors.metrics  # noqa: F401  (registers the worker's metrics)

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_rules_only_use_metrics_the_worker_exports() -> None:
    exported = _exported_names()
    used: set[str] = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                used |= set(re.findall(r"\bpalliwatch_[a-z_]+", rule["expr"]))
    assert used, "the rules use no worker metric"
    assert not used - exported, f"rules use metrics the worker does not export: {used - exported}"
