"""The palliwatch dashboards: national overview, region drill-down, structure, operations.

One set of builders, parameterised by the Grafana organisation (grafana.orgs.Org): its
datasource (which logs in as the audience's role), the schema its figures come from
(`published` for the public, `exact` for the registry operator and the regions) and, for a
region's organisation, the region itself, written into the SQL as a literal (no region variable:
no other region can be selected). Reference views (regions, municipalities, indicators, units,
white spots) are read from `published` by everyone (Org.rel).

The public layer has no daily rolling windows, no nowcast and no alert views, so the public
dashboards offer none of them. Traffic lights come from the `status` column the database
computes against the target in force (indicator_latest / target_for), so no indicator threshold
is written here. A suppressed cell (n < 5) has a null value and the status 'suppressed', shown
as such.
"""

from __future__ import annotations

from processors.catalogue import Catalogue, default_catalogue
from schemas.codes import regions

from .orgs import DAILY_PERIOD_TYPES, Org, orgs
from .panels import (
    JSON,
    Layout,
    bool_mappings,
    by_name,
    by_regex,
    custom_variable,
    dashboard,
    interval_band,
    panel,
    promql,
    query_variable,
    sql,
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

# The overview's columns: the indicators a quality lead looks at first.
KEY_INDICATORS = (
    "registry_coverage",
    "eol_conversation",
    "pain_assessed",
    "prn_opioid",
    "pressure_ulcer_free",
    "spec_unmet_share",
    "non_cancer_share_specialised",
    "home_death_share",
)
SPEC_CARE = ("spec_need", "spec_received", "spec_unmet")
PER_100K = (
    "palliative_beds_per_100k",
    "hospital_palliative_beds_per_100k",
    "specialist_physicians_per_100k",
    "specialist_nurses_per_100k",
)
AVAILABILITY = (
    "on_call_24_7_available",
    "consult_team_available",
    "outpatient_clinic_available",
    "specialised_home_care_available",
)
PERIOD_TYPES = [
    "rolling_12m",
    "year",
    "quarter",
    "month",
    "rolling_365d",
    "rolling_90d",
    "rolling_30d",
]

LINKS = [{"title": "palliwatch", "type": "dashboards", "tags": ["palliwatch"], "asDropdown": True}]


def _pivot(ids: tuple[str, ...], columns: tuple[tuple[str, str], ...]) -> str:
    """max(<col>) FILTER (WHERE indicator_id = id) AS "<id> <suffix>" for every id x column."""
    parts = []
    for ind in ids:
        for col, suffix in columns:
            name = f"{ind} {suffix}".strip()
            parts.append(f"max(l.{col}) FILTER (WHERE l.indicator_id = '{ind}') AS \"{name}\"")
    return ", ".join(parts)


def _in(ids: tuple[str, ...]) -> str:
    return ", ".join(f"'{i}'" for i in ids)


def _sql(org: Org, raw: str, fmt: str = "table", ref: str = "A") -> JSON:
    return sql(raw, org.datasource, fmt, ref)


def _variable(org: Org, name: str, label: str, raw: str, *, current: str | None = None) -> JSON:
    return query_variable(name, label, raw, org.datasource, current=current)


def _period_types(org: Org) -> list[str]:
    """The daily rolling windows exist only in the exact layer."""
    return [p for p in PERIOD_TYPES if org.exact or p not in DAILY_PERIOD_TYPES]


def _region_sql(org: Org) -> str:
    """The region as SQL: the organisation's own region, else the `region` variable."""
    return f"'{org.region}'" if org.region else "'$region'"


def _region_title(org: Org) -> str:
    return f"{org.region} {regions()[org.region].name}" if org.region else "${region}"


def _region_variable(org: Org) -> list[JSON]:
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


# ---- 1. national overview -------------------------------------------------------------------


def overview(cat: Catalogue, org: Org) -> JSON:
    if org.region:
        raise ValueError("a region's organisation has no national overview")
    lay = Layout()
    latest = org.rel("indicator_latest")
    indicator_var = _variable(
        org,
        "indicator",
        "Map indicator",
        f"SELECT indicator_id AS __value, title_en AS __text FROM {org.rel('indicators')} "
        "WHERE kind IN ('share', 'coverage', 'unmet_share', 'per_100k', 'availability') "
        "ORDER BY position",
        current="eol_conversation",
    )
    period_var = custom_variable("period_type", "Period", PERIOD_TYPES[:4])

    lay.add(
        table(
            "Traffic lights: regions x key indicators ($period_type, latest period)",
            _sql(
                org,
                f"""SELECT r.region_code AS "code", r.name AS "region",
                {_pivot(KEY_INDICATORS, (("status", "status"), ("value", ""), ("n", "n")))}
                FROM {org.rel("regions")} r
                LEFT JOIN {latest} l
                  ON l.scope_type = 'region' AND l.scope_code = r.region_code
                 AND l.breakdown = 'all' AND l.period_type = '$period_type'
                 AND l.indicator_id IN ({_in(KEY_INDICATORS)})
                GROUP BY r.region_code, r.name ORDER BY r.region_code""",
            ),
            description=(
                "Colour = status against the target in force for the region at the period's "
                "end (the region's own target, else the national one; from the targets table). "
                "A suppressed cell (n < 5) shows 'suppressed (n < 5)' and no value. "
                + _layer(org)
                + " Columns: "
                + "; ".join(f"{i} = {cat.indicators[i].title_en}" for i in KEY_INDICATORS)
            ),
            overrides=[
                status_cells(),
                by_regex(
                    "/^(" + "|".join(i for i in KEY_INDICATORS if i != "home_death_share") + ")$/",
                    unit="percentunit",
                    decimals=1,
                ),
                by_name("home_death_share", unit="percentunit", decimals=1),
                by_regex("/ n$/", unit="none", decimals=0),
            ],
        ),
        24,
        12,
    )
    lay.add(
        panel(
            "geomap",
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
            options={
                "view": {"id": "coords", "lat": 62.5, "lon": 16.5, "zoom": 4},
                "controls": {"showZoom": True, "mouseWheelZoom": True},
                "layers": [
                    {
                        "type": "markers",
                        "name": "regions",
                        "location": {
                            "mode": "coords",
                            "latitude": "latitude",
                            "longitude": "longitude",
                        },
                        "config": {
                            "size": {"fixed": 10},
                            "color": {"field": "status_level", "fixed": "grey"},
                            "text": {"field": "code", "mode": "field"},
                            "showLegend": True,
                        },
                        "tooltip": True,
                    }
                ],
                "tooltip": {"mode": "details"},
            },
            overrides=[
                by_name(
                    "status_level",
                    **{
                        # Colours of the status levels above (not indicator thresholds).
                        "color": {"mode": "thresholds"},
                        "thresholds": {
                            "mode": "absolute",
                            "steps": [
                                {"color": "green", "value": None},
                                {"color": "orange", "value": 1},
                                {"color": "red", "value": 2},
                                {"color": "blue", "value": 3},
                                {"color": "#8e8e8e", "value": 4},
                            ],
                        },
                    },
                ),
                by_name("value", unit="percentunit", decimals=1),
            ],
        ),
        12,
        14,
    )
    lay.add(
        panel(
            "stat",
            "Nation: specialised palliative care ($period_type, latest period)",
            [
                _sql(
                    org,
                    f"""SELECT {_pivot(SPEC_CARE + ("spec_unmet_share",), (("value", ""),))}
                    FROM {latest} l
                    WHERE l.scope_type = 'nation' AND l.scope_code = 'SE'
                      AND l.breakdown = 'all' AND l.period_type = '$period_type'
                      AND l.indicator_id IN ({_in(SPEC_CARE + ("spec_unmet_share",))})""",
                )
            ],
            description="Need = 25 % of official deaths; received = deaths with specialised "
            "palliative care or consult support; unmet = need - received (can be negative).",
            unit="none",
            decimals=0,
            overrides=[by_name("spec_unmet_share", unit="percentunit", decimals=1)],
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
                "colorMode": "none",
                "graphMode": "none",
                "textMode": "value_and_name",
            },
        ),
        12,
        5,
    )
    lay.add(
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
                 AND l.period_type = CASE WHEN i.kind IN ('per_100k', 'availability')
                                          THEN 'month' ELSE '$period_type' END
                ORDER BY i.position""",
            ),
            overrides=[status_cells(), by_regex("/^(value|ci_low|ci_high|target)$/", decimals=3)],
        ),
        12,
        9,
    )
    return dashboard(
        OVERVIEW_UID,
        "palliwatch: national overview",
        lay,
        description="Every region against its targets, a map and the nation's totals. "
        + _layer(org),
        variables=[indicator_var, period_var],
        links=LINKS,
    )


# ---- 2. region drill-down -------------------------------------------------------------------


def _series_filter(scope: str, code: str, breakdown: str = "'$breakdown'") -> str:
    return (
        f"scope_type = '{scope}' AND scope_code = {code} AND indicator_id = '$indicator' "
        f"AND period_type = '$period_type' AND breakdown = {breakdown} "
        "AND $__timeFilter(period_end)"
    )


def region(cat: Catalogue, org: Org) -> JSON:
    lay = Layout()
    reg, reg_title = _region_sql(org), _region_title(org)
    series, latest = org.rel("indicator_series"), org.rel("indicator_latest")
    variables = [
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
    ]
    lay.add(
        timeseries(
            f"${{indicator}} in region {reg_title} (${{breakdown}}, ${{period_type}}): value, "
            "95 % interval, target",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time, value,
                    ci_low AS "95 % low", ci_high AS "95 % high", target
                    FROM {series}
                    WHERE {_series_filter("region", reg)} ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            description="A gap is a suppressed period (n < 5): see the status timeline below. "
            + _layer(org),
            unit="percentunit",
            overrides=interval_band("95 % low", "95 % high") + [target_line("target")],
        ),
        16 if org.exact else 24,
        10,
    )
    if org.exact:  # the alert views are not in the public layer
        lay.add(
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
                overrides=[by_regex("/^(value|ci_low|ci_high|target)$/", decimals=3)],
            ),
            8,
            10,
        )
    lay.add(
        panel(
            "state-timeline",
            "Status per period (suppressed cells marked)",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time, status
                    FROM {series}
                    WHERE {_series_filter("region", reg)} ORDER BY 1""",
                )
            ],
            mappings=status_mappings(),
            options={"showValue": "never", "mergeValues": True},
        ),
        24,
        4,
    )
    lay.row("Breakdowns (latest period)")
    for dim in cat.breakdowns:
        lay.add(
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
                overrides=[status_cells(), by_regex("/^(value|ci_low|ci_high)$/", decimals=3)],
            ),
            8,
            8,
        )
    lay.row("Municipalities")
    lay.add(
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
            overrides=[status_cells(), by_regex("/^(value|ci_low|ci_high)$/", decimals=3)],
        ),
        12,
        10,
    )
    lay.add(
        timeseries(
            "${indicator} in municipality ${municipality}",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time, value,
                    ci_low AS "95 % low", ci_high AS "95 % high", target
                    FROM {series}
                    WHERE {_series_filter("municipality", "'$municipality'", "'all'")}
                    ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            unit="percentunit",
            overrides=interval_band("95 % low", "95 % high") + [target_line("target")],
        ),
        12,
        10,
    )
    lay.row("Specialised palliative care and coverage")
    lay.add(
        timeseries(
            f"Need vs received vs unmet, region {reg_title} (${{period_type}})",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time,
                    max(value) FILTER (WHERE indicator_id = 'spec_need') AS need,
                    max(value) FILTER (WHERE indicator_id = 'spec_received') AS received,
                    max(value) FILTER (WHERE indicator_id = 'spec_unmet') AS unmet
                    FROM {series}
                    WHERE scope_type = 'region' AND scope_code = {reg}
                      AND period_type = '$period_type' AND breakdown = 'all'
                      AND indicator_id IN ({_in(SPEC_CARE)}) AND $__timeFilter(period_end)
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
    lay.add(
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
                        **{"custom.lineStyle": {"fill": "dot", "dash": [2, 6]}},
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
    lay.add(
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
    return dashboard(
        REGION_UID,
        _title(org, "palliwatch: region drill-down"),
        lay,
        description="One region over time: interval bands and targets, breakdowns, "
        "municipalities, need vs received, coverage with completeness"
        + (" and nowcast. " if org.exact else ". ")
        + _layer(org),
        variables=variables,
        links=LINKS,
    )


# ---- 3. structure and white spots -----------------------------------------------------------


def structure(cat: Catalogue, org: Org) -> JSON:
    lay = Layout()
    reg, reg_title = _region_sql(org), _region_title(org)
    # A region's organisation shows its own region only (the tables per region included).
    own = f"WHERE r.region_code = {reg}" if org.region else ""
    own_w = f"WHERE w.region_code = {reg}" if org.region else ""
    lay.add(
        table(
            "Structure per region (latest month)"
            if not org.region
            else f"Structure in region {reg_title} (latest month)",
            _sql(
                org,
                f"""SELECT r.region_code AS code, r.name AS region,
                {_pivot(PER_100K, (("value", ""), ("status", "status")))},
                {_pivot(AVAILABILITY, (("value", ""),))}
                FROM {org.rel("regions")} r
                LEFT JOIN {org.rel("indicator_latest")} l
                  ON l.scope_type = 'region' AND l.scope_code = r.region_code
                 AND l.period_type = 'month' AND l.breakdown = 'all'
                 AND l.indicator_id IN ({_in(PER_100K + AVAILABILITY)})
                {own}
                GROUP BY r.region_code, r.name ORDER BY r.region_code""",
            ),
            description="Beds and specialist FTE per 100 000 residents, coloured against the "
            "EAPC levels in the targets table; availability = share of the region's "
            "municipalities whose residents of any diagnosis and age are covered. "
            + "; ".join(f"{i} = {cat.indicators[i].title_en}" for i in PER_100K + AVAILABILITY),
            overrides=[
                status_cells(),
                by_regex("/per_100k$/", decimals=1),
                by_regex("/_available$/", unit="percentunit", decimals=0),
            ],
        ),
        24,
        12 if not org.region else 5,
    )
    lay.add(
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
    lay.add(
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
                    **{
                        "mappings": bool_mappings("available", "white spot"),
                        "custom.cellOptions": {"type": "color-text"},
                    },
                )
            ],
        ),
        12,
        12,
    )
    lay.add(
        timeseries(
            f"Per 100 000 residents in region {reg_title}, with EAPC targets",
            [
                _sql(
                    org,
                    f"""SELECT period_end::timestamp AS time,
                    {_pivot(PER_100K, (("value", ""), ("target", "target")))}
                    FROM {org.rel("indicator_series")} l
                    WHERE l.scope_type = 'region' AND l.scope_code = {reg}
                      AND l.period_type = 'month' AND l.breakdown = 'all'
                      AND l.indicator_id IN ({_in(PER_100K)}) AND $__timeFilter(l.period_end)
                    GROUP BY period_end ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            overrides=[target_line(f"{i} target") for i in PER_100K],
        ),
        12,
        10,
    )
    lay.add(
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
    return dashboard(
        STRUCTURE_UID,
        _title(org, "palliwatch: structure and white spots"),
        lay,
        description="Services available to residents of every municipality, and beds and "
        "specialists per 100 000 against EAPC levels. " + _layer(org),
        variables=_region_variable(org),
        links=LINKS,
    )


# ---- 4. operations --------------------------------------------------------------------------

SILENCE_DAYS = 7


def operations(org: Org) -> JSON:
    if not org.national:
        raise ValueError("the operations dashboard belongs to the national organisation")
    lay = Layout()
    rate = "[$__rate_interval]"
    lay.add(
        timeseries(
            "Throughput: records consumed and valid per second",
            [
                promql(
                    f"sum by (topic) (rate(palliwatch_records_consumed_total{rate}))",
                    "consumed {{topic}}",
                ),
                promql(
                    f"sum by (topic) (rate(palliwatch_valid_total{rate}))", "valid {{topic}}", "B"
                ),
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Consumer lag (records behind the log end)",
            [promql("sum by (topic) (palliwatch_consumer_lag)", "{{topic}}")],
            unit="none",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Dead letters by reason",
            [
                promql(
                    f"sum by (reason) (increase(palliwatch_dead_letters_total{rate}))",
                    "{{reason}}",
                ),
                promql(
                    f"sum(increase(palliwatch_stale_revisions_total{rate}))",
                    "stale revisions (counted, not dead letters)",
                    "B",
                ),
            ],
            unit="none",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Freshness: time since the newest survey per region",
            [promql("time() - palliwatch_last_survey_submitted_timestamp_seconds", "{{region}}")],
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Sink latency per batch",
            [
                promql(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(palliwatch_sink_batch_seconds_bucket{rate})))",
                    "p50",
                ),
                promql(
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(palliwatch_sink_batch_seconds_bucket{rate})))",
                    "p95",
                    "B",
                ),
            ],
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Sink errors: failed writes, stalled, seconds since last commit",
            [
                promql(f"sum(rate(palliwatch_sink_retries_total{rate}))", "failed writes/s"),
                promql("max(palliwatch_sink_stalled)", "stalled (1 = retrying)", "B"),
                promql(
                    "time() - max(palliwatch_sink_last_success_timestamp_seconds)",
                    "seconds since last commit",
                    "C",
                ),
            ],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Rows written per table",
            [promql(f"sum by (table) (rate(palliwatch_rows_written_total{rate}))", "{{table}}")],
            unit="reqps",
        ),
        12,
        8,
    )
    lay.add(
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
        12,
        8,
    )
    lay.add(
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
    return dashboard(
        OPERATIONS_UID,
        "palliwatch: operations",
        lay,
        description="Is the pipeline healthy: throughput, lag, dead letters, freshness, sink.",
        time_from="now-6h",
        refresh="30s",
        links=LINKS,
    )


BUILDERS = {
    "overview": lambda cat, org: overview(cat, org),
    "region": lambda cat, org: region(cat, org),
    "structure": lambda cat, org: structure(cat, org),
    "operations": lambda cat, org: operations(org),
}


def org_dashboards(org: Org, cat: Catalogue | None = None) -> dict[str, JSON]:
    """File stem -> dashboard model, for one organisation."""
    cat = cat or default_catalogue()
    return {name: BUILDERS[name](cat, org) for name in org.dashboards()}


def all_dashboards(cat: Catalogue | None = None) -> dict[str, dict[str, JSON]]:
    """Organisation key -> file stem -> dashboard model."""
    cat = cat or default_catalogue()
    return {org.key: org_dashboards(org, cat) for org in orgs()}
