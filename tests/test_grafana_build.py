"""The committed Grafana artefacts equal what grafana/ generates (drift), and static promises
about them: one organisation per audience with one datasource logging in as its role, each
organisation's SQL reading only its audience's layer, region organisations fixed to their region,
public dashboards without daily windows or nowcast, alert texts without counts, no indicator
thresholds in the dashboards, PromQL names that the worker exports, routing for every region,
provisioning files consistent with the API objects."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import alerts, build, dashboards
from grafana.macros import MacroError, expand
from grafana.orgs import Org, national, orgs, public, regional
from grafana.panels import PG_TYPE, PROM
from processors import metrics
from processors.catalogue import PERIOD_TYPES, default_catalogue
from schemas import audiences
from schemas.codes import municipalities, regions
from streams.settings import REPO_ROOT, local_password
from streams.tooling.cli import main

# The views every audience reads from `published` (no figures about people): the issue's
# reference views. Every other relation an exact organisation reads must be `exact.`.
REFERENCE_VIEWS = {
    "regions",
    "municipalities",
    "indicators",
    "targets_history",
    "official_deaths",
    "unit_state",
    "white_spots",
}
DAILY = ("rolling_30d", "rolling_90d", "rolling_365d")
# What counts people or records: never in an alert's text, nor among the values its
# notification lists (Grafana's default template prints every reduced value).
COUNTS = {"n", "numerator", "denominator", "previous_n", "revisions", "x0", "x1", "n0", "n1"}


def test_committed_artefacts_equal_the_generated_ones() -> None:
    stale = build.drift()
    assert stale == [], f"run `palliwatch grafana build` and commit: {stale}"
    grafana_dir = REPO_ROOT / "grafana"
    committed = (
        set((grafana_dir / "dashboards").rglob("*.json"))
        | set((grafana_dir / "provisioning").rglob("*.yaml"))
        | set((grafana_dir / "bootstrap").glob("*.tsv"))
    )
    assert committed == set(build.artefacts()), "a stale generated file is still committed"


def test_grafana_check_command(capsys: pytest.CaptureFixture[str]) -> None:
    main(["grafana", "check"])
    assert "up to date" in capsys.readouterr().out


# ---- organisations and datasources ----------------------------------------------------------


def test_one_organisation_per_audience_with_its_role() -> None:
    found = {o.key: o for o in orgs()}
    assert set(found) == {a.key for a in audiences.all_audiences()}
    for a in audiences.all_audiences():
        org = found[a.key]
        assert (org.role, org.schema, org.region, org.name) == (a.role, a.schema, a.region, a.title)
    assert [o.org_id for o in orgs()] == list(range(1, len(found) + 1))
    assert public().org_id == 1  # where anonymous viewers and new users land
    assert len({o.datasource_uid for o in orgs()}) == len(found)
    assert {o.region for o in orgs() if o.region} == set(regions())
    table = [
        line.split("\t")
        for line in (REPO_ROOT / "grafana" / "bootstrap" / "orgs.tsv").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert table == [[str(o.org_id), o.key, o.name] for o in orgs()]


def _walk(obj: Any) -> list[dict[str, Any]]:
    """Every dict inside a dashboard model."""
    out: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        out.append(obj)
        for v in obj.values():
            out += _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _walk(v)
    return out


def _org_sql(org: Org) -> list[tuple[str, str]]:
    """(dashboard uid / panel or variable, raw SQL) of every SQL query of the org's dashboards."""
    out = []
    for d in dashboards.org_dashboards(org).values():
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                out.append((f"{d['uid']} / variable {v['name']}", v["query"]))
        for p in d["panels"]:
            for t in p.get("targets", []):
                if "rawSql" in t:
                    out.append((f"{d['uid']} / {p['title']}", t["rawSql"]))
    return out


def _alert_sql() -> list[tuple[str, str]]:
    return [
        (r["uid"], q["model"]["rawSql"])
        for g in alerts.rule_groups()
        for r in g["rules"]
        for q in r["data"]
        if "rawSql" in q["model"]
    ]


def _relations(sql: str) -> list[str]:
    return re.findall(r"\b(?:FROM|JOIN)\s+([\w.]+)", sql, re.I)


def _allowed(org: Org, relation: str) -> bool:
    schema, _, name = relation.partition(".")
    if not org.exact:
        return schema == audiences.PUBLIC_SCHEMA
    return schema == audiences.EXACT_SCHEMA or (
        schema == audiences.PUBLIC_SCHEMA and name in REFERENCE_VIEWS
    )


def test_each_organisation_reads_only_its_audiences_layer() -> None:
    exact_read = set()
    for org in orgs():
        queries = _org_sql(org)
        assert queries, org.key
        for where, sql in queries:
            relations = _relations(sql)
            assert relations, (org.key, where)
            for rel in relations:
                assert _allowed(org, rel), (org.key, where, rel)
                if rel.startswith("exact."):
                    exact_read.add(rel)
    assert "exact.indicator_latest" in exact_read and "exact.indicator_series" in exact_read
    for where, sql in _alert_sql():
        for rel in _relations(sql):
            assert rel.startswith("exact.alert_") or rel == "exact.survey_silence", (where, rel)


def test_every_query_uses_its_organisations_datasource() -> None:
    for org in orgs():
        for d in dashboards.org_dashboards(org).values():
            refs = [x["datasource"] for x in _walk(d) if isinstance(x.get("datasource"), dict)]
            assert refs, (org.key, d["uid"])
            for ref in refs:
                if ref["type"] == PG_TYPE:
                    assert ref["uid"] == org.datasource_uid, (org.key, d["uid"], ref)
                else:
                    assert org.national and ref == PROM, (org.key, d["uid"], ref)
    for g in alerts.rule_groups():
        for r in g["rules"]:
            for q in r["data"]:
                if "rawSql" in q["model"]:
                    assert q["datasourceUid"] == national().datasource_uid, r["uid"]
                    assert q["model"]["datasource"] == national().datasource, r["uid"]


def test_dashboards_per_organisation() -> None:
    names = {org.key: set(dashboards.org_dashboards(org)) for org in orgs()}
    assert names[public().key] == {"overview", "region", "structure"}
    assert names[national().key] == {"overview", "region", "structure", "operations"}
    for code in regions():
        assert names[regional(code).key] == {"region", "structure"}


def test_region_organisations_cannot_select_another_region() -> None:
    for code, reg in regions().items():
        org = regional(code)
        own_munis = {m for m, x in municipalities().items() if x.region_code == code}
        for d in dashboards.org_dashboards(org).values():
            text = json.dumps(d)
            assert not re.search(r"\$\{?region\b", text), (code, d["uid"])
            assert "region" not in {v["name"] for v in d["templating"]["list"]}
            assert reg.name in d["title"], d["title"]
        for where, sql in _org_sql(org):
            # Every region code the SQL names is its own ('SE' aside), every municipality too.
            assert set(re.findall(r"'(\d{2})'", sql)) <= {code}, (code, where)
            assert set(re.findall(r"'(\d{4})'", sql)) <= own_munis, (code, where)
            if "scope_code = " in sql and "'$municipality'" not in sql:
                assert f"'{code}'" in sql or "r.region_code" in sql, (code, where)
        muni = next(q for w, q in _org_sql(org) if w.endswith("variable municipality"))
        assert f"region_code = '{code}'" in muni


def _without_descriptions(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_descriptions(v) for k, v in obj.items() if k != "description"}
    if isinstance(obj, list):
        return [_without_descriptions(v) for v in obj]
    return obj


def test_public_dashboards_offer_no_daily_windows_nowcast_or_alert_views() -> None:
    for name, d in dashboards.org_dashboards(public()).items():
        text = json.dumps(_without_descriptions(d))
        for word in (*DAILY, "nowcast", "alert_", "survey_silence"):
            assert word not in text, (name, word)
    exact_region = json.dumps(dashboards.org_dashboards(national())["region"])
    assert all(p in exact_region for p in DAILY) and "nowcast" in exact_region


def test_no_indicator_threshold_is_written_in_a_dashboard() -> None:
    """Traffic lights come from the database's status; the only thresholds are the map's status
    levels 0..4. A target value (0.98, 0.9, 8, 0.25 ...) appearing in a panel would be a bug."""
    targets = {i.target.value for i in default_catalogue().indicators.values() if i.target}
    for org in orgs():
        for d in dashboards.org_dashboards(org).values():
            for p in d["panels"]:
                text = json.dumps(p.get("fieldConfig", {}))
                for steps in re.findall(r'"steps": (\[.*?\])', text):
                    assert {s["value"] for s in json.loads(steps)} <= {None, 1, 2, 3, 4}, p["title"]
                for sql in [t.get("rawSql", "") for t in p.get("targets", [])]:
                    numbers = {float(x) for x in re.findall(r"(?<![\w.'])\d+\.\d+", sql)}
                    assert not numbers & targets, (p["title"], numbers & targets)


def test_catalogue_ids_used_exist() -> None:
    cat = default_catalogue()
    ids = set(cat.indicators)
    key = dashboards.key_indicators(cat)
    assert key[0] == "registry_coverage" and len(key) == 8  # comparisons need coverage
    assert dashboards.spec_care(cat) == ("spec_need", "spec_received", "spec_unmet")
    assert len(dashboards.per_100k(cat)) == len(dashboards.availability(cat)) == 4
    used = key + dashboards.spec_care(cat) + dashboards.per_100k(cat)
    assert set(used) | set(dashboards.availability(cat)) <= ids
    # The period dropdown offers the catalogue's period types, rolling 12 months first.
    assert dashboards.PERIOD_TYPES[0] == "rolling_12m"
    assert sorted(dashboards.PERIOD_TYPES) == sorted(PERIOD_TYPES)


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
        for d in dashboards.org_dashboards(national()).values()
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
    for org in orgs():
        uids = set()
        for d in dashboards.org_dashboards(org).values():
            uids.add(d["uid"])
            ids = [p["id"] for p in d["panels"]]
            assert len(ids) == len(set(ids))
            for p in d["panels"]:
                g = p["gridPos"]
                assert g["x"] + g["w"] <= 24
        assert len(uids) == len(org.dashboards())


# ---- alert rules ----------------------------------------------------------------------------


def _templates(rule: dict[str, Any]) -> list[str]:
    return [*rule["annotations"].values(), *rule["labels"].values(), rule["title"]]


def _reduced_columns(rule: dict[str, Any]) -> dict[str, str]:
    """Reduced value ref -> the SQL column expression behind it (SQL rules)."""
    sql = {q["refId"]: q["model"]["rawSql"] for q in rule["data"] if "rawSql" in q.get("model", {})}
    out = {}
    for q in rule["data"]:
        m = q["model"]
        if m.get("type") == "reduce" and m["expression"] in sql:
            column = re.search(r",\s*\((.*)\)::double precision AS \w+ FROM", sql[m["expression"]])
            assert column, sql[m["expression"]]
            out[q["refId"]] = column.group(1)
    return out


def test_alert_texts_and_values_carry_no_count() -> None:
    """No template prints a count that could be below the suppression threshold, and no query a
    notification lists the values of selects one: only shares and levels (null when the cell is
    suppressed), targets and days."""
    sql_rules = 0
    for g in alerts.rule_groups():
        for r in g["rules"]:
            columns = _reduced_columns(r)
            refs = {
                ref for t in _templates(r) for ref in re.findall(r"\$values\.(\w+)", t)
            }  # fmt: skip
            defined = {q["refId"] for q in r["data"]}
            assert refs <= defined, (r["uid"], refs - defined)
            for t in _templates(r):
                assert not re.search(r"\$values\.N\b|\bn = ", t), (r["uid"], t)
            if not columns:
                continue  # Prometheus pipeline rules: counts of records in the pipeline
            sql_rules += 1
            for ref, column in columns.items():
                counted = COUNTS & set(re.findall(r"\b\w+\b", column))
                assert not counted, (r["uid"], ref, column)
            for q in r["data"]:
                if "rawSql" in q["model"]:
                    selected = re.search(r"AS \w+ FROM", q["model"]["rawSql"])
                    assert selected, q["model"]["rawSql"]
            # A share printed from the below-target view is null when the cell is suppressed.
            if "alert_below_target" in json.dumps(r["data"]):
                assert columns["V"] == "CASE WHEN suppressed THEN NULL ELSE value END", r["uid"]
    assert sql_rules == 6


def test_a_count_in_an_alert_query_is_refused() -> None:
    rule = alerts.SqlRule("x", "x", "exact.alert_below_target", "n", "target", "", "", "1h")
    with pytest.raises(ValueError, match="count"):
        alerts.sql_rule(rule, alerts.DEFAULT_BASE_URL)


def test_alert_rules_labels_annotations_and_routing() -> None:
    groups = alerts.rule_groups()
    rules = [r for g in groups for r in g["rules"]]
    assert len({r["uid"] for r in rules}) == len(rules)
    for r in rules:
        assert {"summary", "value"} <= set(r["annotations"])
        assert "n" not in r["annotations"]
        assert r["labels"]["team"] in ("quality", "registry", "ops")
        assert r["condition"] in {q["refId"] for q in r["data"]}
        if r["labels"]["team"] != "ops":
            # region, indicator and severity come from the query's label columns
            assert "$labels.region" in r["annotations"]["summary"]
            assert {"target", "drilldown"} <= set(r["annotations"])
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


# ---- provisioning files ---------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    return loaded


def test_provisioning_files_match_the_api_objects() -> None:
    folder = REPO_ROOT / "grafana" / "provisioning"
    alerting = {p.stem: yaml.safe_load(p.read_text()) for p in (folder / "alerting").glob("*")}
    rules = alerting["rules"]
    assert [g["name"] for g in rules["groups"]] == [g["title"] for g in alerts.rule_groups()]
    assert {g["folder"] for g in rules["groups"]} == {alerts.FOLDER_TITLE}
    org_ids = {g["orgId"] for g in rules["groups"]}
    org_ids |= {c["orgId"] for c in alerting["contact_points"]["contactPoints"]}
    org_ids |= {p["orgId"] for p in alerting["policies"]["policies"]}
    org_ids |= {m["orgId"] for m in alerting["mute_timings"]["muteTimes"]}
    assert org_ids == {national().org_id}  # alerting lives in the national organisation

    providers = yaml.safe_load((folder / "dashboards" / "palliwatch.yaml").read_text())
    by_org = {p["orgId"]: p for p in providers["providers"]}
    assert set(by_org) == {o.org_id for o in orgs()}
    for org in orgs():
        p = by_org[org.org_id]
        assert (p["folder"], p["folderUid"]) == (alerts.FOLDER_TITLE, alerts.FOLDER_UID)
        assert p["options"]["path"] == f"/var/lib/grafana/dashboards/{org.key}"
        shipped = {f.stem for f in (REPO_ROOT / "grafana" / "dashboards" / org.key).glob("*")}
        assert shipped == set(org.dashboards())

    ds = yaml.safe_load((folder / "datasources" / "palliwatch.yaml").read_text())["datasources"]
    for org in orgs():
        mine = [d for d in ds if d["orgId"] == org.org_id]
        pg = [d for d in mine if d["type"] == PG_TYPE]
        assert len(pg) == 1, org.key  # exactly one PostgreSQL datasource per organisation
        assert (pg[0]["uid"], pg[0]["user"]) == (org.datasource_uid, org.role)
        # No literal password or TLS mode: the password from its Docker secret file, the TLS
        # mode from the environment.
        secret = f"/run/secrets/{build.password_secret(org)}"
        assert pg[0]["secureJsonData"] == {"password": f"$__file{{{secret}}}"}
        assert pg[0]["jsonData"]["sslmode"] == "${PALLIWATCH_GRAFANA_DB_SSLMODE}"
        prom = [d for d in mine if d["type"] == "prometheus"]
        assert [d["uid"] for d in prom] == ([PROM["uid"]] if org.national else [])
    assert len(ds) == len(orgs()) + 1


def test_compose_runs_grafana_with_the_organisations_and_their_environment() -> None:
    services = _compose()["services"]
    grafana, bootstrap = services["grafana"], services["grafana-orgs"]
    volumes = grafana["volumes"]
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert any(v.startswith("../grafana/dashboards:") for v in volumes)
    # The organisations exist before Grafana provisions into them, in the same data volume.
    assert grafana["depends_on"]["grafana-orgs"] == {"condition": "service_completed_successfully"}
    assert "grafana-data:/var/lib/grafana" in volumes
    assert "grafana-data:/var/lib/grafana" in bootstrap["volumes"]
    assert "../grafana/bootstrap:/palliwatch:ro" in bootstrap["volumes"]
    # create_orgs.sh, started by the wrapper that gives it the admin password from its secret.
    assert bootstrap["entrypoint"] == ["bash", "/palliwatch-deploy/grafana-orgs.sh"]
    assert "./grafana-orgs.sh:/palliwatch-deploy/grafana-orgs.sh:ro" in bootstrap["volumes"]
    wrapper = (REPO_ROOT / "deploy" / "grafana-orgs.sh").read_text()
    assert 'exec bash "${PALLIWATCH_CREATE_ORGS:-/palliwatch/create_orgs.sh}"' in wrapper
    env = grafana["environment"]
    # Anonymous viewers see the public organisation only.
    assert env["GF_AUTH_ANONYMOUS_ORG_NAME"] == public().name
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_AUTO_ASSIGN_ORG_ID"] == str(public().org_id)
    # Every variable the datasource file reads is set, and every secret file it reads is one
    # of Grafana's secrets; no password is in the environment, with or without a default.
    text = (REPO_ROOT / "grafana" / "provisioning" / "datasources" / "palliwatch.yaml").read_text()
    referenced = set(re.findall(r"\$\{(\w+)\}", text))
    assert referenced <= set(env), referenced - set(env)
    files = set(re.findall(r"\$__file\{/run/secrets/(\w+)\}", text))
    assert files == {build.password_secret(org) for org in orgs()}
    assert files <= set(grafana["secrets"]), files - set(grafana["secrets"])
    for org in orgs():
        assert org.password_env not in env and local_password(org.role) not in json.dumps(env)
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env  # Grafana's run.sh refuses both at once
    assert env["PALLIWATCH_GRAFANA_DB_SSLMODE"] == "${PALLIWATCH_GRAFANA_DB_SSLMODE:-disable}"


def test_provisioned_passwords_from_files_or_the_environment() -> None:
    """The committed file reads Docker secrets; the env form stays available; neither ever
    holds a password."""
    org = regional("01")
    assert build.password_ref(org) == "$__file{/run/secrets/grafana_db_password_region_01}"
    assert build.password_ref(org, "env") == "${PALLIWATCH_GRAFANA_DB_PASSWORD_REGION_01}"
    by_env = {d["uid"]: d for d in build.provisioned_datasources("env")}
    assert by_env[org.datasource_uid]["secureJsonData"] == {
        "password": build.password_ref(org, "env")
    }
    with pytest.raises(ValueError, match="use one of file, env"):
        build.password_ref(org, "vault")


# ---- the models load through the Grafana foundation SDK -------------------------------------


# Fields of ours the SDK's schema does not know (none since the dashboards are built with it).
SDK_UNKNOWN: set[str] = set()


def _lost_or_changed(ours: Any, back: Any, path: str = "") -> list[str]:
    """Paths of `ours` that the SDK's round trip dropped or changed (its defaults may add)."""
    if isinstance(ours, dict) and isinstance(back, dict):
        out = []
        for k, v in ours.items():
            if k not in back:
                if k not in SDK_UNKNOWN:
                    out.append(f"{path}.{k} lost")
            else:
                out += _lost_or_changed(v, back[k], f"{path}.{k}")
        return out
    if isinstance(ours, list) and isinstance(back, list) and len(ours) == len(back):
        return [x for i, (a, b) in enumerate(zip(ours, back, strict=True))
                for x in _lost_or_changed(a, b, f"{path}[{i}]")]  # fmt: skip
    return [] if ours == back else [f"{path}: {ours!r} -> {back!r}"]


def test_models_load_through_the_grafana_foundation_sdk() -> None:
    """Every committed dashboard and every alert rule parses into the foundation SDK's typed
    models (Grafana 11.1's schema: field names and types as Grafana defines them) and comes back
    with every field it has, unchanged: a misspelt or mistyped field would be dropped or
    coerced."""
    # A pinned test dependency (pyproject.toml): imported, never skipped.
    from grafana_foundation_sdk.cog.encoder import JSONEncoder as encoder
    from grafana_foundation_sdk.models import alerting as sdk_alerting
    from grafana_foundation_sdk.models import dashboard as sdk_dashboard
    from grafana_foundation_sdk.models import prometheus as sdk_prometheus

    from grafana.panels import SqlQuery

    def round_trip(model: Any) -> Any:
        return json.loads(json.dumps(model, cls=encoder))

    for org in orgs():
        for name in org.dashboards():
            # The committed file (what Grafana provisions), loaded into the SDK's models.
            d = json.loads(build.dashboard_path(org, name).read_text(encoding="utf-8"))
            loaded = sdk_dashboard.Dashboard.from_json(d)
            assert _lost_or_changed(d, round_trip(loaded)) == [], (org.key, d["uid"])
            queries = [t for p in loaded.panels or [] if isinstance(p, sdk_dashboard.Panel)
                       for t in p.targets or []]  # fmt: skip
            assert queries, (org.key, name)
            # SQL comes back as palliwatch's model; PromQL parses into the SDK's own.
            for q in queries:
                if isinstance(q, SqlQuery):
                    continue
                prom = q.to_json()  # type: ignore[attr-defined]
                back = round_trip(sdk_prometheus.Dataquery.from_json(prom))
                assert _lost_or_changed(prom, back) == [], (org.key, name, prom)
    for g in alerts.rule_groups():
        for r in g["rules"]:
            back = round_trip(sdk_alerting.Rule.from_json(r))
            assert _lost_or_changed(json.loads(json.dumps(r)), back) == [], r["uid"]
    for cp in alerts.contact_points():
        assert _lost_or_changed(cp, round_trip(sdk_alerting.ContactPoint.from_json(cp))) == []
    policy = alerts.notification_policy()
    back = round_trip(sdk_alerting.NotificationPolicy.from_json(policy))
    assert _lost_or_changed(policy, back) == []
    # Not the mute timing: the SDK models its time intervals in Alertmanager's parsed form
    # ({"begin": .., "end": ..}), while the provisioning API and files take the configuration
    # form palliwatch writes (start_time/end_time, "monday:friday").


# ---- misc -----------------------------------------------------------------------------------


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
