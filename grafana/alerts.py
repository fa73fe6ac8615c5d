"""Grafana-managed alert rules, contact points, notification policies and mute timings.

All of it lives in the national organisation (grafana.orgs) and its SQL reads the exact layer
through the national datasource: perturbed public counts would make alerts flap.

One multi-dimensional rule per indicator family: its SQL returns one row per region (and
indicator), Grafana turns string columns into labels, so each region gets its own alert
instance. The judgement itself (statistically clear, complete periods, z-test, silence) lives in
the exact layer's alert views and functions (deploy/migrations), which the tests run.

Every SQL rule has three queries with the same label columns: B (breach, 0 or 1, the condition),
V (value) and T (target or the comparison value); each is reduced to its last value so
annotations can print them ($values only holds expression results, not raw queries). No rule
reduces a count (n, numerator, ...): notifications leave Grafana, and Grafana's default
notification text lists every reduced value, so a count below the suppression threshold would
travel in it. V is null for a suppressed cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from processors.catalogue import Catalogue, default_catalogue

from .dashboards import REGION_UID, SILENCE_DAYS
from .orgs import national
from .panels import JSON, PROM, SqlQuery, encode
from .panels import ref as datasource_ref

FOLDER_UID = "palliwatch"
FOLDER_TITLE = "palliwatch"
QUALITY_GROUP = "palliwatch-quality"
OPS_GROUP = "palliwatch-operations"
QUALITY_INTERVAL_S = 300
OPS_INTERVAL_S = 60
OPS_CONTACT = "palliwatch ops"
MUTE_QUALITY = "palliwatch-quality-off-hours"
DEFAULT_BASE_URL = "http://localhost:3000"
CONTACT_POINTS_FILE = Path(__file__).with_name("contact_points.yaml")

LABEL_COLUMNS = ("region", "region_name", "indicator", "severity")
# Columns that count people or records: never a query of an alert rule (see above).
COUNT_COLUMNS = frozenset(
    {"n", "numerator", "denominator", "previous_n", "revisions", "x0", "x1", "n0", "n1", "min_n"}
)


@dataclass(frozen=True)
class SqlRule:
    uid: str
    title: str
    source: str  # FROM ... [WHERE ...] of an exact-layer view or function
    value: str  # column (expression) shown as the value: null when suppressed
    target: str  # column shown as the target / comparison
    summary: str
    description: str
    pending: str
    team: str = "quality"
    indicator_column: str = "indicator"


def _sql_rules() -> list[SqlRule]:
    org = national()
    below = (
        "{{ $labels.region_name }} ({{ $labels.region }}): {{ $labels.indicator }} is clearly "
        "on the wrong side of its target: {{ humanizePercentage $values.V.Value }} against "
        "{{ humanizePercentage $values.T.Value }}; the whole 95 % interval is beyond the target."
    )
    # The value of a suppressed cell is null in the view already; said again here, since the
    # value travels in the notification.
    shown = "CASE WHEN suppressed THEN NULL ELSE value END"
    return [
        SqlRule(
            "pw-process-below-target",
            "Process indicator below target (statistically clear)",
            f"{org.rel('alert_below_target')} WHERE family = 'process'",
            shown,
            "target",
            below,
            "Rolling 12 months, latest period. Fires only when the 95 % interval lies entirely "
            "below the target and n >= the catalogue's min_n; suppressed cells never fire.",
            "1h",
        ),
        SqlRule(
            "pw-coverage-below-target",
            "Registry coverage below target (complete periods)",
            f"{org.rel('alert_below_target')} WHERE family = 'coverage'",
            shown,
            "target",
            below,
            "Latest complete rolling 12 months (183 days after its end): incomplete periods "
            "are still receiving late registrations and never fire.",
            "1h",
        ),
        SqlRule(
            "pw-specialised-care",
            "Specialised palliative care: unmet share above warn/critical, non-cancer share "
            "below target",
            f"{org.rel('alert_below_target')} WHERE family = 'specialised_care'",
            shown,
            "target",
            below,
            "Unmet share (complete periods) above its target is a warning, above the warn "
            "level critical; the non-cancer share among those with specialised support below "
            "its target is a warning. Both only when the interval is clear of the level.",
            "1h",
        ),
        SqlRule(
            "pw-structure-below-eapc",
            "Structure below EAPC level",
            org.rel("alert_structure"),
            "value",
            "target",
            "{{ $labels.region_name }} ({{ $labels.region }}): {{ $labels.indicator }} is "
            "{{ $values.V.Value }} per 100 000 residents, below the EAPC level of "
            "{{ $values.T.Value }}.",
            "Latest month; counts of beds and specialist FTE, so no interval.",
            "1h",
        ),
        SqlRule(
            "pw-home-death-change",
            "Home-death share changed significantly vs the previous 12 months",
            org.rel("alert_home_death_change"),
            "value",
            "previous_value",
            "{{ $labels.region_name }} ({{ $labels.region }}): {{ $labels.indicator }} is "
            "{{ humanizePercentage $values.V.Value }} in the latest 12 months against "
            "{{ humanizePercentage $values.T.Value }} in the 12 months before; a "
            "two-proportion z-test says the change is significant at the 1 % level.",
            "No target: a change in either direction is worth a look (a service opened, "
            "closed, or registration practice changed).",
            "1h",
        ),
        SqlRule(
            "pw-survey-silence",
            f"Region has sent no surveys for {SILENCE_DAYS} days",
            f"{org.rel('survey_silence')}({SILENCE_DAYS})",
            "days_silent",
            "days_silent",
            "{{ $labels.region_name }} ({{ $labels.region }}) has sent no death surveys for "
            "{{ $values.V.Value }} days (limit " + str(SILENCE_DAYS) + ").",
            "Arrivals by day from exact.survey_arrivals_daily. A region that never sent "
            "one counts as silent since the first survey from any region, so it fires only "
            "while other regions send.",
            "30m",
            team="registry",
            indicator_column="'survey_arrivals'::text AS indicator",
        ),
    ]


def _sql_query(ref: str, rule: SqlRule, column: str) -> JSON:
    counted = COUNT_COLUMNS & set(re.findall(r"\b\w+\b", column))
    if counted:
        raise ValueError(f"{rule.uid}: query {ref} would carry a count: {sorted(counted)}")
    labels = ", ".join(rule.indicator_column if c == "indicator" else c for c in LABEL_COLUMNS)
    raw = f"SELECT {labels}, ({column})::double precision AS {ref.lower()} FROM {rule.source}"
    ds = national().datasource
    return {
        "refId": ref,
        "queryType": "",
        "relativeTimeRange": {"from": 600, "to": 0},
        "datasourceUid": ds["uid"],
        "model": encode(SqlQuery(raw, datasource_ref(ds), "table", ref, 1000, 43200)),
    }


def _expr(ref: str, model: JSON) -> JSON:
    return {
        "refId": ref,
        "queryType": "",
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": "__expr__",
        "model": {"refId": ref, "datasource": {"type": "__expr__", "uid": "__expr__"}, **model},
    }


def _reduce(ref: str, of: str) -> JSON:
    return _expr(
        ref, {"type": "reduce", "expression": of, "reducer": "last", "settings": {"mode": ""}}
    )


def _threshold(ref: str, of: str, op: str, value: float) -> JSON:
    return _expr(
        ref,
        {
            "type": "threshold",
            "expression": of,
            "conditions": [{"evaluator": {"type": op, "params": [value]}}],
        },
    )


def _drilldown(base_url: str) -> str:
    return (
        f"{base_url}/d/{REGION_UID}/?var-region={{{{ $labels.region }}}}"
        "&var-indicator={{ $labels.indicator }}"
    )


def sql_rule(rule: SqlRule, base_url: str) -> JSON:
    data = [
        _sql_query("QB", rule, "breach"),
        _sql_query("QV", rule, rule.value),
        _sql_query("QT", rule, rule.target),
        _reduce("B", "QB"),
        _reduce("V", "QV"),
        _reduce("T", "QT"),
        _threshold("C", "B", "gt", 0),
    ]
    return _rule(
        rule.uid,
        rule.title,
        data,
        rule.pending,
        labels={"team": rule.team, "palliwatch": "true"},
        annotations={
            "summary": rule.summary,
            "description": rule.description,
            "value": "{{ $values.V.Value }}",
            "target": "{{ $values.T.Value }}",
            "drilldown": _drilldown(base_url),
            "__dashboardUid__": REGION_UID,
        },
    )


def _rule(
    uid: str,
    title: str,
    data: list[JSON],
    pending: str,
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> JSON:
    """A Grafana-managed rule firing on condition C; no data is OK (nothing to judge)."""
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": data,
        "noDataState": "OK",
        "execErrState": "Error",
        "for": pending,
        "isPaused": False,
        "labels": labels,
        "annotations": annotations,
    }


@dataclass(frozen=True)
class PromRule:
    uid: str
    title: str
    expr: str
    op: str
    threshold: float
    pending: str
    severity: str
    summary: str


DEAD_LETTERS_PER_15M = 25
CONSUMER_LAG_RECORDS = 10_000
FRESHNESS_HOURS = 48


def _prom_rules() -> list[PromRule]:
    return [
        PromRule(
            "pw-ops-sink-stalled",
            "Sink stalled: the database refuses writes",
            "max(palliwatch_sink_stalled)",
            "gt",
            0,
            "5m",
            "critical",
            "The worker has been retrying a batch for 5 minutes: PostgreSQL is down or full. "
            "Nothing is lost (offsets are not committed) but indicators are not updating.",
        ),
        PromRule(
            "pw-ops-dead-letters",
            "Dead letters rising",
            "sum by (reason) (increase(palliwatch_dead_letters_total[15m]))",
            "gt",
            DEAD_LETTERS_PER_15M,
            "15m",
            "warning",
            "{{ $values.A.Value }} records dead-lettered with reason {{ $labels.reason }} in "
            "15 minutes: `palliwatch dlq list`, fix, then `palliwatch dlq replay`.",
        ),
        PromRule(
            "pw-ops-consumer-lag",
            "Consumer lag high",
            "max by (topic) (palliwatch_consumer_lag)",
            "gt",
            CONSUMER_LAG_RECORDS,
            "10m",
            "warning",
            "The worker is {{ $values.A.Value }} records behind on {{ $labels.topic }}.",
        ),
        PromRule(
            "pw-ops-worker-down",
            "Worker not scraped",
            'max(up{job="palliwatch-worker"})',
            "lt",
            1,
            "5m",
            "critical",
            "Prometheus cannot scrape the palliwatch worker: it is down or unreachable.",
        ),
        PromRule(
            "pw-ops-freshness",
            "No survey from a region in the stream",
            "(time() - max by (region) "
            "(palliwatch_last_survey_submitted_timestamp_seconds)) / 3600",
            "gt",
            FRESHNESS_HOURS,
            "30m",
            "warning",
            "The newest survey the worker saw from region {{ $labels.region }} was submitted "
            "{{ $values.A.Value }} hours ago.",
        ),
    ]


def prom_rule(rule: PromRule) -> JSON:
    data = [
        {
            "refId": "Q",
            "queryType": "",
            "relativeTimeRange": {"from": 900, "to": 0},
            "datasourceUid": PROM["uid"],
            "model": {
                "refId": "Q",
                "datasource": PROM,
                "editorMode": "code",
                "expr": rule.expr,
                "instant": True,
                "range": False,
                "intervalMs": 1000,
                "maxDataPoints": 43200,
            },
        },
        _reduce("A", "Q"),
        _threshold("C", "A", rule.op, rule.threshold),
    ]
    return _rule(
        rule.uid,
        rule.title,
        data,
        rule.pending,
        labels={
            "team": "ops",
            "severity": rule.severity,
            "indicator": "pipeline",
            "palliwatch": "true",
        },
        annotations={"summary": rule.summary, "value": "{{ $values.A.Value }}"},
    )


def rule_groups(base_url: str = DEFAULT_BASE_URL, cat: Catalogue | None = None) -> list[JSON]:
    """Two rule groups in the palliwatch folder: quality (per region) and operations."""
    cat = cat or default_catalogue()
    rules = _sql_rules()
    covered = {"process", "coverage", "specialised_care", "structure", "place_of_death"}
    missing = {i.family for i in cat.indicators.values()} - covered
    if missing:
        raise ValueError(f"indicator families without an alert rule: {sorted(missing)}")
    return [
        {
            "title": QUALITY_GROUP,
            "folderUid": FOLDER_UID,
            "interval": QUALITY_INTERVAL_S,
            "rules": [sql_rule(r, base_url) for r in rules],
        },
        {
            "title": OPS_GROUP,
            "folderUid": FOLDER_UID,
            "interval": OPS_INTERVAL_S,
            "rules": [prom_rule(r) for r in _prom_rules()],
        },
    ]


# ---- routing --------------------------------------------------------------------------------


def load_contacts(path: Path = CONTACT_POINTS_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "ops" not in data or "regions" not in data:
        raise ValueError(f"{path}: needs 'ops' and 'regions'")
    return data


def _settings(entry: dict[str, Any]) -> dict[str, Any]:
    settings = dict(entry.get("settings") or {})
    if isinstance(settings.get("addresses"), list):  # Grafana's email integration wants a;b
        settings["addresses"] = ";".join(settings["addresses"])
    return settings


def region_contact_name(code: str) -> str:
    return f"palliwatch region {code}"


def contact_points(path: Path = CONTACT_POINTS_FILE) -> list[JSON]:
    """Contact points as the provisioning API takes them (one receiver each)."""
    data = load_contacts(path)
    out = [
        {
            "uid": "pw-contact-ops",
            "name": OPS_CONTACT,
            "type": data["ops"]["type"],
            "settings": _settings(data["ops"]),
            "disableResolveMessage": False,
        }
    ]
    for code, entry in sorted(data["regions"].items()):
        out.append(
            {
                "uid": f"pw-contact-region-{code}",
                "name": region_contact_name(str(code)),
                "type": entry["type"],
                "settings": _settings(entry),
                "disableResolveMessage": False,
            }
        )
    return out


def notification_policy(path: Path = CONTACT_POINTS_FILE) -> JSON:
    """The policy tree: ops alerts to ops; registry alerts to ops *and* on to the region;
    every region's alerts to its own contact point, muted outside office hours."""
    data = load_contacts(path)
    routes: list[JSON] = [
        {"receiver": OPS_CONTACT, "object_matchers": [["team", "=", "ops"]]},
        {"receiver": OPS_CONTACT, "object_matchers": [["team", "=", "registry"]], "continue": True},
    ]
    for code in sorted(data["regions"]):
        routes.append(
            {
                "receiver": region_contact_name(str(code)),
                "object_matchers": [["region", "=", str(code)], ["palliwatch", "=", "true"]],
                "mute_time_intervals": [MUTE_QUALITY],
            }
        )
    return {
        "receiver": OPS_CONTACT,
        "group_by": ["grafana_folder", "alertname", "region"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "12h",
        "routes": routes,
    }


def mute_timings() -> list[JSON]:
    """Regional quality alerts wait for office hours (Stockholm time): nights and weekends are
    muted. Muting delays notifications; alerts still firing afterwards are sent then."""
    return [
        {
            "name": MUTE_QUALITY,
            "time_intervals": [
                {
                    "times": [
                        {"start_time": "00:00", "end_time": "07:00"},
                        {"start_time": "18:00", "end_time": "24:00"},
                    ],
                    "weekdays": ["monday:friday"],
                    "location": "Europe/Stockholm",
                },
                {"weekdays": ["saturday", "sunday"], "location": "Europe/Stockholm"},
            ],
        }
    ]


# ---- file provisioning ----------------------------------------------------------------------


def provisioning_files(base_url: str = DEFAULT_BASE_URL) -> dict[str, JSON]:
    """grafana/provisioning/alerting/<name>.yaml contents (Grafana's file provisioning), all in
    the national organisation."""
    org_id = national().org_id
    groups = []
    for g in rule_groups(base_url):
        groups.append(
            {
                "orgId": org_id,
                "name": g["title"],
                "folder": FOLDER_TITLE,
                "interval": f"{g['interval']}s",
                "rules": g["rules"],
            }
        )
    cps = [
        {
            "orgId": org_id,
            "name": cp["name"],
            "receivers": [{k: cp[k] for k in ("uid", "type", "settings", "disableResolveMessage")}],
        }
        for cp in contact_points()
    ]
    return {
        "rules": {"apiVersion": 1, "groups": groups},
        "contact_points": {"apiVersion": 1, "contactPoints": cps},
        "policies": {"apiVersion": 1, "policies": [{"orgId": org_id, **notification_policy()}]},
        "mute_timings": {
            "apiVersion": 1,
            "muteTimes": [{"orgId": org_id, **m} for m in mute_timings()],
        },
    }
