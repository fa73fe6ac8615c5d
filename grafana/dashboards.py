"""The four palliwatch dashboards: national overview, region drill-down, structure, operations.

SQL panels read only the `published` schema (the datasource logs in as palliwatch_reader).
Traffic lights come from the `status` column the database computes against the target in force
(published.indicator_latest / target_for), so no indicator threshold is written here. A
suppressed cell (n < 5) has a null value and the status 'suppressed', shown as such.
"""

from __future__ import annotations

from processors.catalogue import Catalogue, default_catalogue

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


# ---- 1. national overview -------------------------------------------------------------------


def overview(cat: Catalogue) -> JSON:
    lay = Layout()
    indicator_var = query_variable(
        "indicator",
        "Map indicator",
        "SELECT indicator_id AS __value, title_en AS __text FROM published.indicators "
        "WHERE kind IN ('share', 'coverage', 'unmet_share', 'per_100k', 'availability') "
        "ORDER BY position",
        current="eol_conversation",
    )
    period_var = custom_variable("period_type", "Period", PERIOD_TYPES[:4])

    lay.add(
        table(
            "Traffic lights: regions x key indicators ($period_type, latest period)",
            sql(
                f"""SELECT r.region_code AS "code", r.name AS "region",
                {_pivot(KEY_INDICATORS, (("status", "status"), ("value", ""), ("n", "n")))}
                FROM published.regions r
                LEFT JOIN published.indicator_latest l
                  ON l.scope_type = 'region' AND l.scope_code = r.region_code
                 AND l.breakdown = 'all' AND l.period_type = '$period_type'
                 AND l.indicator_id IN ({_in(KEY_INDICATORS)})
                GROUP BY r.region_code, r.name ORDER BY r.region_code"""
            ),
            description=(
                "Colour = status against the target in force for the region at the period's "
                "end (the region's own target, else the national one; from the targets table). "
                "A suppressed cell (n < 5) shows 'suppressed (n < 5)' and no value. Columns: "
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
                sql(
                    """SELECT r.region_code AS code, r.name AS region, r.seat_lat AS latitude,
                    r.seat_lon AS longitude, l.value, l.n, coalesce(l.status, 'no_data') AS status,
                    CASE coalesce(l.status, 'no_data') WHEN 'meets' THEN 0 WHEN 'warn' THEN 1
                         WHEN 'below' THEN 2 WHEN 'no_target' THEN 3 WHEN 'suppressed' THEN 4
                         ELSE 5 END AS status_level
                    FROM published.regions r
                    LEFT JOIN published.indicator_latest l
                      ON l.scope_type = 'region' AND l.scope_code = r.region_code
                     AND l.indicator_id = '${indicator}' AND l.breakdown = 'all'
                     AND l.period_type = CASE WHEN l.indicator_id LIKE '%per_100k'
                                                OR l.indicator_id LIKE '%_available'
                                              THEN 'month' ELSE '$period_type' END
                    ORDER BY r.region_code"""
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
                sql(
                    f"""SELECT {_pivot(SPEC_CARE + ("spec_unmet_share",), (("value", ""),))}
                    FROM published.indicator_latest l
                    WHERE l.scope_type = 'nation' AND l.scope_code = 'SE'
                      AND l.breakdown = 'all' AND l.period_type = '$period_type'
                      AND l.indicator_id IN ({_in(SPEC_CARE + ("spec_unmet_share",))})"""
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
            sql(
                """SELECT i.title_en AS indicator, l.period_start, l.period_end, l.value,
                l.ci_low, l.ci_high, l.n, l.target_comparator AS comparator, l.target,
                l.status, l.period_complete AS complete
                FROM published.indicators i
                JOIN published.indicator_latest l
                  ON l.indicator_id = i.indicator_id AND l.scope_type = 'nation'
                 AND l.scope_code = 'SE' AND l.breakdown = 'all'
                 AND l.period_type = CASE WHEN i.kind IN ('per_100k', 'availability')
                                          THEN 'month' ELSE '$period_type' END
                ORDER BY i.position"""
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
        description="Every region against its targets, a map and the nation's totals.",
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


def region(cat: Catalogue) -> JSON:
    lay = Layout()
    variables = [
        query_variable(
            "region",
            "Region",
            "SELECT region_code AS __value, region_code || ' ' || name AS __text "
            "FROM published.regions ORDER BY region_code",
            current="01",
        ),
        query_variable(
            "municipality",
            "Municipality",
            "SELECT municipality_code AS __value, municipality_code || ' ' || name AS __text "
            "FROM published.municipalities WHERE region_code = '$region' "
            "ORDER BY municipality_code",
        ),
        query_variable(
            "indicator",
            "Indicator",
            "SELECT indicator_id AS __value, title_en AS __text FROM published.indicators "
            "WHERE kind IN ('share', 'coverage', 'unmet_share') ORDER BY position",
            current="eol_conversation",
        ),
        custom_variable("period_type", "Period", PERIOD_TYPES),
        query_variable(
            "breakdown",
            "Breakdown",
            "SELECT 'all' AS __value UNION SELECT DISTINCT breakdown FROM published.breakdowns "
            "WHERE scope_type = 'region' AND scope_code = '$region' "
            "AND indicator_id = '$indicator' ORDER BY 1",
            current="all",
        ),
    ]
    lay.add(
        timeseries(
            "${indicator} in region ${region} (${breakdown}, ${period_type}): value, 95 % "
            "interval, target",
            [
                sql(
                    f"""SELECT period_end::timestamp AS time, value,
                    ci_low AS "95 % low", ci_high AS "95 % high", target
                    FROM published.indicator_series
                    WHERE {_series_filter("region", "'$region'")} ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            description="A gap is a suppressed period (n < 5): see the status timeline below.",
            unit="percentunit",
            overrides=interval_band("95 % low", "95 % high") + [target_line("target")],
        ),
        16,
        10,
    )
    lay.add(
        table(
            "Alert checks for region ${region}",
            sql(
                """SELECT indicator, period_end, value, ci_low, ci_high, n, min_n, comparator,
                target, severity, breach FROM published.alert_below_target
                WHERE region = '$region' ORDER BY breach DESC, indicator"""
            ),
            description="What the below-target alert rules see: breach = 1 when the whole 95 % "
            "interval is on the wrong side of the target and n >= min_n.",
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
                sql(
                    f"""SELECT period_end::timestamp AS time, status
                    FROM published.indicator_series
                    WHERE {_series_filter("region", "'$region'")} ORDER BY 1"""
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
                sql(
                    f"""SELECT split_part(breakdown, ':', 2) AS "{dim}", period_end, value,
                    ci_low, ci_high, n, status FROM published.indicator_latest
                    WHERE scope_type = 'region' AND scope_code = '$region'
                      AND indicator_id = '$indicator' AND period_type = '$period_type'
                      AND breakdown LIKE '{dim}:%' ORDER BY breakdown"""
                ),
                overrides=[status_cells(), by_regex("/^(value|ci_low|ci_high)$/", decimals=3)],
            ),
            8,
            8,
        )
    lay.row("Municipalities")
    lay.add(
        table(
            "Municipalities of region ${region}: ${indicator} (${period_type}, latest period)",
            sql(
                """SELECT m.municipality_code AS code, m.name AS municipality, l.period_end,
                l.value, l.ci_low, l.ci_high, l.n, coalesce(l.status, 'no_data') AS status
                FROM published.municipalities m
                LEFT JOIN published.municipality_latest l
                  ON l.scope_code = m.municipality_code AND l.indicator_id = '$indicator'
                 AND l.period_type = '$period_type' AND l.breakdown = 'all'
                WHERE m.region_code = '$region' ORDER BY m.municipality_code"""
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
                sql(
                    f"""SELECT period_end::timestamp AS time, value,
                    ci_low AS "95 % low", ci_high AS "95 % high", target
                    FROM published.indicator_series
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
            "Need vs received vs unmet, region ${region} (${period_type})",
            [
                sql(
                    f"""SELECT period_end::timestamp AS time,
                    max(value) FILTER (WHERE indicator_id = 'spec_need') AS need,
                    max(value) FILTER (WHERE indicator_id = 'spec_received') AS received,
                    max(value) FILTER (WHERE indicator_id = 'spec_unmet') AS unmet
                    FROM published.indicator_series
                    WHERE scope_type = 'region' AND scope_code = '$region'
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
    lay.add(
        timeseries(
            "Registry coverage, region ${region} (${period_type}): complete, so far, nowcast",
            [
                sql(
                    """SELECT period_end::timestamp AS time,
                    CASE WHEN period_complete THEN value END AS "coverage (complete period)",
                    CASE WHEN NOT period_complete THEN value END AS "coverage so far",
                    nowcast AS "nowcast (expected final)", target
                    FROM published.indicator_series
                    WHERE scope_type = 'region' AND scope_code = '$region'
                      AND indicator_id = 'registry_coverage' AND period_type = '$period_type'
                      AND breakdown = 'all' AND $__timeFilter(period_end) ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            description="A period is complete 183 days after its end (registration window). "
            "Until then the nowcast scales registrations so far by the region's learned "
            "registration delay.",
            unit="percentunit",
            overrides=[
                target_line("target"),
                by_name(
                    "nowcast (expected final)",
                    **{"custom.lineStyle": {"fill": "dot", "dash": [2, 6]}},
                ),
            ],
        ),
        12,
        9,
    )
    lay.add(
        table(
            "Coverage and unmet share by period, region ${region} (${period_type})",
            sql(
                """SELECT period_start, period_end,
                max(value) FILTER (WHERE indicator_id = 'registry_coverage') AS coverage,
                max(nowcast) FILTER (WHERE indicator_id = 'registry_coverage') AS nowcast,
                max(n) FILTER (WHERE indicator_id = 'registry_coverage') AS official_deaths,
                max(value) FILTER (WHERE indicator_id = 'spec_unmet_share') AS unmet_share,
                max(status) FILTER (WHERE indicator_id = 'spec_unmet_share') AS
                    "unmet share status",
                bool_and(period_complete) AS complete
                FROM published.indicator_series
                WHERE scope_type = 'region' AND scope_code = '$region'
                  AND period_type = '$period_type' AND breakdown = 'all'
                  AND indicator_id IN ('registry_coverage', 'spec_unmet_share')
                  AND $__timeFilter(period_end)
                GROUP BY period_start, period_end ORDER BY period_end DESC"""
            ),
            overrides=[
                status_cells(),
                by_regex("/^(coverage|nowcast|unmet_share)$/", unit="percentunit", decimals=1),
            ],
        ),
        24,
        8,
    )
    return dashboard(
        REGION_UID,
        "palliwatch: region drill-down",
        lay,
        description="One region over time: interval bands and targets, breakdowns, "
        "municipalities, need vs received, coverage with completeness and nowcast.",
        variables=variables,
        links=LINKS,
    )


# ---- 3. structure and white spots -----------------------------------------------------------


def structure(cat: Catalogue) -> JSON:
    lay = Layout()
    variables = [
        query_variable(
            "region",
            "Region",
            "SELECT region_code AS __value, region_code || ' ' || name AS __text "
            "FROM published.regions ORDER BY region_code",
            current="01",
        )
    ]
    lay.add(
        table(
            "Structure per region (latest month)",
            sql(
                f"""SELECT r.region_code AS code, r.name AS region,
                {_pivot(PER_100K, (("value", ""), ("status", "status")))},
                {_pivot(AVAILABILITY, (("value", ""),))}
                FROM published.regions r
                LEFT JOIN published.indicator_latest l
                  ON l.scope_type = 'region' AND l.scope_code = r.region_code
                 AND l.period_type = 'month' AND l.breakdown = 'all'
                 AND l.indicator_id IN ({_in(PER_100K + AVAILABILITY)})
                GROUP BY r.region_code, r.name ORDER BY r.region_code"""
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
        12,
    )
    lay.add(
        table(
            "White spots per region (municipalities without the service)",
            sql(
                """SELECT w.region_code AS code, r.name AS region, count(*) AS municipalities,
                count(*) FILTER (WHERE NOT w.on_call_24_7) AS "no 24/7 on-call line",
                count(*) FILTER (WHERE NOT w.consult_team) AS "no consult team",
                count(*) FILTER (WHERE NOT w.outpatient_clinic) AS "no outpatient clinic",
                count(*) FILTER (WHERE NOT w.specialised_home_care)
                    AS "no specialised home care"
                FROM published.white_spots w JOIN published.regions r USING (region_code)
                GROUP BY w.region_code, r.name ORDER BY w.region_code"""
            ),
        ),
        12,
        12,
    )
    lay.add(
        table(
            "White spots in region ${region}",
            sql(
                """SELECT municipality_code AS code, municipality_name AS municipality,
                on_call_24_7, consult_team, outpatient_clinic, specialised_home_care,
                (NOT on_call_24_7)::int + (NOT consult_team)::int
                  + (NOT outpatient_clinic)::int + (NOT specialised_home_care)::int
                  AS white_spots
                FROM published.white_spots WHERE region_code = '$region'
                ORDER BY white_spots DESC, municipality_code"""
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
            "Per 100 000 residents in region ${region}, with EAPC targets",
            [
                sql(
                    f"""SELECT period_end::timestamp AS time,
                    {_pivot(PER_100K, (("value", ""), ("target", "target")))}
                    FROM published.indicator_series l
                    WHERE l.scope_type = 'region' AND l.scope_code = '$region'
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
            "Open units in region ${region}",
            sql(
                """SELECT name, kind, municipality_code, since, hours, beds,
                accepts_all_diagnoses, accepts_children,
                cardinality(catchment_municipalities) AS catchment_municipalities,
                (staff_fte ->> 'specialist_physicians')::float AS specialist_physicians,
                (staff_fte ->> 'specialist_nurses')::float AS specialist_nurses
                FROM published.unit_state WHERE region_code = '$region' ORDER BY kind, name"""
            ),
        ),
        12,
        10,
    )
    return dashboard(
        STRUCTURE_UID,
        "palliwatch: structure and white spots",
        lay,
        description="Services available to residents of every municipality, and beds and "
        "specialists per 100 000 against EAPC levels.",
        variables=variables,
        links=LINKS,
    )


# ---- 4. operations --------------------------------------------------------------------------

SILENCE_DAYS = 7


def operations() -> JSON:
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
                sql(
                    """SELECT day AS time, region_code AS metric, revisions AS value
                    FROM published.survey_arrivals_daily WHERE $__timeFilter(day)
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
            sql(
                f"""SELECT region, region_name, last_arrival, days_silent, breach
                FROM published.survey_silence({SILENCE_DAYS})
                ORDER BY breach DESC, days_silent DESC NULLS FIRST, region"""
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


def all_dashboards(cat: Catalogue | None = None) -> dict[str, JSON]:
    """File stem -> dashboard model."""
    cat = cat or default_catalogue()
    return {
        "overview": overview(cat),
        "region": region(cat),
        "structure": structure(cat),
        "operations": operations(),
    }
