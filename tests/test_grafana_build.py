"""The committed Grafana artefacts equal what grafana/ generates (drift), and static promises
about them: published schema only, no indicator thresholds in the dashboards, PromQL names that
the worker exports, routing for every region, provisioning files consistent with the API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from grafana import alerts, build, dashboards
from grafana.macros import MacroError, expand
from grafana.panels import PG, PROM
from processors import metrics
from processors.catalogue import default_catalogue
from schemas.codes import regions
from streams.cli import main
from streams.settings import REPO_ROOT


def test_committed_artefacts_equal_the_generated_ones() -> None:
    stale = build.drift()
    assert stale == [], f"run `palliwatch grafana build` and commit: {stale}"
    committed = {p for p in (REPO_ROOT / "grafana" / "dashboards").glob("*.json")} | set(
        (REPO_ROOT / "grafana" / "provisioning" / "alerting").glob("*.yaml")
    )
    assert committed == set(build.artefacts()), "a stale generated file is still committed"


def test_grafana_check_command(capsys) -> None:  # type: ignore[no-untyped-def]
    main(["grafana", "check"])
    assert "up to date" in capsys.readouterr().out


def _all_sql() -> list[str]:
    out = []
    for d in dashboards.all_dashboards().values():
        out += [v["query"] for v in d["templating"]["list"] if v.get("datasource") == PG]
        out += [t["rawSql"] for p in d["panels"] for t in p.get("targets", []) if "rawSql" in t]
    for g in alerts.rule_groups():
        out += [
            q["model"]["rawSql"] for r in g["rules"] for q in r["data"] if "rawSql" in q["model"]
        ]
    return out


def test_sql_reads_only_the_published_schema() -> None:
    for sql in _all_sql():
        for rel in re.findall(r"\b(?:FROM|JOIN)\s+([\w.]+)", sql, re.I):
            assert rel.startswith("published."), (rel, sql)


def test_no_indicator_threshold_is_written_in_a_dashboard() -> None:
    """Traffic lights come from the database's status; the only thresholds are the map's status
    levels 0..4. A target value (0.98, 0.9, 8, 0.25 ...) appearing in a panel would be a bug."""
    targets = {i.target.value for i in default_catalogue().indicators.values() if i.target}
    for d in dashboards.all_dashboards().values():
        for p in d["panels"]:
            text = json.dumps(p.get("fieldConfig", {}))
            for steps in re.findall(r'"steps": (\[.*?\])', text):
                assert {s["value"] for s in json.loads(steps)} <= {None, 1, 2, 3, 4}, p["title"]
            for sql in [t.get("rawSql", "") for t in p.get("targets", [])]:
                numbers = {float(x) for x in re.findall(r"(?<![\w.'])\d+\.\d+", sql)}
                assert not numbers & targets, (p["title"], numbers & targets)


def test_catalogue_ids_used_exist() -> None:
    ids = set(default_catalogue().indicators)
    used = set(dashboards.KEY_INDICATORS + dashboards.SPEC_CARE + dashboards.PER_100K)
    assert used | set(dashboards.AVAILABILITY) <= ids


def test_promql_uses_metrics_the_worker_exports() -> None:
    exported = {
        m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")
    }
    exported |= {f"{n}_total" for n in exported} | {f"{n}_bucket" for n in exported}
    exported.add(
        "palliwatch_consumer_lag"
    )  # added by the consumer-lag work (labels topic, partition)
    exprs = [
        t["expr"]
        for d in dashboards.all_dashboards().values()
        for p in d["panels"]
        for t in p.get("targets", [])
        if t["datasource"] == PROM
    ] + [q["model"]["expr"] for g in alerts.rule_groups() for r in g["rules"] for q in r["data"]
         if q["datasourceUid"] == PROM["uid"]]  # fmt: skip
    assert len(exprs) >= 10
    for expr in exprs:
        for name in re.findall(r"\bpalliwatch_\w+", expr):
            assert name in exported, (name, expr)


def test_every_dashboard_has_unique_panel_ids_and_grid_within_24_columns() -> None:
    uids = set()
    for d in dashboards.all_dashboards().values():
        uids.add(d["uid"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids))
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24
    assert len(uids) == 4


def test_alert_rules_labels_annotations_and_routing() -> None:
    groups = alerts.rule_groups()
    rules = [r for g in groups for r in g["rules"]]
    assert len({r["uid"] for r in rules}) == len(rules)
    for r in rules:
        assert {"summary", "value"} <= set(r["annotations"])
        assert r["labels"]["team"] in ("quality", "registry", "ops")
        assert r["condition"] in {q["refId"] for q in r["data"]}
        if r["labels"]["team"] != "ops":
            # region, indicator and severity come from the query's label columns
            assert "$labels.region" in r["annotations"]["summary"]
            assert {"target", "n", "drilldown"} <= set(r["annotations"])
            assert (
                "/d/palliwatch-region/?var-region={{ $labels.region }}"
                in (r["annotations"]["drilldown"])
            )
        else:
            assert {"severity", "indicator"} <= set(r["labels"])
    policy = alerts.notification_policy()
    receivers = {cp["name"] for cp in alerts.contact_points()}
    assert policy["receiver"] in receivers
    routed = {m[2] for r in policy["routes"] for m in r["object_matchers"] if m[0] == "region"}
    assert routed == set(regions())
    assert {r["receiver"] for r in policy["routes"]} <= receivers
    mutes = {m["name"] for m in alerts.mute_timings()}
    for r in policy["routes"]:
        assert set(r.get("mute_time_intervals", [])) <= mutes


def test_provisioning_files_match_the_api_objects() -> None:
    folder = REPO_ROOT / "grafana" / "provisioning"
    rules = yaml.safe_load((folder / "alerting" / "rules.yaml").read_text())
    assert [g["name"] for g in rules["groups"]] == [g["title"] for g in alerts.rule_groups()]
    assert {g["folder"] for g in rules["groups"]} == {alerts.FOLDER_TITLE}
    dash = yaml.safe_load((folder / "dashboards" / "palliwatch.yaml").read_text())
    provider = dash["providers"][0]
    assert (provider["folder"], provider["folderUid"]) == (alerts.FOLDER_TITLE, alerts.FOLDER_UID)
    ds = yaml.safe_load((folder / "datasources" / "palliwatch.yaml").read_text())["datasources"]
    assert {d["uid"] for d in ds} == {PG["uid"], PROM["uid"]}
    assert next(d for d in ds if d["uid"] == PG["uid"])["user"] == "palliwatch_reader"
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert any(v.startswith("../grafana/dashboards:") for v in volumes)


def test_macro_expansion_follows_grafana() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    t1 = datetime(2026, 2, 1, tzinfo=UTC)
    sql = (
        "SELECT $__time(d), $__timeGroup(d, '5m') WHERE $__timeFilter(d) AND x > $__timeFrom() "
        "AND y < $__timeTo() AND r = '$region' AND b = '${breakdown}' AND m IN ($multi) "
        "AND i = '$__interval' AND ms = $__interval_ms"
    )
    out = expand(
        sql, time_from=t0, time_to=t1, interval=timedelta(hours=1),
        variables={"region": "01", "breakdown": "o'k", "multi": ["a", "b"]},
    )  # fmt: skip
    assert out == (
        'SELECT d AS "time", floor(extract(epoch from d)/300)*300 WHERE d BETWEEN '
        "'2026-01-02T03:04:05Z' AND '2026-02-01T00:00:00Z' AND x > '2026-01-02T03:04:05Z' "
        "AND y < '2026-02-01T00:00:00Z' AND r = '01' AND b = 'o''k' AND m IN ('a','b') "
        "AND i = '1h' AND ms = 3600000"
    )
    try:
        expand("SELECT '$nope'", time_from=t0, time_to=t1)
    except MacroError:
        pass
    else:
        raise AssertionError("an undefined variable must fail")


def test_contact_points_file_covers_every_region() -> None:
    data = alerts.load_contacts(Path(alerts.CONTACT_POINTS_FILE))
    assert set(map(str, data["regions"])) == set(regions())
