"""palliwatch's vocabulary on top of grafana-foundation-sdk's typed builders (Grafana 11.1).

The dashboards are built with the SDK's builders (`grafana_foundation_sdk.builders.*`) and
serialised with its encoder, so every field name and type is Grafana's own. What the SDK has no
model for is defined here in its terms: the PostgreSQL datasource's raw SQL query (`SqlQuery`,
registered with the SDK's runtime so a dashboard loads back typed), and the few recurring
pieces palliwatch uses (status colours, interval bands, target lines, the panel ids).
"""

from __future__ import annotations

import json
from typing import Any, Self, TypeVar, cast

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import geomap as gg
from grafana_foundation_sdk.builders import prometheus as gp
from grafana_foundation_sdk.builders import stat as gs
from grafana_foundation_sdk.builders import statetimeline as gst
from grafana_foundation_sdk.builders import table as gt
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as mc
from grafana_foundation_sdk.models import dashboard as md
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

JSON = dict[str, Any]
Target = cogbuilder.Builder[cogvariants.Dataquery]
Override = cogbuilder.Builder[md.DashboardFieldConfigSourceOverrides]
PanelBuilder = TypeVar("PanelBuilder", gt.Panel, gts.Panel, gs.Panel, gg.Panel, gst.Panel)

PG_TYPE = "grafana-postgresql-datasource"
# The one Prometheus datasource (the national organisation's). PostgreSQL datasources are one per
# organisation (grafana.orgs.Org.datasource), so every SQL builder takes its datasource.
PROM = {"type": "prometheus", "uid": "palliwatch-prom"}
TAG = "palliwatch"

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


def ref(ds: JSON) -> md.DataSourceRef:
    """A datasource reference, as the SDK types it, from its JSON form ({"type", "uid"})."""
    return md.DataSourceRef(type_val=ds["type"], uid=ds["uid"])


def encode(model: Any) -> JSON:
    """An SDK model (or builder's result) as the plain JSON Grafana stores."""
    return cast(JSON, json.loads(json.dumps(model, cls=JSONEncoder)))


# ---- queries --------------------------------------------------------------------------------


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL query of Grafana's PostgreSQL datasource (the SDK has no model for it). An alert
    rule's query also says how finely it is evaluated (intervalMs, maxDataPoints)."""

    def __init__(
        self,
        raw_sql: str,
        datasource: md.DataSourceRef,
        fmt: str = "table",
        ref_id: str = "A",
        interval_ms: int | None = None,
        max_data_points: int | None = None,
    ) -> None:
        self.raw_sql, self.datasource, self.format, self.ref_id = raw_sql, datasource, fmt, ref_id
        self.interval_ms, self.max_data_points = interval_ms, max_data_points

    def to_json(self) -> JSON:
        payload: JSON = {
            "refId": self.ref_id,
            "datasource": self.datasource,
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }
        if self.interval_ms is not None:
            payload["intervalMs"] = self.interval_ms
        if self.max_data_points is not None:
            payload["maxDataPoints"] = self.max_data_points
        return payload

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        return cls(
            data["rawSql"],
            md.DataSourceRef.from_json(data["datasource"]),
            data.get("format", "table"),
            data.get("refId", "A"),
            data.get("intervalMs"),
            data.get("maxDataPoints"),
        )


# A dashboard loaded back through the SDK (Dashboard.from_json) gets SqlQuery targets, not the
# SDK's untyped UnknownDataquery bags.
cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(PG_TYPE, SqlQuery.from_json))


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw: str, ds: JSON, fmt: str = "table", ref_id: str = "A") -> None:
        self._internal = SqlQuery(" ".join(raw.split()), ref(ds), fmt, ref_id)

    def build(self) -> SqlQuery:
        return self._internal


def promql(expr: str, legend: str = "", ref_id: str = "A") -> gp.Dataquery:
    return (
        gp.Dataquery()
        .ref_id(ref_id)
        .datasource(ref(PROM))
        .editor_mode(QueryEditorMode.CODE)
        .expr(" ".join(expr.split()))
        .legend_format(legend or "__auto")
        .range()
    )


# ---- field overrides ------------------------------------------------------------------------


def _override(matcher: str, options: str, props: dict[str, Any]) -> Override:
    return (
        gd.DashboardFieldConfigSourceOverrides()
        .matcher(md.MatcherConfig(id_val=matcher, options=options))
        .properties([md.DynamicConfigValue(id_val=k, value=v) for k, v in props.items()])
    )


def by_name(name: str, **props: Any) -> Override:
    return _override("byName", name, props)


def by_regex(pattern: str, **props: Any) -> Override:
    return _override("byRegexp", pattern, props)


def _value_map(entries: list[tuple[str, str, str]]) -> list[md.ValueMapping]:
    """(value, colour, text) -> Grafana's value mapping."""
    return [
        md.ValueMap(
            options={
                key: md.ValueMappingResult(color=colour, text=text, index=i)
                for i, (key, colour, text) in enumerate(entries)
            }
        )
    ]


def status_mappings() -> list[md.ValueMapping]:
    return _value_map([(key, colour, text) for key, (colour, text) in STATUS_COLOURS.items()])


def bool_mappings(true_text: str, false_text: str) -> list[md.ValueMapping]:
    return _value_map([("true", "green", true_text), ("false", "red", false_text)])


def status_cells(pattern: str = "/status$/") -> Override:
    """Columns holding a status word become coloured traffic-light cells."""
    return by_regex(
        pattern,
        mappings=status_mappings(),
        **{
            "custom.cellOptions": mc.TableColoredBackgroundCellOptions(
                mode=mc.TableCellBackgroundDisplayMode.BASIC
            )
        },
    )


def fixed_colour(colour: str) -> md.FieldColor:
    return md.FieldColor(mode=md.FieldColorModeId.FIXED, fixed_color=colour)


def interval_band(low: str, high: str) -> list[Override]:
    """Draw the 95 % interval as a shaded band between two series."""
    grey = fixed_colour("#8e8e8e33")
    hidden = mc.HideSeriesConfig(legend=True, tooltip=False, viz=False)
    return [
        by_name(high, **{"custom.fillBelowTo": low, "custom.lineWidth": 0, "color": grey}),
        by_name(low, **{"custom.lineWidth": 0, "custom.hideFrom": hidden, "color": grey}),
    ]


def target_line(name: str) -> Override:
    return by_name(
        name,
        **{"custom.lineStyle": mc.LineStyle(fill="dash", dash=[10, 10])},
        color=fixed_colour("red"),
    )


# ---- panels ---------------------------------------------------------------------------------


def panel(
    p: PanelBuilder,
    title: str,
    targets: list[Target],
    *,
    description: str = "",
    unit: str | None = None,
    decimals: int | None = None,
    overrides: list[Override] | None = None,
) -> PanelBuilder:
    """The settings every panel shares; its datasource is its first query's."""
    p.title(title).targets(targets).datasource(targets[0].build().datasource)  # type: ignore[attr-defined]
    if description:
        p.description(description)
    if unit:
        p.unit(unit)
    if decimals is not None:
        p.decimals(decimals)
    return p.overrides(overrides or [])


def table(title: str, target: Target, **kw: Any) -> gt.Panel:
    return panel(gt.Panel().show_header(True).cell_height(mc.TableCellHeight.SM), title, [target],
                 **kw)  # fmt: skip


def legend() -> VizLegendOptions:
    """A list below the plot (the SDK's default hides the legend; Grafana's shows it)."""
    return (
        VizLegendOptions()
        .show_legend(True)
        .display_mode(mc.LegendDisplayMode.LIST)
        .placement(mc.LegendPlacement.BOTTOM)
    )


def timeseries(title: str, targets: list[Target], **kw: Any) -> gts.Panel:
    p = gts.Panel().legend(legend()).span_nulls(False).show_points(mc.VisibilityMode.AUTO)
    return panel(p, title, targets, **kw)


# ---- variables ------------------------------------------------------------------------------


def query_variable(
    name: str, label: str, raw: str, ds: JSON, *, current: str | None = None
) -> gd.QueryVariable:
    v = (
        gd.QueryVariable(name)
        .label(label)
        .datasource(ref(ds))
        .query(" ".join(raw.split()))
        .refresh(md.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(md.VariableSort.DISABLED)
        .multi(False)
        .include_all(False)
    )
    if current is not None:
        v.current(md.VariableOption(text=current, value=current))
    return v


def custom_variable(name: str, label: str, values: list[str]) -> gd.CustomVariable:
    return (
        gd.CustomVariable(name)
        .label(label)
        .values(",".join(values))
        .current(md.VariableOption(text=values[0], value=values[0]))
        .options(
            [md.VariableOption(text=v, value=v, selected=i == 0) for i, v in enumerate(values)]
        )  # fmt: skip
        .multi(False)
        .include_all(False)
    )


# ---- dashboards -----------------------------------------------------------------------------


class Board:
    """A dashboard being built: the SDK's builder lays panels out left to right on the 24-column
    grid, wrapping to a new row; panel ids are numbered here, in order (the SDK leaves them to
    Grafana, which renumbers them on every provisioning otherwise)."""

    def __init__(self, builder: gd.Dashboard) -> None:
        self.builder = builder
        self._next_id = 0

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add(self, p: PanelBuilder, w: int, h: int) -> None:
        self.builder.with_panel(p.id(self._id()).span(w).height(h))

    def row(self, title: str) -> None:
        self.builder.with_row(gd.Row(title).id(self._id()))

    def json(self) -> JSON:
        return encode(self.builder.build())


def dashboard(
    uid: str,
    title: str,
    *,
    description: str,
    variables: list[cogbuilder.Builder[md.VariableModel]] | None = None,
    time_from: str = "now-2y",
    refresh: str = "",
) -> Board:
    """A palliwatch dashboard: tagged, with a link menu to the others, a shared crosshair."""
    return Board(
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .timezone("browser")
        .editable()
        .tooltip(md.DashboardCursorSync.CROSSHAIR)
        .time(time_from, "now")
        .refresh(refresh)
        .variables(variables or [])
        .annotations([])
        .link(
            gd.DashboardLink("palliwatch")
            .type(md.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
        )
    )
