"""The palliwatch dashboards: national overview, region drill-down, structure, operations.

Built with grafana-foundation-sdk's typed builders (grafana.panels holds palliwatch's pieces on
top of them). One set of builders, parameterised by the Grafana organisation (grafana.orgs.Org):
its datasource (which logs in as the audience's role), the schema its figures come from
(`published` for the public, `exact` for the registry operator and the regions) and, for a
region's organisation, the region itself, written into the SQL as a literal (no region variable:
no other region can be selected). Reference views (regions, municipalities, indicators, units,
white spots) are read from `published` by everyone (Org.rel).

Which indicators a panel shows comes from the catalogue: the overview's columns are the ones
tagged `key`; specialised care, per 100 000 and availability are kinds. The period types are
the catalogue's.

The public layer has no daily rolling windows, no nowcast and no alert views, so the public
dashboards offer none of them. Traffic lights come from the `status` column the database
computes against the target in force (indicator_latest / target_for), so no indicator threshold
is written here. A suppressed cell (n < 5) has a null value and the status 'suppressed', shown
as such.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import geomap as gg
from grafana_foundation_sdk.builders import stat as gs
from grafana_foundation_sdk.builders import statetimeline as gst
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.models import common as mc
from grafana_foundation_sdk.models import dashboard as md
from grafana_foundation_sdk.models import geomap as mg

from processors.catalogue import (
    DAILY_PERIOD_TYPES,
    MONTHLY_PERIOD_TYPES,
    ROLLING_DAYS,
    STRUCTURAL_KINDS,
    Catalogue,
    Indicator,
    default_catalogue,
)
from schemas.codes import regions

from .orgs import Org, orgs
from .panels import (
    JSON,
    Override,
    Sql,
    Target,
    bool_mappings,
    by_name,
    by_regex,
    custom_variable,
    dashboard,
    interval_band,
    legend,
    panel,
    promql,
    query_variable,
    status_cells,
    status_mappings,
    table,
    target_line,
    timeseries,
)

OVERVIEW_UID = "palliwatch-overview"
REGION_UID = "palliwatch-region"
STRUCTURE_UID = "palliwatch-structure"
OPERATIONS_UID = "palliwatch-operations"

# The period dropdown: the monthly periods longest first (rolling 12 months, the default, first),
# then the daily windows longest first.
PERIOD_TYPES = [
    *reversed(MONTHLY_PERIOD_TYPES),
    *sorted(DAILY_PERIOD_TYPES, key=ROLLING_DAYS.__getitem__, reverse=True),
]


def _ids(indicators: Iterable[Indicator]) -> tuple[str, ...]:
    return tuple(i.id for i in indicators)


def key_indicators(cat: Catalogue) -> tuple[str, ...]:
    """The overview's columns (tag `key`), coverage first: comparisons need coverage."""
    return _ids(sorted(cat.tagged("key"), key=lambda i: i.kind != "coverage"))


def spec_care(cat: Catalogue) -> tuple[str, ...]:
    """Need, received, unmet: people, from official deaths and the surveys."""
    return _ids(cat.of_kind(frozenset({"need", "received", "unmet"})))


def per_100k(cat: Catalogue) -> tuple[str, ...]:
    return _ids(cat.of_kind(frozenset({"per_100k"})))


def availability(cat: Catalogue) -> tuple[str, ...]:
    return _ids(cat.of_kind(frozenset({"availability"})))


def _pivot(ids: tuple[str, ...], columns: tuple[tuple[str, str], ...]) -> str:
    """max(<col>) FILTER (WHERE indicator_id = id) AS "<id> <suffix>" for every id x column."""
    parts = []
    for ind in ids:
        for col, suffix in columns:
            name = f"{ind} {suffix}".strip()
            parts.append(f"max(l.{col}) FILTER (WHERE l.indicator_id = '{ind}') AS \"{name}\"")
    return ", ".join(parts)


def _in(ids: Iterable[str]) -> str:
    return ", ".join(f"'{i}'" for i in ids)


# Structural indicators are evaluated per month whatever the period chosen.
STRUCTURAL = _in(sorted(STRUCTURAL_KINDS))


def _sql(org: Org, raw: str, fmt: str = "table", ref: str = "A") -> Sql:
    return Sql(raw, org.datasource, fmt, ref)


def _variable(
    org: Org, name: str, label: str, raw: str, *, current: str | None = None
) -> gd.QueryVariable:
    return query_variable(name, label, raw, org.datasource, current=current)


def _period_types(org: Org) -> list[str]:
    """The daily rolling windows exist only in the exact layer."""
    return [p for p in PERIOD_TYPES if org.exact or p not in DAILY_PERIOD_TYPES]


def _region_sql(org: Org) -> str:
    """The region as SQL: the organisation's own region, else the `region` variable."""
    return f"'{org.region}'" if org.region else "'$region'"


def _region_title(org: Org) -> str:
    return f"{org.region} {regions()[org.region].name}" if org.region else "${region}"


def _region_variable(org: Org) -> list[gd.QueryVariable]:
    if org.region:
        return []
    return [
        _variable(
            org,
            "region",
            "Region",
            "SELECT region_code AS __value, region_code || ' ' || name AS __text "
            f"FROM {org.rel('regions')} ORDER BY region_code",
            current="01",
        )
    ]


def _layer(org: Org) -> str:
    if org.exact:
        scope = f"region {_region_title(org)} only" if org.region else "every scope"
        return f"Exact figures ({scope}; suppressed below n = 5)."
    return (
        "Public layer: counts are perturbed (cell key method) and cells below n = 5 "
        "suppressed; no daily windows or nowcast."
    )


def _title(org: Org, title: str) -> str:
    return f"{title}, {_region_title(org)}" if org.region else title


def _columns(cat: Catalogue, ids: tuple[str, ...]) -> str:
    return "; ".join(f"{i} = {cat.indicators[i].title_en}" for i in ids)


# ---- 1. national overview -------------------------------------------------------------------

# The map's status levels (SQL below) and their colours: not indicator thresholds.
STATUS_LEVELS = md.ThresholdsConfig(
    mode=md.ThresholdsMode.ABSOLUTE,
    steps=[
        md.Threshold(None, "green"),
        md.Threshold(1, "orange"),
        md.Threshold(2, "red"),
        md.Threshold(3, "blue"),
        md.Threshold(4, "#8e8e8e"),
    ],
)


def _region_map(org: Org, latest: str) -> gg.Panel:
    markers = (
        gc.MapLayerOptions()
        .type("markers")
        .name("regions")
        .location(
            gc.FrameGeometrySource()
            .mode(mc.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "size": {"fixed": 10},
                "color": {"field": "status_level", "fixed": "grey"},
                "text": {"field": "code", "mode": "field"},
                "showLegend": True,
            }
        )
        .tooltip(True)
    )
    # The schema types the view's centre as an integer; Grafana takes degrees with decimals.
    view = gg.MapViewConfig().id("coords").lat(62.5).lon(16.5).zoom(4)  # type: ignore[arg-type]
    p = (
        gg.Panel()
        .view(view)
        .controls(gg.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        .basemap(gc.MapLayerOptions().type("default").name("Basemap"))  # Grafana's default
        .layers([markers])
        .tooltip(gg.TooltipOptions().mode(mg.TooltipMode.DETAILS))
    )
    return panel(
        p,
        "Regions: ${indicator} ($period_type)",
        [
            _sql(
                org,
                f"""SELECT r.region_code AS code, r.name AS region, r.seat_lat AS latitude,
                r.seat_lon AS longitude, l.value, l.n, coalesce(l.status, 'no_data') AS status,
                CASE coalesce(l.status, 'no_data') WHEN 'meets' THEN 0 WHEN 'warn' THEN 1
                     WHEN 'below' THEN 2 WHEN 'no_target' THEN 3 WHEN 'suppressed' THEN 4
                     ELSE 5 END AS status_level
                FROM {org.rel("regions")} r
                LEFT JOIN {latest} l
                  ON l.scope_type = 'region' AND l.scope_code = r.region_code
                 AND l.indicator_id = '${{indicator}}' AND l.breakdown = 'all'
                 AND l.period_type = CASE WHEN l.indicator_id LIKE '%per_100k'
                                            OR l.indicator_id LIKE '%_available'
                                          THEN 'month' ELSE '$period_type' END
                ORDER BY r.region_code""",
            )
        ],
        description=(
            "A marker at each region's seat, coloured by status (green meets, orange warn, "
            "red below, blue no target, grey suppressed or no data). Structural indicators "
            "are monthly whatever the period chosen."
        ),
        overrides=[
            by_name(
                "status_level",
                color=md.FieldColor(mode=md.FieldColorModeId.THRESHOLDS),
                thresholds=STATUS_LEVELS,
            ),
            by_name("value", unit="percentunit", decimals=1),
        ],
    )


def overview(cat: Catalogue, org: Org) -> JSON:
    if org.region:
        raise ValueError("a region's organisation has no national overview")
    latest = org.rel("indicator_latest")
    key, spec = key_indicators(cat), spec_care(cat) + ("spec_unmet_share",)
    shares = [i for i in key if cat.indicators[i].unit == "share"]
    board = dashboard(
        OVERVIEW_UID,
        "palliwatch: national overview",
        description="Every region against its targets, a map and the nation's totals. "
        + _layer(org),
        variables=[
            _variable(
                org,
                "indicator",
                "Map indicator",
                f"SELECT indicator_id AS __value, title_en AS __text FROM {org.rel('indicators')} "
                "WHERE kind IN ('share', 'coverage', 'unmet_share', 'per_100k', 'availability') "
                "ORDER BY position",
                current="eol_conversation",
            ),
            custom_variable("period_type", "Period", PERIOD_TYPES[: len(MONTHLY_PERIOD_TYPES)]),
        ],
    )
    board.add(
        table(
            "Traffic lights: regions x key indicators ($period_type, latest period)",
            _sql(
                org,
                f"""SELECT r.region_code AS "code", r.name AS "region",
                {_pivot(key, (("status", "status"), ("value", ""), ("n", "n")))}
                FROM {org.rel("regions")} r
                LEFT JOIN {latest} l
                  ON l.scope_type = 'region' AND l.scope_code = r.region_code
                 AND l.breakdown = 'all' AND l.period_type = '$period_type'
                 AND l.indicator_id IN ({_in(key)})
                GROUP BY r.region_code, r.name ORDER BY r.region_code""",
            ),
            description=(
                "Colour = status against the target in force for the region at the period's "
                "end (the region's own target, else the national one; from the targets table). "
                "A suppressed cell (n < 5) shows 'suppressed (n < 5)' and no value. "
                + _layer(org)
                + " Columns: "
                + _columns(cat, key)
            ),
            overrides=[
                status_cells(),
                by_regex("/^(" + "|".join(shares) + ")$/", unit="percentunit", decimals=1),
                by_regex("/ n$/", unit="none", decimals=0),
            ],
        ),
        24,
        12,
    )
    board.add(_region_map(org, latest), 12, 14)
    board.add(
        panel(
            gs.Panel()
            .reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .color_mode(mc.BigValueColorMode.NONE)
            .graph_mode(mc.BigValueGraphMode.NONE)
            .text_mode(mc.BigValueTextMode.VALUE_AND_NAME),
            "Nation: specialised palliative care ($period_type, latest period)",
            [
                _sql(
                    org,
                    f"""SELECT {_pivot(spec, (("value", ""),))}
                    FROM {latest} l
                    WHERE l.scope_type = 'nation' AND l.scope_code = 'SE'
                      AND l.breakdown = 'all' AND l.period_type = '$period_type'
                      AND l.indicator_id IN ({_in(spec)})""",
                )
            ],
            description="Need = 25 % of official deaths; received = deaths with specialised "
            "palliative care or consult support; unmet = need - received (can be negative).",
            unit="none",
            decimals=0,
            overrides=[by_name("spec_unmet_share", unit="percentunit", decimals=1)],
        ),
        12,
        5,
    )
    board.add(
        table(
            "Nation (SE): every indicator",
            _sql(
                org,
                f"""SELECT i.title_en AS indicator, l.period_start, l.period_end, l.value,
                l.ci_low, l.ci_high, l.n, l.target_comparator AS comparator, l.target,
                l.status, l.period_complete AS complete
                FROM {org.rel("indicators")} i
                JOIN {latest} l
                  ON l.indicator_id = i.indicator_id AND l.scope_type = 'nation'
                 AND l.scope_code = 'SE' AND l.breakdown = 'all'
                 AND l.period_type = CASE WHEN i.kind IN ({STRUCTURAL})
                                          THEN 'month' ELSE '$period_type' END
                ORDER BY i.position""",
            ),
            overrides=[status_cells(), _three_decimals("value|ci_low|ci_high|target")],
        ),
        12,
        9,
    )
    return board.json()


def _three_decimals(columns: str) -> Override:
    return by_regex(f"/^({columns})$/", decimals=3)


# ---- 2. region drill-down -------------------------------------------------------------------


def _series_filter(scope: str, code: str, breakdown: str = "'$breakdown'") -> str:
    return (
        f"scope_type = '{scope}' AND scope_code = {code} AND indicator_id = '$indicator' "
        f"AND period_type = '$period_type' AND breakdown = {breakdown} "
        "AND $__timeFilter(period_end)"
    )


def _band_series(org: Org, title: str, where: str, description: str = "") -> gts.Panel:
    """An indicator over time with its 95 % interval as a band and its target as a line."""
    return timeseries(
        title,
        [
            _sql(
                org,
                f"""SELECT period_end::timestamp AS time, value,
                ci_low AS "95 % low", ci_high AS "95 % high", target
                FROM {org.rel("indicator_series")} WHERE {where} ORDER BY 1""",
                fmt="time_series",
            )
        ],
        description=description,
        unit="percentunit",
        overrides=[*interval_band("95 % low", "95 % high"), target_line("target")],
    )


def region(cat: Catalogue, org: Org) -> JSON:
    reg, reg_title = _region_sql(org), _region_title(org)
    series, latest = org.rel("indicator_series"), org.rel("indicator_latest")
    board = dashboard(
        REGION_UID,
        _title(org, "palliwatch: region drill-down"),
        description="One region over time: interval bands and targets, breakdowns, "
        "municipalities, need vs received, coverage with completeness"
        + (" and nowcast. " if org.exact else ". ")
        + _layer(org),
        variables=[
            *_region_variable(org),
            _variable(
                org,
                "municipality",
                "Municipality",
                "SELECT municipality_code AS __value, municipality_code || ' ' || name AS __text "
                f"FROM {org.rel('municipalities')} WHERE region_code = {reg} "
                "ORDER BY municipality_code",
            ),
            _variable(
                org,
                "indicator",
                "Indicator",
                f"SELECT indicator_id AS __value, title_en AS __text FROM {org.rel('indicators')} "
                "WHERE kind IN ('share', 'coverage', 'unmet_share') ORDER BY position",
                current="eol_conversation",
            ),
            custom_variable("period_type", "Period", _period_types(org)),
            _variable(
                org,
                "breakdown",
                "Breakdown",
                "SELECT 'all' AS __value UNION SELECT DISTINCT breakdown "
                f"FROM {org.rel('breakdowns')} "
                f"WHERE scope_type = 'region' AND scope_code = {reg} "
                "AND indicator_id = '$indicator' ORDER BY 1",
                current="all",
            ),
        ],
    )
    board.add(
        _band_series(
            org,
            f"${{indicator}} in region {reg_title} (${{breakdown}}, ${{period_type}}): value, "
            "95 % interval, target",
            _series_filter("region", reg),
            "A gap is a suppressed period (n < 5): see the status timeline below. " + _layer(org),
        ),
        16 if org.exact else 24,
        10,
    )
    if org.exact:  # the alert views are not in the public layer
        board.add(
            table(
                f"Alert checks for region {reg_title}",
                _sql(
                    org,
                    f"""SELECT indicator, period_end, value, ci_low, ci_high, n, min_n,
                    comparator, target, severity, breach
                    FROM {org.rel("alert_below_target")}
                    WHERE region = {reg} ORDER BY breach DESC, indicator""",
                ),
                description="What the below-target alert rules see: breach = 1 when the whole "
                "95 % interval is on the wrong side of the target and n >= min_n.",
                overrides=[_three_decimals("value|ci_low|ci_high|target")],
            ),
            8,
            10,
        )
    board.add(
        panel(
            gst.Panel()
            .legend(legend())
            .mappings(status_mappings())
            .show_value(mc.VisibilityMode.NEVER)
            .merge_values(True),
            "Status per period (suppressed cells marked)",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time, status
                    FROM {series}
                    WHERE {_series_filter("region", reg)} ORDER BY 1""",
                )
            ],
        ),
        24,
        4,
    )
    board.row("Breakdowns (latest period)")
    for dim in cat.breakdowns:
        board.add(
            table(
                f"By {dim.replace('_', ' ')}",
                _sql(
                    org,
                    f"""SELECT split_part(breakdown, ':', 2) AS "{dim}", period_end, value,
                    ci_low, ci_high, n, status FROM {latest}
                    WHERE scope_type = 'region' AND scope_code = {reg}
                      AND indicator_id = '$indicator' AND period_type = '$period_type'
                      AND breakdown LIKE '{dim}:%' ORDER BY breakdown""",
                ),
                overrides=[status_cells(), _three_decimals("value|ci_low|ci_high")],
            ),
            8,
            8,
        )
    board.row("Municipalities")
    board.add(
        table(
            f"Municipalities of region {reg_title}: ${{indicator}} (${{period_type}}, latest "
            "period)",
            _sql(
                org,
                f"""SELECT m.municipality_code AS code, m.name AS municipality, l.period_end,
                l.value, l.ci_low, l.ci_high, l.n, coalesce(l.status, 'no_data') AS status
                FROM {org.rel("municipalities")} m
                LEFT JOIN {org.rel("municipality_latest")} l
                  ON l.scope_code = m.municipality_code AND l.indicator_id = '$indicator'
                 AND l.period_type = '$period_type' AND l.breakdown = 'all'
                WHERE m.region_code = {reg} ORDER BY m.municipality_code""",
            ),
            overrides=[status_cells(), _three_decimals("value|ci_low|ci_high")],
        ),
        12,
        10,
    )
    board.add(
        _band_series(
            org,
            "${indicator} in municipality ${municipality}",
            _series_filter("municipality", "'$municipality'", "'all'"),
        ),
        12,
        10,
    )
    board.row("Specialised palliative care and coverage")
    need, received, unmet = spec_care(cat)
    board.add(
        timeseries(
            f"Need vs received vs unmet, region {reg_title} (${{period_type}})",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time,
                    max(value) FILTER (WHERE indicator_id = '{need}') AS need,
                    max(value) FILTER (WHERE indicator_id = '{received}') AS received,
                    max(value) FILTER (WHERE indicator_id = '{unmet}') AS unmet
                    FROM {series}
                    WHERE scope_type = 'region' AND scope_code = {reg}
                      AND period_type = '$period_type' AND breakdown = 'all'
                      AND indicator_id IN ({_in(spec_care(cat))}) AND $__timeFilter(period_end)
                    GROUP BY period_end ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            description="People. Received and unmet are suppressed (gaps) when 0 < received < 5.",
            unit="none",
        ),
        12,
        9,
    )
    # The nowcast of final coverage is an exact-layer figure (null in the public layer).
    nowcast = ', nowcast AS "nowcast (expected final)"' if org.exact else ""
    board.add(
        timeseries(
            f"Registry coverage, region {reg_title} (${{period_type}}): complete, so far"
            + (", nowcast" if org.exact else ""),
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time,
                    CASE WHEN period_complete THEN value END AS "coverage (complete period)",
                    CASE WHEN NOT period_complete THEN value END AS "coverage so far"{nowcast},
                    target
                    FROM {series}
                    WHERE scope_type = 'region' AND scope_code = {reg}
                      AND indicator_id = 'registry_coverage' AND period_type = '$period_type'
                      AND breakdown = 'all' AND $__timeFilter(period_end) ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            description="A period is complete 183 days after its end (registration window)."
            + (
                " Until then the nowcast scales registrations so far by the region's learned "
                "registration delay."
                if org.exact
                else ""
            ),
            unit="percentunit",
            overrides=[target_line("target")]
            + (
                [
                    by_name(
                        "nowcast (expected final)",
                        **{"custom.lineStyle": mc.LineStyle(fill="dot", dash=[2, 6])},
                    )
                ]
                if org.exact
                else []
            ),
        ),
        12,
        9,
    )
    nowcast_column = (
        "max(nowcast) FILTER (WHERE indicator_id = 'registry_coverage') AS nowcast,"
        if org.exact
        else ""
    )
    board.add(
        table(
            f"Coverage and unmet share by period, region {reg_title} (${{period_type}})",
            _sql(
                org,
                f"""SELECT period_start, period_end,
                max(value) FILTER (WHERE indicator_id = 'registry_coverage') AS coverage,
                {nowcast_column}
                max(n) FILTER (WHERE indicator_id = 'registry_coverage') AS official_deaths,
                max(value) FILTER (WHERE indicator_id = 'spec_unmet_share') AS unmet_share,
                max(status) FILTER (WHERE indicator_id = 'spec_unmet_share') AS
                    "unmet share status",
                bool_and(period_complete) AS complete
                FROM {series}
                WHERE scope_type = 'region' AND scope_code = {reg}
                  AND period_type = '$period_type' AND breakdown = 'all'
                  AND indicator_id IN ('registry_coverage', 'spec_unmet_share')
                  AND $__timeFilter(period_end)
                GROUP BY period_start, period_end ORDER BY period_end DESC""",
            ),
            overrides=[
                status_cells(),
                by_regex(
                    "/^(coverage|nowcast|unmet_share)$/"
                    if org.exact
                    else "/^(coverage|unmet_share)$/",
                    unit="percentunit",
                    decimals=1,
                ),
            ],
        ),
        24,
        8,
    )
    return board.json()


# ---- 3. structure and white spots -----------------------------------------------------------


def structure(cat: Catalogue, org: Org) -> JSON:
    reg, reg_title = _region_sql(org), _region_title(org)
    beds_staff, services = per_100k(cat), availability(cat)
    # A region's organisation shows its own region only (the tables per region included).
    own = f"WHERE r.region_code = {reg}" if org.region else ""
    own_w = f"WHERE w.region_code = {reg}" if org.region else ""
    board = dashboard(
        STRUCTURE_UID,
        _title(org, "palliwatch: structure and white spots"),
        description="Services available to residents of every municipality, and beds and "
        "specialists per 100 000 against EAPC levels. " + _layer(org),
        variables=[*_region_variable(org)],
    )
    board.add(
        table(
            "Structure per region (latest month)"
            if not org.region
            else f"Structure in region {reg_title} (latest month)",
            _sql(
                org,
                f"""SELECT r.region_code AS code, r.name AS region,
                {_pivot(beds_staff, (("value", ""), ("status", "status")))},
                {_pivot(services, (("value", ""),))}
                FROM {org.rel("regions")} r
                LEFT JOIN {org.rel("indicator_latest")} l
                  ON l.scope_type = 'region' AND l.scope_code = r.region_code
                 AND l.period_type = 'month' AND l.breakdown = 'all'
                 AND l.indicator_id IN ({_in(beds_staff + services)})
                {own}
                GROUP BY r.region_code, r.name ORDER BY r.region_code""",
            ),
            description="Beds and specialist FTE per 100 000 residents, coloured against the "
            "EAPC levels in the targets table; availability = share of the region's "
            "municipalities whose residents of any diagnosis and age are covered. "
            + _columns(cat, beds_staff + services),
            overrides=[
                status_cells(),
                by_regex("/per_100k$/", decimals=1),
                by_regex("/_available$/", unit="percentunit", decimals=0),
            ],
        ),
        24,
        12 if not org.region else 5,
    )
    board.add(
        table(
            "White spots per region (municipalities without the service)"
            if not org.region
            else f"White spots in region {reg_title} (municipalities without the service)",
            _sql(
                org,
                f"""SELECT w.region_code AS code, r.name AS region, count(*) AS municipalities,
                count(*) FILTER (WHERE NOT w.on_call_24_7) AS "no 24/7 on-call line",
                count(*) FILTER (WHERE NOT w.consult_team) AS "no consult team",
                count(*) FILTER (WHERE NOT w.outpatient_clinic) AS "no outpatient clinic",
                count(*) FILTER (WHERE NOT w.specialised_home_care)
                    AS "no specialised home care"
                FROM {org.rel("white_spots")} w JOIN {org.rel("regions")} r USING (region_code)
                {own_w}
                GROUP BY w.region_code, r.name ORDER BY w.region_code""",
            ),
        ),
        12,
        12,
    )
    board.add(
        table(
            f"White spots by municipality, region {reg_title}",
            _sql(
                org,
                f"""SELECT municipality_code AS code, municipality_name AS municipality,
                on_call_24_7, consult_team, outpatient_clinic, specialised_home_care,
                (NOT on_call_24_7)::int + (NOT consult_team)::int
                  + (NOT outpatient_clinic)::int + (NOT specialised_home_care)::int
                  AS white_spots
                FROM {org.rel("white_spots")} WHERE region_code = {reg}
                ORDER BY white_spots DESC, municipality_code""",
            ),
            overrides=[
                by_regex(
                    "/^(on_call_24_7|consult_team|outpatient_clinic|specialised_home_care)$/",
                    mappings=bool_mappings("available", "white spot"),
                    **{"custom.cellOptions": mc.TableColorTextCellOptions()},
                )
            ],
        ),
        12,
        12,
    )
    board.add(
        timeseries(
            f"Per 100 000 residents in region {reg_title}, with EAPC targets",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time,
                    {_pivot(beds_staff, (("value", ""), ("target", "target")))}
                    FROM {org.rel("indicator_series")} l
                    WHERE l.scope_type = 'region' AND l.scope_code = {reg}
                      AND l.period_type = 'month' AND l.breakdown = 'all'
                      AND l.indicator_id IN ({_in(beds_staff)}) AND $__timeFilter(l.period_end)
                    GROUP BY period_end ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            overrides=[target_line(f"{i} target") for i in beds_staff],
        ),
        12,
        10,
    )
    board.add(
        table(
            f"Open units in region {reg_title}",
            _sql(
                org,
                f"""SELECT name, kind, municipality_code, since, hours, beds,
                accepts_all_diagnoses, accepts_children,
                cardinality(catchment_municipalities) AS catchment_municipalities,
                (staff_fte ->> 'specialist_physicians')::float AS specialist_physicians,
                (staff_fte ->> 'specialist_nurses')::float AS specialist_nurses
                FROM {org.rel("unit_state")} WHERE region_code = {reg} ORDER BY kind, name""",
            ),
        ),
        12,
        10,
    )
    return board.json()


# ---- 4. operations --------------------------------------------------------------------------

SILENCE_DAYS = 7
RATE = "[$__rate_interval]"


def _prom_panel(title: str, unit: str | None, *queries: tuple[str, str]) -> gts.Panel:
    """A time series of PromQL queries, (expression, legend) each, refIds A, B, C..."""
    targets: list[Target] = [
        promql(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)
    ]
    return timeseries(title, targets, unit=unit)


def _sink_quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) (rate(palliwatch_sink_batch_seconds_bucket{RATE})))"
    )


def operations(org: Org) -> JSON:
    if not org.national:
        raise ValueError("the operations dashboard belongs to the national organisation")
    board = dashboard(
        OPERATIONS_UID,
        "palliwatch: operations",
        description="Is the pipeline healthy: throughput, lag, dead letters, freshness, sink.",
        time_from="now-6h",
        refresh="30s",
    )
    for p in (
        _prom_panel(
            "Throughput: records consumed and valid per second",
            "reqps",
            (
                f"sum by (topic) (rate(palliwatch_records_consumed_total{RATE}))",
                "consumed {{topic}}",
            ),
            (f"sum by (topic) (rate(palliwatch_valid_total{RATE}))", "valid {{topic}}"),
        ),
        _prom_panel(
            "Consumer lag (records behind the log end)",
            "none",
            ("sum by (topic) (palliwatch_consumer_lag)", "{{topic}}"),
        ),
        _prom_panel(
            "Dead letters by reason",
            "none",
            (f"sum by (reason) (increase(palliwatch_dead_letters_total{RATE}))", "{{reason}}"),
            (
                f"sum(increase(palliwatch_stale_revisions_total{RATE}))",
                "stale revisions (counted, not dead letters)",
            ),
        ),
        _prom_panel(
            "Freshness: time since the newest survey per region",
            "s",
            ("time() - palliwatch_last_survey_submitted_timestamp_seconds", "{{region}}"),
        ),
        _prom_panel(
            "Sink latency per batch",
            "s",
            (_sink_quantile(0.5), "p50"),
            (_sink_quantile(0.95), "p95"),
        ),
        _prom_panel(
            "Sink errors: failed writes, stalled, seconds since last commit",
            None,
            (f"sum(rate(palliwatch_sink_retries_total{RATE}))", "failed writes/s"),
            ("max(palliwatch_sink_stalled)", "stalled (1 = retrying)"),
            (
                "time() - max(palliwatch_sink_last_success_timestamp_seconds)",
                "seconds since last commit",
            ),
        ),
        _prom_panel(
            "Rows written per table",
            "reqps",
            (f"sum by (table) (rate(palliwatch_rows_written_total{RATE}))", "{{table}}"),
        ),
        timeseries(
            "Survey arrivals per day and region (database)",
            [
                _sql(
                    org,
                    f"""SELECT day AS time, region_code AS metric, revisions AS value
                    FROM {org.rel("survey_arrivals_daily")} WHERE $__timeFilter(day)
                    ORDER BY 1, 2""",
                    fmt="time_series",
                )
            ],
            unit="none",
        ),
    ):
        board.add(p, 12, 8)
    board.add(
        table(
            f"Regions silent for {SILENCE_DAYS} days or more (database)",
            _sql(
                org,
                f"""SELECT region, region_name, last_arrival, days_silent, breach
                FROM {org.rel("survey_silence")}({SILENCE_DAYS})
                ORDER BY breach DESC, days_silent DESC NULLS FIRST, region""",
            ),
        ),
        24,
        8,
    )
    return board.json()


BUILDERS: dict[str, Callable[[Catalogue, Org], JSON]] = {
    "overview": overview,
    "region": region,
    "structure": structure,
    "operations": lambda cat, org: operations(org),
}


def org_dashboards(org: Org, cat: Catalogue | None = None) -> dict[str, JSON]:
    """File stem -> dashboard model (Grafana's JSON, from the SDK), for one organisation."""
    cat = cat or default_catalogue()
    return {name: BUILDERS[name](cat, org) for name in org.dashboards()}


def all_dashboards(cat: Catalogue | None = None) -> dict[str, dict[str, JSON]]:
    """Organisation key -> file stem -> dashboard model."""
    cat = cat or default_catalogue()
    return {org.key: org_dashboards(org, cat) for org in orgs()}
