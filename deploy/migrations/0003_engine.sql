-- The indicator engine (issue 4): the catalogue's definitions, readable by dashboards.
-- Rows are seeded from processors/catalogue.toml on every migrate (the catalogue is the source
-- of truth; this table is its copy for SQL readers). Default targets are seeded into `targets`
-- as scope 'national' without overwriting targets an operator has set.

CREATE TABLE IF NOT EXISTS indicator_catalogue (
    indicator_id text PRIMARY KEY,
    family       text NOT NULL,
    title_en     text NOT NULL,
    title_sv     text NOT NULL,
    kind         text NOT NULL,
    direction    text NOT NULL CHECK (direction IN ('higher_is_better', 'lower_is_better', 'none')),
    unit         text NOT NULL,
    min_n        integer NOT NULL,
    periods      text[] NOT NULL,
    scopes       text[] NOT NULL,
    breakdowns   text[] NOT NULL,
    position     integer NOT NULL
);

CREATE OR REPLACE VIEW published.indicators AS
SELECT indicator_id, family, title_en, title_sv, kind, direction, unit, min_n, periods, scopes,
       breakdowns, position
FROM indicator_catalogue;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palliwatch_reader') THEN
        GRANT SELECT ON published.indicators TO palliwatch_reader;
    END IF;
END
$$;
