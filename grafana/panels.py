"""Small typed builders for Grafana's dashboard JSON model (schema version 39, Grafana 11).

Each function returns the plain dict Grafana stores, so the generated files are what Grafana
would export. Only the options palliwatch uses are exposed; everything else stays at Grafana's
defaults, which keeps the committed JSON short and reviewable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

PG_TYPE = "grafana-postgresql-datasource"
# The one Prometheus datasource (the national organisation's). PostgreSQL datasources are one per
# organisation (grafana.orgs.Org.datasource), so every SQL builder takes its datasource.
PROM = {"type": "prometheus", "uid": "palliwatch-prom"}

# The traffic light is the *status* the database computes from the target in force
# (published.indicator_status): the colours below map status words, never indicator values, so
# no threshold of any indicator is written here.
STATUS_COLOURS = {
    "meets": ("green", "meets target"),
    "warn": ("orange", "warning level"),
    "below": ("red", "below target"),
    "suppressed": ("text", "suppressed (n < 5)"),
    "no_target": ("blue", "no target"),
    "no_data": ("text", "no data"),
}


def status_mappings() -> list[JSON]:
    return [
        {
            "type": "value",
            "options": {
                key: {"color": colour, "text": text, "index": i}
                for i, (key, (colour, text)) in enumerate(STATUS_COLOURS.items())
            },
        }
    ]


def bool_mappings(true_text: str, false_text: str) -> list[JSON]:
    return [
        {
            "type": "value",
            "options": {
                "true": {"color": "green", "text": true_text, "index": 0},
                "false": {"color": "red", "text": false_text, "index": 1},
            },
        }
    ]


def sql(raw: str, ds: JSON, fmt: str = "table", ref: str = "A") -> JSON:
    """A raw SQL target on an organisation's PostgreSQL datasource `ds`."""
    return {
        "refId": ref,
        "datasource": ds,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": " ".join(raw.split()),
    }


def promql(expr: str, legend: str = "", ref: str = "A") -> JSON:
    return {
        "refId": ref,
        "datasource": PROM,
        "editorMode": "code",
        "expr": " ".join(expr.split()),
        "legendFormat": legend or "__auto",
        "range": True,
    }


def override(matcher: JSON, **props: Any) -> JSON:
    return {"matcher": matcher, "properties": [{"id": k, "value": v} for k, v in props.items()]}


def by_name(name: str, **props: Any) -> JSON:
    return override({"id": "byName", "options": name}, **props)


def by_regex(pattern: str, **props: Any) -> JSON:
    return override({"id": "byRegexp", "options": pattern}, **props)


def status_cells(pattern: str = "/status$/") -> JSON:
    """Columns holding a status word become coloured traffic-light cells."""
    return by_regex(
        pattern,
        **{
            "mappings": status_mappings(),
            "custom.cellOptions": {"type": "color-background", "mode": "basic"},
        },
    )


@dataclass
class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping to a new row."""

    x: int = 0
    y: int = 0
    row_h: int = 0
    next_id: int = 1
    panels: list[JSON] = field(default_factory=list)

    def add(self, panel: JSON, w: int, h: int) -> JSON:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)
        return panel

    def row(self, title: str) -> None:
        self.x, self.y = 0, self.y + self.row_h
        self.row_h = 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0


def panel(
    kind: str,
    title: str,
    targets: list[JSON],
    *,
    description: str = "",
    unit: str | None = None,
    decimals: int | None = None,
    overrides: list[JSON] | None = None,
    options: JSON | None = None,
    custom: JSON | None = None,
    mappings: list[JSON] | None = None,
    transformations: list[JSON] | None = None,
    min_value: float | None = None,
) -> JSON:
    defaults: JSON = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom:
        defaults["custom"] = custom
    if mappings:
        defaults["mappings"] = mappings
    if min_value is not None:
        defaults["min"] = min_value
    p: JSON = {
        "type": kind,
        "title": title,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if description:
        p["description"] = description
    if transformations:
        p["transformations"] = transformations
    return p


def table(title: str, target: JSON, **kw: Any) -> JSON:
    kw.setdefault("options", {"showHeader": True, "cellHeight": "sm"})
    return panel("table", title, [target], **kw)


def timeseries(title: str, targets: list[JSON], **kw: Any) -> JSON:
    kw.setdefault("options", {"legend": {"displayMode": "list", "placement": "bottom"}})
    kw.setdefault("custom", {"spanNulls": False, "showPoints": "auto"})
    return panel("timeseries", title, targets, **kw)


def interval_band(low: str, high: str) -> list[JSON]:
    """Draw the 95 % interval as a shaded band between two series."""
    return [
        by_name(high, **{"custom.fillBelowTo": low, "custom.lineWidth": 0, "color": grey()}),
        by_name(
            low, **{"custom.lineWidth": 0, "custom.hideFrom": hidden_legend(), "color": grey()}
        ),
    ]


def target_line(name: str) -> JSON:
    return by_name(
        name,
        **{
            "custom.lineStyle": {"fill": "dash", "dash": [10, 10]},
            "color": {"mode": "fixed", "fixedColor": "red"},
        },
    )


def grey() -> JSON:
    return {"mode": "fixed", "fixedColor": "#8e8e8e33"}


def hidden_legend() -> JSON:
    return {"legend": True, "tooltip": False, "viz": False}


def query_variable(
    name: str, label: str, raw: str, ds: JSON, *, current: str | None = None
) -> JSON:
    v: JSON = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": ds,
        "query": " ".join(raw.split()),
        "definition": " ".join(raw.split()),
        "refresh": 1,
        "sort": 0,
        "multi": False,
        "includeAll": False,
    }
    if current is not None:
        v["current"] = {"text": current, "value": current}
    return v


def custom_variable(name: str, label: str, values: list[str]) -> JSON:
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"text": values[0], "value": values[0]},
        "options": [{"text": v, "value": v, "selected": i == 0} for i, v in enumerate(values)],
        "multi": False,
        "includeAll": False,
    }


def dashboard(
    uid: str,
    title: str,
    layout: Layout,
    *,
    description: str,
    variables: list[JSON] | None = None,
    time_from: str = "now-2y",
    refresh: str = "",
    links: list[JSON] | None = None,
) -> JSON:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["palliwatch"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "time": {"from": time_from, "to": "now"},
        "refresh": refresh,
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "links": links or [],
        "panels": layout.panels,
    }
