"""Prometheus metrics of the worker (one registry: prometheus_client's default)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

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
INDICATOR_ROWS_UNCHANGED = Counter(
    "palliwatch_indicator_rows_unchanged_total",
    "Indicator rows evaluated with the values last written, so not written again",
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
DATABASE_ERRORS = Counter(
    "palliwatch_database_errors_total",
    "Database errors by how the sink treats them: outage, read_only and timeout are retried; "
    "rejected rows are dead-lettered; limit (a configured limit, 53400) and fatal stop the "
    "worker",
    ["kind"],
)
INTERNAL_ERRORS = Counter(
    "palliwatch_internal_errors_total",
    "Records a stage of the worker failed on (each became an internal_error dead letter)",
    ["stage"],
)
LAST_EVENT_TIME = Gauge(
    "palliwatch_last_survey_submitted_timestamp_seconds",
    "submitted_at of the newest valid survey seen, per region",
    ["region"],
)
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 10, 20, 30, 60, 120, 300, 900,
                    3600, 86400)  # fmt: skip
EVALUATION_SECONDS = Histogram(
    "palliwatch_evaluation_seconds",
    "Time to compute and write one headline pass, or one slice of the full evaluation",
    ["pass"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROCESSING_LATENCY = Histogram(
    "palliwatch_processing_latency_seconds",
    "From a survey's submitted_at to its headline indicator rows being durable: breakdown "
    "'all' of its region and the nation, for its month, quarter, year, the current rolling "
    "12 months and today's daily windows (the newest survey of each scope-delta message; "
    "backfilled and late-registered surveys land in the top buckets)",
    buckets=_LATENCY_BUCKETS,
)
EVALUATION_PENDING = Gauge(
    "palliwatch_evaluation_pending_scopes",
    "Scopes of this worker with indicator rows still to write (0: every row is current)",
)
COMPLETE_LATENCY = Histogram(
    "palliwatch_complete_latency_seconds",
    "From a survey's submitted_at to every indicator row it changes being durable "
    "(municipalities, breakdown cells and every later window end included)",
    buckets=_LATENCY_BUCKETS,
)


class _SnapshotCollector:
    """A gauge family whose samples are replaced as a whole (stale label sets disappear).

    Used for values read from Faust (consumer lag, table sizes: streams/faust_compat.py fills
    them) where a partition or table that is no longer assigned must stop being reported, which
    a labelled Gauge would keep forever.
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self._samples: dict[tuple[str, ...], float] = {}

    def replace(self, samples: dict[tuple[str, ...], float]) -> None:
        self._samples = dict(samples)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for labels, value in sorted(self._samples.items()):
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))


CONSUMER_LAG = _SnapshotCollector(
    "palliwatch_consumer_lag",
    "Records in an assigned partition not yet committed by this worker "
    "(partition highwater minus committed offset), refreshed every few seconds",
    ("topic", "partition"),
)
TABLE_KEYS = _SnapshotCollector(
    "palliwatch_table_keys", "Keys held in a Faust state table by this worker", ("table",)
)
REGISTRY.register(CONSUMER_LAG)
REGISTRY.register(TABLE_KEYS)


def _initialise_label_sets() -> None:
    """Export every known topic/reason series at 0 from the start.

    Prometheus cannot see the first increase of a series that appears already at 1: ``rate`` and
    ``increase`` (hence the dead-letter alert) need the zero before it.
    """
    from processors.validation import Reason
    from schemas.topics import CONTRACT_TOPICS

    for spec in CONTRACT_TOPICS:
        RECORDS_CONSUMED.labels(spec.name)
        VALID.labels(spec.name)
        for reason in Reason:
            DEAD_LETTERS.labels(spec.name, reason.value)


_initialise_label_sets()
