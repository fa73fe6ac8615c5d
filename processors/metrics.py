"""Prometheus metrics of the worker (one registry: prometheus_client's default)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_CONSUMED = Counter(
    "palliwatch_records_consumed_total", "Records consumed from contract topics", ["topic"]
)
VALID = Counter("palliwatch_valid_total", "Records that passed validation", ["topic"])
DEAD_LETTERS = Counter(
    "palliwatch_dead_letters_total", "Records sent to the dead-letter topic", ["topic", "reason"]
)
STALE_REVISIONS = Counter(
    "palliwatch_stale_revisions_total",
    "Survey revisions not newer than the one already applied (counted, not re-applied)",
)
INDICATOR_ROWS = Counter(
    "palliwatch_indicator_rows_written_total", "Indicator rows upserted into the database"
)
ROWS_WRITTEN = Counter(
    "palliwatch_rows_written_total", "Rows merged into the database, per table", ["table"]
)
SINK_STALLED = Gauge(
    "palliwatch_sink_stalled", "1 while the sink is retrying a batch the database refused"
)
SINK_LAST_SUCCESS = Gauge(
    "palliwatch_sink_last_success_timestamp_seconds", "When the sink last committed a batch"
)
REDELIVERED_DELTAS = Counter(
    "palliwatch_redelivered_deltas_skipped_total",
    "Region deltas redelivered after a restart whose effect the restored table already held",
)
SINK_SECONDS = Histogram(
    "palliwatch_sink_batch_seconds",
    "Time to make one batch of indicator rows durable",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_RETRIES = Counter("palliwatch_sink_retries_total", "Database write attempts that failed")
LAST_EVENT_TIME = Gauge(
    "palliwatch_last_survey_submitted_timestamp_seconds",
    "submitted_at of the newest valid survey seen, per region",
    ["region"],
)
