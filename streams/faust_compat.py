"""Every use of faust-streaming's internals, in one place, for the version it was written for
(SUPPORTED): ``apply`` refuses any other. What is read or patched:

- fixes of its offset handling: commits on compacted topics (``new_offset``) and partitions
  never committed after a rebalance (``perform_seek``); and its producer made idempotent outside
  transactions too (``_idempotent_settings``);
- readers of its consumer's bookkeeping: consumer lag (``observe_lag``, into the collectors of
  processors/metrics.py), records not read yet (``unread``), records delivered to a stream and
  not yet taken (``waiting``), and whether the first table recovery finished
  (``recovery_completed``, for /health);
- its aiohttp web driver without its own pages (``PagelessWeb``, streams/web.py);
- tables whose changelog partition comes from their source key (``SourceKeyedTable``,
  ``ScopeTable``; streams/app.py), with aiokafka's partitioner (``key_partition``).

``apply`` is called by streams/worker.py when the worker starts, before the app's consumer or
producer exist; never on import (tests/test_faust_fixes.py compares Faust's originals).

Commits. Faust commits a partition up to the first gap in the offsets its agents acked, counting
as acked the holes it saw while fetching (offsets that compaction removed). Around those holes its
``Consumer._new_offset`` goes wrong: in a reproduction with its own code the ack list ends up
holding offsets twice, and the committed offset creeps forward a few offsets per commit, or
not at all. Measured: in a 1 000 000-survey backfill every
partition of the (compacted) survey topic stayed committed at two past an early hole (9 902 of
258 000) while every record was consumed, so the consumer group never caught up (the lag alert
would fire, a restart would re-read everything) and the ack list kept every offset since.
``tests/test_faust_fixes.py`` reproduces it with Faust's own code.

It also never learns of holes right after offset 0: its fetch loop records a hole only
``if gap > 1 and r_offset``, and an offset of 0 is falsy, so such a partition never commits
past 1.

The replacement does not rely on the recorded holes. Faust hands a partition's records to each
stream in order and tracks a record as unacked when a stream takes it; so when offset X is
acked, every record below X in that partition has been taken, and is acked or still tracked.
A partition can therefore be committed up to its lowest tracked-unacked offset, or one past its
highest acked offset when nothing below that is still unacked.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Container, Mapping
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.exceptions import NotReady
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.web.drivers import aiohttp as aiohttp_driver

from processors import metrics

SUPPORTED = "0.15.3"  # the faust-streaming release every function here was checked against


class UnsupportedFaust(SystemExit):
    """The installed faust-streaming is not the one this module was written for."""


def check_version(found: str | None = None) -> None:
    found = found or importlib.metadata.version("faust-streaming")
    if found != SUPPORTED:
        raise UnsupportedFaust(
            f"palliwatch: streams/faust_compat.py was written for faust-streaming {SUPPORTED}, "
            f"found {found}: check the patched internals against the new release and update "
            "SUPPORTED"
        )


# Upstream: commits stall or go wrong on gaps in the offsets (compacted topics):
# https://github.com/faust-streaming/faust/issues/378 (the consumer never commits a compacted
# topic with gaps, a regression of the fix for #312, https://github.com/faust-streaming/faust/issues/312),
# https://github.com/faust-streaming/faust/issues/606 (wrong offset committed with gaps, open),
# and before the fork https://github.com/robinhood/faust/issues/401.


def new_offset(self: Any, tp: Any) -> int | None:
    """The offset to commit for ``tp``, or None when there is nothing new to commit."""
    acked: list[int] = self._acked[tp]
    if not acked:
        return None
    committed: int | None = self._committed_offset[tp]
    top = max(acked) + 1
    unacked = [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]
    end = min([top, *(o for o in unacked if o < top)])
    if committed is not None and end <= committed:
        # Acks below the committed offset (a record re-read after a rebalance) are done.
        acked[:] = [o for o in acked if o >= committed]
        return None
    acked[:] = sorted({o for o in acked if o >= end})
    index: set[int] = self._acked_index[tp]
    index.difference_update([o for o in index if o < end])
    gaps = self._gap[tp]
    if gaps:
        gaps.chop(0, end)
    return end


# Upstream: records fetched while resuming, before the seek to committed offsets, were lost:
# https://github.com/faust-streaming/faust/issues/216 (fixed for apps without tables by
# https://github.com/faust-streaming/faust/pull/217); related, offsets not committed after a
# partition came back: https://github.com/faust-streaming/faust/issues/318. No upstream issue
# found for partitions that were never committed, which this fix seeks to their beginning.
async def perform_seek(self: Any) -> None:
    """Faust's ``Consumer.perform_seek``, which seeks the stream partitions to their committed
    offsets after a rebalance, plus: partitions with no committed offset are sought to their
    beginning (the ``earliest`` reset the worker is configured with).

    Faust resumes the stream partitions before this seek, and drops what its fetcher reads
    while the flow is still suspended — but marks it read. The seek to the committed offset
    rewinds over that; aiokafka's ``seek_to_committed`` does nothing for a partition that was
    never committed (nor for offset 0), so those records were lost. Seen in the two-worker
    fault test: the survivor inherited a scope partition the killed worker had never
    committed, started reading it at offset 38, and 34 records (region 03's deltas and
    official deaths) were never applied."""
    committed: dict[Any, int | None] = dict(await self.seek_to_committed())
    changelogs = self.app.tables.changelog_topics
    never = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    if never:
        await self._thread.seek_to_beginning(*never)
    self._read_offset.update(
        {
            faust_consumer.ensure_TP(tp): offset if offset is not None and offset >= 0 else None
            for tp, offset in committed.items()
        }
    )
    self._committed_offset.update(
        {
            faust_consumer.ensure_TP(tp): offset if offset else None
            for tp, offset in committed.items()
            if offset is not None
        }
    )


# Upstream: no issue found asking for an idempotent producer outside transactions; the nearest,
# on its transactional (exactly-once) producer: https://github.com/faust-streaming/faust/issues/177
def _idempotent_settings(self: Any) -> dict[str, Any]:
    """Faust's producer asks for idempotence only inside transactions; ours always does: a
    send retried after a lost acknowledgement (a broker failing over) is then written once."""
    return {"acks": "all", "enable_idempotence": True}


def apply() -> None:
    """Check the version, then patch (idempotent: the same functions assigned again)."""
    check_version()
    faust_aiokafka.Producer._settings_extra = _idempotent_settings  # type: ignore[method-assign]
    faust_consumer.Consumer._new_offset = new_offset  # type: ignore[method-assign]
    faust_consumer.ThreadDelegateConsumer.perform_seek = perform_seek  # type: ignore[method-assign]


def applied() -> bool:
    """Whether ``apply`` has patched Faust in this process."""
    return faust_consumer.Consumer.__dict__.get("_new_offset") is new_offset


# ---- readers of the consumer's bookkeeping -------------------------------------------------


async def observe_lag(app: Any, sources: Mapping[str, str]) -> None:
    """Refresh ``palliwatch_consumer_lag`` and ``palliwatch_table_keys`` (processors/metrics.py).

    ``sources`` maps the (namespaced) topic names the agents consume to their metric label.
    Lag is the partition's highwater minus the offset this worker committed (Kafka's "next
    offset to read"); before the first commit on a partition, minus the partition's first
    offset. Only partitions assigned to this worker are reported.
    """
    metrics.TABLE_KEYS.replace({(name,): float(len(table)) for name, table in app.tables.items()})
    try:
        tps = [tp for tp in app.consumer.assignment() if tp.topic in sources]
        highwaters = await app.consumer.highwaters(*tps) if tps else {}
        committed = {tp: app.consumer._committed_offset.get(tp) for tp in highwaters}
        missing = [tp for tp, offset in committed.items() if offset is None]
        if missing:
            committed.update(await app.consumer.earliest_offsets(*missing))
    except NotReady:
        return  # the consumer is not started yet, or is rebalancing: keep the last snapshot
    metrics.CONSUMER_LAG.replace(
        {
            (sources[tp.topic], str(tp.partition)): float(max(0, high - (committed[tp] or 0)))
            for tp, high in highwaters.items()
            if high is not None
        }
    )


def unread(consumer: Any, topics: Container[str]) -> int:
    """Records of ``topics`` in this worker's assigned partitions not read yet, from the
    consumer's latest fetch (no broker round trip); 0 before it starts or while rebalancing."""
    read_offsets = getattr(consumer, "_read_offset", {})  # Faust's record of the last offset read
    total = 0
    try:
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            high = consumer.highwater(tp)
            read = read_offsets.get(tp)
            if high is not None:
                total += max(0, high - (read + 1 if read is not None else 0))
    except Exception:  # not started or rebalancing: treat as caught up
        return 0
    return total


def waiting(stream: Any) -> int:
    """Records already delivered to an agent's stream and not yet taken."""
    try:
        return int(stream.channel.queue.qsize())
    except Exception:
        return 0


def recovery_completed(app: Any) -> bool:
    """The TableManager's Recovery service (faust.tables.recovery) sets ``completed`` once the
    first assignment's tables are restored and never clears it (the type stubs omit it)."""
    return bool(app.tables.recovery.completed.is_set())


def web_built(app: Any) -> bool:
    """Whether ``app.web`` (a cached property of faust.App) was built already."""
    return "web" in vars(app)


class PagelessWeb(aiohttp_driver.Web):
    """Faust's aiohttp server without any of Faust's own pages: only those added with
    ``app.page`` (streams/web.py adds /metrics and /health). The driver's blueprint lists are
    class attributes, emptied here."""

    default_blueprints = ()
    production_blueprints = ()
    debug_blueprints = ()
    optional_blueprints = ()


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, as aiokafka and
    kafka-python compute it)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class SourceKeyedTable(faust.Table):
    """A table whose changelog record for a key goes to the partition its *source* records are
    in, computed here rather than by the producer. A worker then restores exactly the state of
    the partitions it owns, and a table write never asks the producer for the changelog topic's
    metadata (an aiokafka producer that has not seen that topic yet fails the write with a
    TypeError: seen once in four starts on a brand-new broker). ``partition_for_key`` is the hook
    faust.Table's changelog writes call (faust/tables/base.py)."""

    def source_key(self, key: bytes) -> bytes:
        return key

    def partition_for_key(self, key: Any) -> int:
        return key_partition(
            self.source_key(bytes(key)), self.partitions or self.app.conf.topic_partitions
        )


class ScopeTable(SourceKeyedTable):
    """A table whose keys start with ``<scope>|`` and live in their scope's partition."""

    def source_key(self, key: bytes) -> bytes:
        return key.split(b"|", 1)[0]
