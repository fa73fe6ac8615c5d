-- TimescaleDB's arrivals aggregate (issue 16): complete and current, and readable by the public
-- role without any table grant.
--
-- 0005 created survey_arrivals_daily WITH NO DATA and materialized_only, refreshed over the last
-- 30 days only: right after a write it was empty, and after the policy it held whole days of
-- the last 30 days and nothing older (575 of 7 062 day-region rows after a 12-month backfill).
-- Now it is real-time (the days past the last refresh are aggregated from the arrivals at query
-- time) and its policy refreshes the whole history: a refresh only recomputes the buckets that
-- writes have invalidated since the last one, so that is cheap, and days older than 30 days
-- that arrive late (a backfill, a replay) are materialized too instead of being left out.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        ALTER MATERIALIZED VIEW survey_arrivals_daily SET (timescaledb.materialized_only = false);
        PERFORM remove_continuous_aggregate_policy('survey_arrivals_daily', if_exists => true);
        PERFORM add_continuous_aggregate_policy('survey_arrivals_daily',
            start_offset => NULL, end_offset => interval '1 hour',
            schedule_interval => interval '15 minutes');
        -- Materialize what is there at the next scheduler tick, not in 15 minutes (a refresh
        -- cannot run inside the migration's transaction). Until then the real-time part reads
        -- every day past the watermark from the arrivals.
        PERFORM alter_job(j.job_id, next_start => now())
        FROM timescaledb_information.jobs j
        WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
          AND j.hypertable_name = (
              SELECT materialization_hypertable_name
              FROM timescaledb_information.continuous_aggregates
              WHERE view_schema = 'public' AND view_name = 'survey_arrivals_daily');
    END IF;
END $$;

-- The public arrivals, computed with the owner's rights. A real-time aggregate checks the
-- *querying* role's SELECT on the aggregate itself (its watermark function does, also inside a
-- view), and the public role must not be granted anything in schema public (0005). This
-- function returns only what the public view showed (perturbed, small days suppressed), so
-- calling it directly reveals nothing more. Same definition on plain PostgreSQL, where
-- survey_arrivals_daily is a plain view.
CREATE OR REPLACE FUNCTION published.survey_arrivals_daily_rows()
RETURNS TABLE (day timestamptz, region_code text, revisions bigint, suppressed boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
    SELECT day, region_code, CASE WHEN NOT suppressed THEN perturbed END, suppressed
    FROM (
        SELECT a.day, a.region_code, x.p AS perturbed,
               (a.keyed < a.revisions OR a.revisions < 5 OR x.p < 5) AS suppressed
        FROM public.survey_arrivals_daily a
        CROSS JOIN LATERAL (SELECT public.ckm_perturb(a.revisions, a.key_sum) AS p) x
    ) d
$fn$;

CREATE OR REPLACE VIEW published.survey_arrivals_daily AS
SELECT day, region_code, revisions, suppressed FROM published.survey_arrivals_daily_rows();
