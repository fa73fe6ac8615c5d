"""What the agents share: dead letters, the database sinks, the batches held in hand."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust
import orjson

from processors import metrics
from processors.catalogue import Catalogue, default_catalogue
from processors.core import IndicatorValue
from processors.flow import Letter, OfficialRow
from processors.sink import INDICATORS as INDICATORS_SPEC
from processors.sink import OFFICIAL_DEATHS as OFFICIAL_DEATHS_SPEC
from processors.sink import Sink, indicator_row
from processors.validation import DeadLetter
from streams.app import RECORD_KEYS, catalogue_names, dead_letter_topic, settings
from streams.failures import internal_error

log = logging.getLogger("palliwatch.worker")

# Batches the survey stages hold in hand: read from Kafka (so not in the consumer's backlog) but
# their results not yet sent on. The aggregation counts them as backlog (aggregate.backlog).
in_hand = {"screen": 0, "settle": 0}


def catalogue() -> Catalogue:
    return default_catalogue()


def source(event: faust.EventT) -> tuple[str, int, int]:
    msg = event.message
    return msg.topic, msg.partition, msg.offset


async def send_dead_letter(
    dead: DeadLetter,
    payload: bytes,
    source: tuple[str, int, int],
    key: bytes | None,
) -> None:
    topic, partition, offset = source
    metrics.DEAD_LETTERS.labels(catalogue_names.get(topic, topic), dead.reason.value).inc()
    envelope = dead.envelope(payload, topic, partition, offset, key=key)
    await dead_letter_topic.send(
        key=f"{topic}:{partition}:{offset}".encode(), value=orjson.dumps(envelope)
    )
    # The envelope's detail is already redacted; the payload is never logged.
    log.warning(
        "dead letter %s from %s[%d]@%d: %s",
        dead.reason.value,
        topic,
        partition,
        offset,
        envelope["detail"],
    )


async def send_letter(stage: str, letter: Letter) -> None:
    """A dead letter flow.py decided on; an exception becomes ``internal_error``."""
    why = letter.why
    dead = internal_error(stage, why) if isinstance(why, BaseException) else why
    await send_dead_letter(dead, letter.raw, letter.source, letter.key)


async def record_failed(stage: str, exc: BaseException, event: faust.EventT) -> None:
    """One record's fault: it becomes a dead letter, and the batch goes on."""
    await send_dead_letter(internal_error(stage, exc), event.value or b"", source(event), event.key)


_sinks: dict[str, Sink] = {}


def sink(name: str) -> Sink:
    """One database connection per agent: agents write concurrently."""
    if name not in _sinks:
        _sinks[name] = Sink(
            settings.database_url,
            give_up_after_s=settings.db_retry_seconds,
            statement_timeout_s=settings.db_statement_timeout_seconds,
            record_keys=RECORD_KEYS,
        )
    return _sinks[name]


async def write_indicators(
    values: list[IndicatorValue], official: list[OfficialRow], writer: str = "indicators"
) -> None:
    computed_at = datetime.now(UTC)
    await sink(writer).write(
        [
            (OFFICIAL_DEATHS_SPEC, official),
            (INDICATORS_SPEC, [indicator_row(v, computed_at) for v in values]),
        ]
    )
    metrics.INDICATOR_ROWS.inc(len(values))


def observe(histogram: Any, submitted: list[float]) -> None:
    """Latency from each submitted_at to now, when the rows it fed are durable."""
    durable = datetime.now(UTC).timestamp()
    for t in submitted:
        histogram.observe(max(0.0, durable - t))
