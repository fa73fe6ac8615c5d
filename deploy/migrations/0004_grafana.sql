-- Grafana alert queries (issue 6) as published views and functions, so that the alert rules are
-- one-line SELECTs that tests can run against the real database as the read-only role.
--
-- Every alert view returns one row per region (and indicator): string columns become alert
-- labels in Grafana, and `breach` (0 or 1) is what the rule's threshold looks at. Rows that do
-- not breach are returned too, so an alert instance resolves instead of going to "no data".

-- Below (or above, for lower-is-better indicators) target, only when statistically clear:
-- the whole 95 % interval lies on the wrong side of the target, the cell is not suppressed and
-- n reaches the catalogue's min_n. Rolling 12 months, breakdown 'all', the latest period; for
-- indicators whose denominator is official deaths (coverage, unmet share) the latest *complete*
-- period, because late registrations make an incomplete period look worse than it will be.
-- severity is 'critical' when the interval also lies beyond the warn level (target_warn).
CREATE OR REPLACE VIEW published.alert_below_target AS
SELECT r.region_code AS region, r.name AS region_name, c.indicator_id AS indicator, c.family,
       v.period_end, v.value, v.ci_low, v.ci_high, v.n, c.min_n, v.suppressed,
       v.period_complete, t.comparator, t.value AS target, t.warn_value AS target_warn,
       CASE WHEN t.warn_value IS NOT NULL AND NOT v.suppressed AND v.n >= c.min_n AND (
                 (t.comparator = '>=' AND coalesce(v.ci_high, v.value) < t.warn_value)
              OR (t.comparator = '<=' AND coalesce(v.ci_low, v.value) > t.warn_value))
            THEN 'critical' ELSE 'warning' END AS severity,
       CASE WHEN NOT v.suppressed AND v.n >= c.min_n AND (
                 (t.comparator = '>=' AND coalesce(v.ci_high, v.value) < t.value)
              OR (t.comparator = '<=' AND coalesce(v.ci_low, v.value) > t.value))
            THEN 1 ELSE 0 END AS breach
FROM regions r
CROSS JOIN indicator_catalogue c
CROSS JOIN LATERAL (
    SELECT iv.*
    FROM indicator_values iv
    WHERE iv.scope_type = 'region' AND iv.scope_code = r.region_code
      AND iv.indicator_id = c.indicator_id AND iv.period_type = 'rolling_12m'
      AND iv.breakdown = 'all'
      AND (c.kind NOT IN ('coverage', 'unmet_share') OR iv.period_complete)
    ORDER BY iv.period_end DESC
    LIMIT 1
) v
CROSS JOIN LATERAL published.target_for(c.indicator_id, 'region', r.region_code,
                                        v.period_end) t
WHERE c.kind IN ('share', 'coverage', 'unmet_share') AND t.value IS NOT NULL;

-- Structural levels (per 100 000 residents) below their EAPC targets, in the latest month.
-- These are counts of beds and staff, not samples: no interval, no min_n.
CREATE OR REPLACE VIEW published.alert_structure AS
SELECT r.region_code AS region, r.name AS region_name, c.indicator_id AS indicator, c.family,
       v.period_end, v.value, t.comparator, t.value AS target,
       'warning'::text AS severity,
       CASE WHEN v.value IS NOT NULL AND (
                 (t.comparator = '>=' AND v.value < t.value)
              OR (t.comparator = '<=' AND v.value > t.value))
            THEN 1 ELSE 0 END AS breach
FROM regions r
CROSS JOIN indicator_catalogue c
JOIN indicator_current v
  ON v.scope_type = 'region' AND v.scope_code = r.region_code
 AND v.indicator_id = c.indicator_id AND v.period_type = 'month' AND v.breakdown = 'all'
CROSS JOIN LATERAL published.target_for(c.indicator_id, 'region', r.region_code,
                                        v.period_end) t
WHERE c.kind = 'per_100k' AND t.value IS NOT NULL;

-- Share of deaths at home (and among specialised home care patients): the latest rolling 12
-- months against the 12 months before them (the rolling window ending 12 months earlier), with a
-- two-proportion z-test. breach when |z| >= 2.5758 (two-sided 1 %: 21 regions x 2 indicators are
-- tested every month, so 5 % would raise about two false alarms a month) and both windows have
-- n >= min_n and are not suppressed.
CREATE OR REPLACE VIEW published.alert_home_death_change AS
WITH pairs AS (
    SELECT r.region_code, r.name AS region_name, c.indicator_id, c.family, c.min_n,
           cur.period_end, cur.numerator AS x1, cur.n AS n1, cur.value AS p1,
           cur.suppressed AS s1, prev.numerator AS x0, prev.n AS n0, prev.value AS p0,
           prev.suppressed AS s0
    FROM regions r
    CROSS JOIN indicator_catalogue c
    JOIN indicator_current cur
      ON cur.scope_type = 'region' AND cur.scope_code = r.region_code
     AND cur.indicator_id = c.indicator_id AND cur.period_type = 'rolling_12m'
     AND cur.breakdown = 'all'
    LEFT JOIN indicator_values prev
      ON prev.scope_type = 'region' AND prev.scope_code = r.region_code
     AND prev.indicator_id = c.indicator_id AND prev.period_type = 'rolling_12m'
     AND prev.breakdown = 'all'
     AND prev.period_end = (date_trunc('month', cur.period_end) - interval '11 months'
                            - interval '1 day')::date
    WHERE c.family = 'place_of_death' AND c.kind = 'share'
), tested AS (
    SELECT p.*,
           CASE WHEN NOT p.s1 AND NOT coalesce(p.s0, true) AND p.n1 >= p.min_n
                     AND p.n0 >= p.min_n
                     AND (p.x1 + p.x0) > 0 AND (p.x1 + p.x0) < (p.n1 + p.n0)
                THEN (p.p1 - p.p0) / sqrt(
                         ((p.x1 + p.x0) / (p.n1 + p.n0)::double precision)
                       * (1 - (p.x1 + p.x0) / (p.n1 + p.n0)::double precision)
                       * (1.0 / p.n1 + 1.0 / p.n0))
           END AS z
    FROM pairs p
)
SELECT region_code AS region, region_name, indicator_id AS indicator, family, period_end,
       p1 AS value, p0 AS previous_value, n1 AS n, n0 AS previous_n, z,
       'warning'::text AS severity,
       CASE WHEN abs(z) >= 2.5758 THEN 1 ELSE 0 END AS breach
FROM tested;

-- Regions that have sent no survey for p_days days (by arrival day). A region that has never sent
-- one counts as silent since the first arrival from any region, so it is flagged only while
-- others send: on an empty installation nothing fires (days_silent is then null).
CREATE OR REPLACE FUNCTION published.survey_silence(p_days integer)
RETURNS TABLE (region text, region_name text, last_arrival date, days_silent integer,
               severity text, breach integer)
LANGUAGE sql STABLE AS $fn$
    WITH last AS (
        SELECT region_code, max(day)::date AS last_day, min(day)::date AS first_day
        FROM published.survey_arrivals_daily GROUP BY region_code
    ), silent AS (
        SELECT r.region_code, r.name, l.last_day,
               (current_date - coalesce(l.last_day, (SELECT min(first_day) FROM last)))::integer
                   AS days
        FROM published.regions r
        LEFT JOIN last l ON l.region_code = r.region_code
    )
    SELECT region_code, name, last_day, days, 'warning'::text,
           CASE WHEN days >= p_days THEN 1 ELSE 0 END
    FROM silent
$fn$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palliwatch_reader') THEN
        GRANT SELECT ON published.alert_below_target, published.alert_structure,
                        published.alert_home_death_change TO palliwatch_reader;
        GRANT EXECUTE ON FUNCTION published.survey_silence(integer) TO palliwatch_reader;
    END IF;
END
$$;
