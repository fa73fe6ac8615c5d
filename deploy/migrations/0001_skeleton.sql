-- Walking skeleton: published indicator values and the official deaths they are computed from.
-- Every write is an upsert on the primary key, so a replay or retry never double counts.

CREATE TABLE IF NOT EXISTS indicator_values (
    indicator_id  text        NOT NULL,
    scope_type    text        NOT NULL CHECK (scope_type IN ('nation', 'region', 'municipality')),
    scope_code    text        NOT NULL,
    breakdown     text        NOT NULL DEFAULT 'all',
    period_type   text        NOT NULL,
    period_start  date        NOT NULL,
    period_end    date        NOT NULL,
    value         double precision,
    numerator     double precision,
    denominator   double precision,
    n             integer,
    suppressed    boolean     NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    -- Key order serves the dashboards' series lookups (scope, indicator, period type,
    -- breakdown, then a period range), so no second index on the same columns is needed.
    PRIMARY KEY (scope_type, scope_code, indicator_id, period_type, breakdown, period_end),
    -- A suppressed cell never carries its counts.
    CHECK (NOT suppressed OR (value IS NULL AND numerator IS NULL AND n IS NULL))
);


CREATE TABLE IF NOT EXISTS official_deaths (
    region_code   text        NOT NULL,
    month         date        NOT NULL,   -- first day of the month
    deaths        integer     NOT NULL CHECK (deaths >= 0),
    source        text        NOT NULL,
    published_at  timestamptz NOT NULL,
    PRIMARY KEY (region_code, month)
);
