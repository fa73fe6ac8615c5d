-- Storage: facts, reference data, targets with history, alert state, TimescaleDB-first with a
-- plain PostgreSQL fallback, and the published schema that the read-only role sees.

-- Indicator values gain interval, target, status and completeness columns.
ALTER TABLE indicator_values
    ADD COLUMN IF NOT EXISTS ci_low double precision,
    ADD COLUMN IF NOT EXISTS ci_high double precision,
    ADD COLUMN IF NOT EXISTS period_complete boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS nowcast double precision;

-- Validated surveys as pseudonymous facts (drill-down and the batch oracle). The latest applied
-- revision per survey; person_ref stays here and is never in a published view.
CREATE TABLE IF NOT EXISTS surveys (
    survey_id          text PRIMARY KEY,
    revision           integer NOT NULL CHECK (revision >= 1),
    status             text NOT NULL CHECK (status IN ('active', 'withdrawn')),
    submitted_at       timestamptz NOT NULL,
    unit_id            text NOT NULL,
    region_code        text NOT NULL,
    municipality_code  text NOT NULL,
    person_ref         text NOT NULL CHECK (person_ref ~ '^[0-9a-f]{64}$'),
    date_of_death      date NOT NULL,
    sex                text NOT NULL,
    age_years          smallint NOT NULL,
    ses_quintile       smallint,
    diagnosis_group    text NOT NULL,
    expected_death     boolean NOT NULL,
    place_of_death     text NOT NULL,
    care_setting       text NOT NULL,
    palliative_consult boolean NOT NULL,
    measures           jsonb NOT NULL,
    stored_at          timestamptz NOT NULL DEFAULT now()
);
-- Surveys are corrected in place (a correction may move the date of death), so the table is
-- keyed by survey_id alone and is not a hypertable; BRIN keeps range scans by date cheap.
CREATE INDEX IF NOT EXISTS surveys_death_brin ON surveys USING brin (date_of_death);
CREATE INDEX IF NOT EXISTS surveys_region_death ON surveys (region_code, date_of_death);

-- Arrivals: one row per admitted revision, append-only, the time series for freshness and
-- throughput (a hypertable with a continuous aggregate under TimescaleDB).
CREATE TABLE IF NOT EXISTS survey_arrivals (
    submitted_at timestamptz NOT NULL,
    region_code  text NOT NULL,
    survey_id    text NOT NULL,
    revision     integer NOT NULL,
    PRIMARY KEY (survey_id, revision, submitted_at)
);

-- Care-unit events over time; unit_state (below) is the state on any date.
CREATE TABLE IF NOT EXISTS unit_events (
    unit_id                  text NOT NULL,
    effective_date           date NOT NULL,
    event                    text NOT NULL CHECK (event IN ('upsert', 'closed')),
    region_code              text NOT NULL,
    municipality_code        text NOT NULL,
    name                     text NOT NULL,
    kind                     text NOT NULL,
    catchment_municipalities text[] NOT NULL,
    beds                     integer NOT NULL,
    hours                    text NOT NULL,
    accepts_all_diagnoses    boolean NOT NULL,
    accepts_children         boolean NOT NULL,
    max_prognosis_months     integer,
    written_mandate          boolean NOT NULL,
    staff_fte                jsonb NOT NULL,
    PRIMARY KEY (unit_id, effective_date)
);

CREATE TABLE IF NOT EXISTS regions (
    region_code     text PRIMARY KEY,
    name            text NOT NULL,
    population_2024 integer NOT NULL,
    deaths_2024     integer NOT NULL,
    seat            text NOT NULL,
    seat_lat        double precision NOT NULL,
    seat_lon        double precision NOT NULL
);

CREATE TABLE IF NOT EXISTS municipalities (
    municipality_code text PRIMARY KEY,
    name              text NOT NULL,
    region_code       text NOT NULL REFERENCES regions (region_code)
);

CREATE TABLE IF NOT EXISTS population (
    municipality_code text NOT NULL,
    year              integer NOT NULL,
    population        integer NOT NULL CHECK (population >= 0),
    PRIMARY KEY (municipality_code, year)
);

-- Targets keep their history: a new valid_from adds a row; valid_to is derived (targets_history).
CREATE TABLE IF NOT EXISTS targets (
    indicator_id text NOT NULL,
    scope        text NOT NULL,      -- 'national' or a region code
    comparator   text NOT NULL CHECK (comparator IN ('>=', '<=')),
    value        double precision NOT NULL,
    warn_value   double precision,
    valid_from   date NOT NULL,
    source       text NOT NULL,
    PRIMARY KEY (indicator_id, scope, valid_from)
);

CREATE TABLE IF NOT EXISTS alert_state (
    rule_id        text NOT NULL,
    scope_code     text NOT NULL,
    indicator_id   text NOT NULL,
    state          text NOT NULL CHECK (state IN ('ok', 'pending', 'firing', 'no_data')),
    severity       text,
    since          timestamptz NOT NULL,
    last_evaluated timestamptz NOT NULL,
    value          double precision,
    target         double precision,
    PRIMARY KEY (rule_id, scope_code, indicator_id)
);

-- The latest period of every scope x indicator x period type x breakdown, maintained by the
-- sink in the same transaction as indicator_values: the national overview reads ~500 rows
-- instead of finding the latest among millions.
CREATE TABLE IF NOT EXISTS indicator_current (LIKE indicator_values INCLUDING DEFAULTS
                                              INCLUDING CONSTRAINTS);
ALTER TABLE indicator_current DROP CONSTRAINT IF EXISTS indicator_current_pkey;
ALTER TABLE indicator_current
    ADD PRIMARY KEY (scope_type, scope_code, indicator_id, period_type, breakdown);

-- Rebuilds indicator_current from indicator_values (after a bulk load or a repair).
CREATE OR REPLACE FUNCTION refresh_indicator_current() RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
BEGIN
    DELETE FROM indicator_current;
    INSERT INTO indicator_current
    SELECT DISTINCT ON (scope_type, scope_code, indicator_id, period_type, breakdown) *
    FROM indicator_values
    ORDER BY scope_type, scope_code, indicator_id, period_type, breakdown, period_end DESC;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

-- The primary key (scope, indicator, period type, breakdown, period end) serves the series
-- lookups: no further btree index on indicator_values, so writes maintain only the key.

-- TimescaleDB when the server has it; otherwise the same tables with BRIN indexes.
-- Installed is not enough: CREATE EXTENSION ends the session (FATAL, not an error a block could
-- catch) when the library is not in shared_preload_libraries, so that is checked first. Only
-- superusers and pg_read_all_settings may read that setting; for any other role the loader's
-- own setting answers, which exists only in a server that preloaded it.
-- (This block was corrected after release; processors/db.py accepts the original's digest,
-- which had the same effect on every server it could run on.)
DO $$
DECLARE
    preloaded boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        BEGIN
            preloaded := 'timescaledb' = ANY (
                SELECT regexp_replace(btrim(lib, ' "'), '^.*/', '')
                FROM unnest(string_to_array(current_setting('shared_preload_libraries'), ','))
                    AS lib);
        EXCEPTION WHEN insufficient_privilege THEN
            preloaded := current_setting('timescaledb.bgw_launcher_poll_time', true) IS NOT NULL;
        END;
        IF preloaded THEN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
        ELSE
            RAISE WARNING 'timescaledb is installed but not in shared_preload_libraries: using '
                'plain PostgreSQL tables. To use TimescaleDB, add timescaledb to '
                'shared_preload_libraries, restart the server and migrate a new database '
                '(this one stays plain PostgreSQL)';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('indicator_values', 'period_end',
                                  chunk_time_interval => interval '1 year',
                                  migrate_data => true, if_not_exists => true);
        PERFORM create_hypertable('survey_arrivals', 'submitted_at',
                                  chunk_time_interval => interval '7 days',
                                  migrate_data => true, if_not_exists => true);
        EXECUTE 'ALTER TABLE survey_arrivals SET (timescaledb.compress,
                 timescaledb.compress_segmentby = ''region_code'')';
        PERFORM add_compression_policy('survey_arrivals', interval '30 days',
                                       if_not_exists => true);
        PERFORM add_retention_policy('survey_arrivals', interval '2 years',
                                     if_not_exists => true);
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW IF NOT EXISTS survey_arrivals_daily
            WITH (timescaledb.continuous) AS
            SELECT time_bucket(interval '1 day', submitted_at) AS day, region_code,
                   count(*) AS revisions
            FROM survey_arrivals GROUP BY 1, 2 WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('survey_arrivals_daily',
            start_offset => interval '30 days', end_offset => interval '1 hour',
            schedule_interval => interval '15 minutes', if_not_exists => true);
    ELSE
        CREATE INDEX IF NOT EXISTS indicator_values_period_brin
            ON indicator_values USING brin (period_end);
        CREATE INDEX IF NOT EXISTS survey_arrivals_brin
            ON survey_arrivals USING brin (submitted_at);
        CREATE OR REPLACE VIEW survey_arrivals_daily AS
            SELECT date_trunc('day', submitted_at) AS day, region_code, count(*) AS revisions
            FROM survey_arrivals GROUP BY 1, 2;
    END IF;
END $$;

-- ---- the published schema: all the read-only role can see ----------------------------------
CREATE SCHEMA IF NOT EXISTS published;

CREATE OR REPLACE VIEW published.targets_history AS
SELECT indicator_id, scope, comparator, value, warn_value, valid_from,
       lead(valid_from) OVER (PARTITION BY indicator_id, scope ORDER BY valid_from) AS valid_to,
       source
FROM targets;

-- The target in force for an indicator row: the scope's own region target first, else the
-- national one; of those, the latest valid_from on or before the period end.
CREATE OR REPLACE FUNCTION published.target_for(
    p_indicator text, p_scope_type text, p_scope_code text, p_period_end date,
    OUT comparator text, OUT value double precision, OUT warn_value double precision)
-- SECURITY DEFINER: the reader may see targets only through this function and the views.
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
    SELECT t.comparator, t.value, t.warn_value
    FROM public.targets t
    WHERE t.indicator_id = p_indicator
      AND t.scope IN ('national', CASE p_scope_type WHEN 'region' THEN p_scope_code
                                                    WHEN 'municipality' THEN left(p_scope_code, 2)
                                  END)
      AND t.valid_from <= p_period_end
    ORDER BY (t.scope = 'national'), t.valid_from DESC
    LIMIT 1
$fn$;

-- Traffic-light status of a value against its target.
CREATE OR REPLACE FUNCTION published.indicator_status(
    p_value double precision, p_suppressed boolean, p_comparator text,
    p_target double precision, p_warn double precision)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE
        WHEN p_suppressed THEN 'suppressed'
        WHEN p_value IS NULL THEN 'no_data'
        WHEN p_target IS NULL THEN 'no_target'
        WHEN p_comparator = '>=' AND p_value >= p_target THEN 'meets'
        WHEN p_comparator = '<=' AND p_value <= p_target THEN 'meets'
        WHEN p_warn IS NOT NULL AND p_comparator = '>=' AND p_value >= p_warn THEN 'warn'
        WHEN p_warn IS NOT NULL AND p_comparator = '<=' AND p_value <= p_warn THEN 'warn'
        ELSE 'below'
    END
$fn$;

-- Every indicator row with its target and status. Suppressed rows stay suppressed: the table's
-- CHECK constraint guarantees they carry no value and no counts.
CREATE OR REPLACE VIEW published.indicator_series AS
SELECT v.indicator_id, v.scope_type, v.scope_code, v.breakdown, v.period_type, v.period_start,
       v.period_end, v.value, v.numerator, v.denominator, v.n, v.ci_low, v.ci_high,
       v.suppressed, v.period_complete, v.nowcast, v.computed_at,
       t.comparator AS target_comparator, t.value AS target, t.warn_value AS target_warn,
       published.indicator_status(v.value, v.suppressed, t.comparator, t.value, t.warn_value)
           AS status
FROM indicator_values v
LEFT JOIN LATERAL published.target_for(v.indicator_id, v.scope_type, v.scope_code,
                                       v.period_end) t ON true;

-- The latest period per scope x indicator x period type x breakdown, with target and status.
CREATE OR REPLACE VIEW published.indicator_latest AS
SELECT v.indicator_id, v.scope_type, v.scope_code, v.breakdown, v.period_type, v.period_start,
       v.period_end, v.value, v.numerator, v.denominator, v.n, v.ci_low, v.ci_high,
       v.suppressed, v.period_complete, v.nowcast, v.computed_at,
       t.comparator AS target_comparator, t.value AS target, t.warn_value AS target_warn,
       published.indicator_status(v.value, v.suppressed, t.comparator, t.value, t.warn_value)
           AS status
FROM indicator_current v
LEFT JOIN LATERAL published.target_for(v.indicator_id, v.scope_type, v.scope_code,
                                       v.period_end) t ON true;

CREATE OR REPLACE VIEW published.region_series AS
SELECT s.*, r.name AS region_name
FROM published.indicator_series s JOIN regions r ON r.region_code = s.scope_code
WHERE s.scope_type = 'region';

CREATE OR REPLACE VIEW published.breakdowns AS
SELECT * FROM published.indicator_series WHERE breakdown <> 'all';

CREATE OR REPLACE VIEW published.municipality_latest AS
SELECT l.*, m.name AS municipality_name, m.region_code
FROM published.indicator_latest l JOIN municipalities m ON m.municipality_code = l.scope_code
WHERE l.scope_type = 'municipality';

CREATE OR REPLACE VIEW published.regions AS
SELECT region_code, name, population_2024, deaths_2024, seat, seat_lat, seat_lon FROM regions;

CREATE OR REPLACE VIEW published.municipalities AS
SELECT municipality_code, name, region_code FROM municipalities;

CREATE OR REPLACE VIEW published.official_deaths AS
SELECT region_code, month, deaths, source, published_at FROM official_deaths;

-- Unit state on each unit's latest event (closed units drop out).
CREATE OR REPLACE VIEW published.unit_state AS
SELECT unit_id, effective_date AS since, region_code, municipality_code, name, kind,
       catchment_municipalities, beds, hours, accepts_all_diagnoses, accepts_children,
       max_prognosis_months, written_mandate, staff_fte
FROM (
    SELECT DISTINCT ON (unit_id) *
    FROM unit_events
    WHERE effective_date <= current_date
    ORDER BY unit_id, effective_date DESC
) latest
WHERE event = 'upsert';

-- "White spots": per municipality, whether residents of any diagnosis and age have each kind
-- of specialised palliative service available (a unit whose catchment covers them).
CREATE OR REPLACE VIEW published.white_spots AS
SELECT m.municipality_code, m.name AS municipality_name, m.region_code,
       coalesce(bool_or(u.kind = 'on_call_line' AND u.hours = '24_7'), false) AS on_call_24_7,
       coalesce(bool_or(u.kind = 'consult_team'), false) AS consult_team,
       coalesce(bool_or(u.kind = 'outpatient_clinic'), false) AS outpatient_clinic,
       coalesce(bool_or(u.kind = 'specialised_home_care'), false) AS specialised_home_care
FROM municipalities m
LEFT JOIN published.unit_state u
    ON m.municipality_code = ANY (u.catchment_municipalities)
   AND u.accepts_all_diagnoses AND u.accepts_children
GROUP BY m.municipality_code, m.name, m.region_code;

CREATE OR REPLACE VIEW published.alert_state AS
SELECT rule_id, scope_code, indicator_id, state, severity, since, last_evaluated, value, target
FROM alert_state;

CREATE OR REPLACE VIEW published.survey_arrivals_daily AS
SELECT day, region_code, revisions FROM survey_arrivals_daily;

-- The read-only role (created by `palliwatch services up`, or by the deployment) sees only the
-- published schema. It has no grant on public, where person_ref lives.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palliwatch_reader') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM palliwatch_reader;
        GRANT USAGE ON SCHEMA published TO palliwatch_reader;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA published TO palliwatch_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA published TO palliwatch_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA published GRANT SELECT ON TABLES TO palliwatch_reader;
    END IF;
END $$;
