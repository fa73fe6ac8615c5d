"""Fixes for faust-streaming 0.15.3's offset handling: commits on compacted topics
(``new_offset``) and partitions never committed after a rebalance (``perform_seek``); and its
producer made idempotent outside transactions too (``_idempotent_settings``).

Faust commits a partition up to the first gap in the offsets its agents acked, counting as acked
the holes it saw while fetching (offsets that compaction removed). Around those holes its
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

from typing import Any

from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka


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


def _idempotent_settings(self: Any) -> dict[str, Any]:
    """Faust's producer asks for idempotence only inside transactions; ours always does: a
    send retried after a lost acknowledgement (a broker failing over) is then written once."""
    return {"acks": "all", "enable_idempotence": True}


def apply() -> None:
    faust_aiokafka.Producer._settings_extra = _idempotent_settings  # type: ignore[method-assign]
    faust_consumer.Consumer._new_offset = new_offset  # type: ignore[method-assign]
    faust_consumer.ThreadDelegateConsumer.perform_seek = perform_seek  # type: ignore[method-assign]
