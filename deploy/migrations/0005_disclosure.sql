-- Disclosure control (issue 15): a public layer that survives subtraction, and an exact layer
-- for those entitled to it, by region.
--
-- published.*  the public layer (the public reader role, anonymous dashboards): counts perturbed
--              with the Cell Key Method (processors/disclosure.py, docs/indicators.md), no daily
--              rolling windows, no nowcast, arrivals perturbed and suppressed under 5.
-- exact.*      the exact figures and the alert views, for the national registry operator and
--              each region's quality leads: a regional role reads its own region and its
--              municipalities only, filtered by region in the views and by row-level security
--              on the tables (below).
-- Roles, grants and the policies' role names are applied by `db migrate` on every run
-- (processors/access.py, from schemas/audiences.py), so a role created later gets its grants.

-- ---- public figures beside the exact ones -------------------------------------------------
ALTER TABLE indicator_values
    ADD COLUMN IF NOT EXISTS pub_value double precision,
    ADD COLUMN IF NOT EXISTS pub_numerator double precision,
    ADD COLUMN IF NOT EXISTS pub_denominator double precision,
    ADD COLUMN IF NOT EXISTS pub_n integer,
    ADD COLUMN IF NOT EXISTS pub_ci_low double precision,
    ADD COLUMN IF NOT EXISTS pub_ci_high double precision,
    -- Rows written before this migration have no public figures: suppressed until rebuilt.
    ADD COLUMN IF NOT EXISTS pub_suppressed boolean NOT NULL DEFAULT true;
ALTER TABLE indicator_current
    ADD COLUMN IF NOT EXISTS pub_value double precision,
    ADD COLUMN IF NOT EXISTS pub_numerator double precision,
    ADD COLUMN IF NOT EXISTS pub_denominator double precision,
    ADD COLUMN IF NOT EXISTS pub_n integer,
    ADD COLUMN IF NOT EXISTS pub_ci_low double precision,
    ADD COLUMN IF NOT EXISTS pub_ci_high double precision,
    ADD COLUMN IF NOT EXISTS pub_suppressed boolean NOT NULL DEFAULT true;
-- A suppressed public cell carries no public figure.
ALTER TABLE indicator_values ADD CONSTRAINT indicator_values_pub_suppressed CHECK (
    NOT pub_suppressed OR (pub_value IS NULL AND pub_numerator IS NULL AND pub_n IS NULL));
ALTER TABLE indicator_current ADD CONSTRAINT indicator_current_pub_suppressed CHECK (
    NOT pub_suppressed OR (pub_value IS NULL AND pub_numerator IS NULL AND pub_n IS NULL));

-- ---- the perturbation table (seeded from processors/disclosure.py on every migrate) --------
CREATE TABLE IF NOT EXISTS ckm_ptable (
    count_row    integer NOT NULL,   -- counts of at least the last row use the last row
    key_low      bigint NOT NULL,    -- cell keys in [key_low, key_high), units of 2^-32
    key_high     bigint NOT NULL,
    perturbation integer NOT NULL,
    probability  double precision NOT NULL,
    PRIMARY KEY (count_row, key_low)
);

-- The published count of a cell of p_count records whose record keys sum to p_key_sum.
-- SECURITY DEFINER: the public arrivals view calls it with the reader's rights, and the reader
-- has no grant in schema public (the table is no secret: docs/indicators.md prints it).
CREATE OR REPLACE FUNCTION ckm_perturb(p_count bigint, p_key_sum numeric) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
    SELECT CASE WHEN p_count <= 0 THEN p_count ELSE p_count + (
        SELECT t.perturbation FROM ckm_ptable t
        WHERE t.count_row = least(p_count, (SELECT max(count_row) FROM ckm_ptable))
          AND t.key_low <= mod(p_key_sum, 4294967296::numeric)
          AND mod(p_key_sum, 4294967296::numeric) < t.key_high)
    END
$fn$;

-- ---- arrivals carry the record key of their survey ------------------------------------------
ALTER TABLE survey_arrivals ADD COLUMN IF NOT EXISTS record_key bigint;

DROP VIEW IF EXISTS published.survey_arrivals_daily;
DROP FUNCTION IF EXISTS published.survey_silence(integer);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        DROP MATERIALIZED VIEW IF EXISTS survey_arrivals_daily;
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW survey_arrivals_daily
            WITH (timescaledb.continuous) AS
            SELECT time_bucket(interval '1 day', submitted_at) AS day, region_code,
                   count(*) AS revisions, sum(record_key) AS key_sum,
                   count(record_key) AS keyed
            FROM survey_arrivals GROUP BY 1, 2 WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('survey_arrivals_daily',
            start_offset => interval '30 days', end_offset => interval '1 hour',
            schedule_interval => interval '15 minutes', if_not_exists => true);
    ELSE
        CREATE OR REPLACE VIEW survey_arrivals_daily AS
            SELECT date_trunc('day', submitted_at) AS day, region_code, count(*) AS revisions,
                   sum(record_key) AS key_sum, count(record_key) AS keyed
            FROM survey_arrivals GROUP BY 1, 2;
    END IF;
END $$;

-- Public arrivals: perturbed; suppressed when the true or the published count is under 5 (as
-- the shares are), and where a day holds rows stored before record keys existed.
CREATE VIEW published.survey_arrivals_daily AS
SELECT day, region_code,
       CASE WHEN NOT suppressed THEN perturbed END AS revisions, suppressed
FROM (
    SELECT day, region_code, p AS perturbed,
           (keyed < revisions OR revisions < 5 OR p < 5) AS suppressed
    FROM survey_arrivals_daily a
    CROSS JOIN LATERAL (SELECT ckm_perturb(a.revisions, a.key_sum) AS p) x
) d;

-- ---- the public layer's indicator views -----------------------------------------------------
-- Same columns as before, now the public figures. computed_at is left empty: it changes with
-- every exact change, also of a suppressed cell, and would count the arrivals in it. The
-- nowcast is exact-layer only (it is computed from exact daily counts). Daily rolling windows
-- are left out: a day's deaths sit in 30 + 90 + 365 overlapping windows, and averaging that
-- many noisy differences would wear the noise down (docs/indicators.md).
CREATE OR REPLACE VIEW published.indicator_series AS
SELECT v.indicator_id, v.scope_type, v.scope_code, v.breakdown, v.period_type, v.period_start,
       v.period_end, v.pub_value AS value, v.pub_numerator AS numerator,
       v.pub_denominator AS denominator, v.pub_n AS n, v.pub_ci_low AS ci_low,
       v.pub_ci_high AS ci_high, v.pub_suppressed AS suppressed, v.period_complete,
       NULL::double precision AS nowcast, NULL::timestamptz AS computed_at,
       t.comparator AS target_comparator, t.value AS target, t.warn_value AS target_warn,
       published.indicator_status(v.pub_value, v.pub_suppressed, t.comparator, t.value,
                                  t.warn_value) AS status
FROM indicator_values v
LEFT JOIN LATERAL published.target_for(v.indicator_id, v.scope_type, v.scope_code,
                                       v.period_end) t ON true
WHERE v.period_type IN ('month', 'quarter', 'year', 'rolling_12m');

-- The latest *public* period: the latest month-ended one (indicator_current's latest row of a
-- daily window series is not public).
CREATE OR REPLACE VIEW published.indicator_latest AS
SELECT v.indicator_id, v.scope_type, v.scope_code, v.breakdown, v.period_type, v.period_start,
       v.period_end, v.pub_value AS value, v.pub_numerator AS numerator,
       v.pub_denominator AS denominator, v.pub_n AS n, v.pub_ci_low AS ci_low,
       v.pub_ci_high AS ci_high, v.pub_suppressed AS suppressed, v.period_complete,
       NULL::double precision AS nowcast, NULL::timestamptz AS computed_at,
       t.comparator AS target_comparator, t.value AS target, t.warn_value AS target_warn,
       published.indicator_status(v.pub_value, v.pub_suppressed, t.comparator, t.value,
                                  t.warn_value) AS status
FROM indicator_current v
LEFT JOIN LATERAL published.target_for(v.indicator_id, v.scope_type, v.scope_code,
                                       v.period_end) t ON true
WHERE v.period_type IN ('month', 'quarter', 'year', 'rolling_12m');

-- Alerts evaluate on exact figures: their views move to the exact layer.
DROP VIEW IF EXISTS published.alert_below_target;
DROP VIEW IF EXISTS published.alert_structure;
DROP VIEW IF EXISTS published.alert_home_death_change;
DROP VIEW IF EXISTS published.alert_state;

-- ---- the exact layer ------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS exact;

-- The region a scope code belongs to ('SE' for the nation; a municipality's first two digits).
CREATE OR REPLACE FUNCTION exact.scope_region(p_code text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN length(p_code) = 4 THEN left(p_code, 2) ELSE p_code END
$fn$;

-- exact.readable_regions(): the regions the current role may read exactly ('SE' for the
-- nation). Made by processors/access.py from schemas/audiences.py's role names; this
-- placeholder reads nothing until then.
CREATE OR REPLACE FUNCTION exact.readable_regions() RETURNS text[]
LANGUAGE sql STABLE AS $fn$ SELECT '{}'::text[] $fn$;

-- Who reads which region is decided in the database, twice over:
-- 1. The exact views are owned by the schema owner and filter every row by the *querying*
--    role's regions (current_user inside a view is the reader; security_barrier keeps a
--    reader's own functions from seeing rows before the filter). Readers get no grant on any
--    table: on TimescaleDB a hypertable's chunks inherit its grants but not its row-level
--    security policies, so a table grant would let a reader query the chunks around them.
-- 2. Row-level security policies on the tables hold the same rule, for any role that is ever
--    given a table grant (the owner, that is the worker and migrations, is exempt). TimescaleDB
--    refuses row-level security on a compressed hypertable: there the arrivals rely on 1.
-- (SELECT ...)::text[] makes the role's regions one initplan per query, not a call per row.
ALTER TABLE indicator_values ENABLE ROW LEVEL SECURITY;
ALTER TABLE indicator_current ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_state ENABLE ROW LEVEL SECURITY;
CREATE POLICY exact_by_region ON indicator_values FOR SELECT
    USING (exact.scope_region(scope_code) = ANY ((SELECT exact.readable_regions())::text[]));
CREATE POLICY exact_by_region ON indicator_current FOR SELECT
    USING (exact.scope_region(scope_code) = ANY ((SELECT exact.readable_regions())::text[]));
CREATE POLICY exact_by_region ON alert_state FOR SELECT
    USING (exact.scope_region(scope_code) = ANY ((SELECT exact.readable_regions())::text[]));
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        ALTER TABLE survey_arrivals ENABLE ROW LEVEL SECURITY;
        CREATE POLICY exact_by_region ON survey_arrivals FOR SELECT
            USING (region_code = ANY ((SELECT exact.readable_regions())::text[]));
    END IF;
END $$;

CREATE VIEW exact.indicator_series WITH (security_barrier = true) AS
SELECT v.indicator_id, v.scope_type, v.scope_code, v.breakdown, v.period_type, v.period_start,
       v.period_end, v.value, v.numerator, v.denominator, v.n, v.ci_low, v.ci_high,
       v.suppressed, v.period_complete, v.nowcast, v.computed_at,
       t.comparator AS target_comparator, t.value AS target, t.warn_value AS target_warn,
       published.indicator_status(v.value, v.suppressed, t.comparator, t.value, t.warn_value)
           AS status
FROM indicator_values v
LEFT JOIN LATERAL published.target_for(v.indicator_id, v.scope_type, v.scope_code,
                                       v.period_end) t ON true
WHERE exact.scope_region(v.scope_code) = ANY ((SELECT exact.readable_regions())::text[]);

CREATE VIEW exact.indicator_latest WITH (security_barrier = true) AS
SELECT v.indicator_id, v.scope_type, v.scope_code, v.breakdown, v.period_type, v.period_start,
       v.period_end, v.value, v.numerator, v.denominator, v.n, v.ci_low, v.ci_high,
       v.suppressed, v.period_complete, v.nowcast, v.computed_at,
       t.comparator AS target_comparator, t.value AS target, t.warn_value AS target_warn,
       published.indicator_status(v.value, v.suppressed, t.comparator, t.value, t.warn_value)
           AS status
FROM indicator_current v
LEFT JOIN LATERAL published.target_for(v.indicator_id, v.scope_type, v.scope_code,
                                       v.period_end) t ON true
WHERE exact.scope_region(v.scope_code) = ANY ((SELECT exact.readable_regions())::text[]);

CREATE VIEW exact.region_series WITH (security_barrier = true) AS
SELECT s.*, r.name AS region_name
FROM exact.indicator_series s JOIN regions r ON r.region_code = s.scope_code
WHERE s.scope_type = 'region';

CREATE VIEW exact.breakdowns WITH (security_barrier = true) AS
SELECT * FROM exact.indicator_series WHERE breakdown <> 'all';

CREATE VIEW exact.municipality_latest WITH (security_barrier = true) AS
SELECT l.*, m.name AS municipality_name, m.region_code
FROM exact.indicator_latest l JOIN municipalities m ON m.municipality_code = l.scope_code
WHERE l.scope_type = 'municipality';

-- From the arrivals themselves (a continuous aggregate cannot be filtered by role), for the
-- last days a dashboard shows.
CREATE VIEW exact.survey_arrivals_daily WITH (security_barrier = true) AS
SELECT date_trunc('day', submitted_at) AS day, region_code, count(*) AS revisions
FROM survey_arrivals
WHERE region_code = ANY ((SELECT exact.readable_regions())::text[])
GROUP BY 1, 2;

CREATE VIEW exact.alert_state WITH (security_barrier = true) AS
SELECT rule_id, scope_code, indicator_id, state, severity, since, last_evaluated, value, target
FROM alert_state
WHERE exact.scope_region(scope_code) = ANY ((SELECT exact.readable_regions())::text[]);

-- The alert views of 0004, on the exact figures (same columns).
CREATE VIEW exact.alert_below_target WITH (security_barrier = true) AS
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
WHERE c.kind IN ('share', 'coverage', 'unmet_share') AND t.value IS NOT NULL
  AND r.region_code = ANY ((SELECT exact.readable_regions())::text[]);

CREATE VIEW exact.alert_structure WITH (security_barrier = true) AS
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
WHERE c.kind = 'per_100k' AND t.value IS NOT NULL
  AND r.region_code = ANY ((SELECT exact.readable_regions())::text[]);

CREATE VIEW exact.alert_home_death_change WITH (security_barrier = true) AS
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
      AND r.region_code = ANY ((SELECT exact.readable_regions())::text[])
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

-- Regions that have sent no survey for p_days days (see 0004), on exact arrivals: a regional
-- role sees its own region only. Runs as the caller: the views it reads do the filtering.
CREATE OR REPLACE FUNCTION exact.survey_silence(p_days integer)
RETURNS TABLE (region text, region_name text, last_arrival date, days_silent integer,
               severity text, breach integer)
LANGUAGE sql STABLE AS $fn$
    WITH last AS (
        SELECT region_code, max(day)::date AS last_day, min(day)::date AS first_day
        FROM exact.survey_arrivals_daily GROUP BY region_code
    ), silent AS (
        SELECT r.region_code, r.name, l.last_day,
               (current_date - coalesce(l.last_day, (SELECT min(first_day) FROM last)))::integer
                   AS days
        FROM published.regions r
        LEFT JOIN last l ON l.region_code = r.region_code
        WHERE r.region_code = ANY ((SELECT exact.readable_regions())::text[])
    )
    SELECT region_code, name, last_day, days, 'warning'::text,
           CASE WHEN days >= p_days THEN 1 ELSE 0 END
    FROM silent
$fn$;
