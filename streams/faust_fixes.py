"""A fix for faust-streaming 0.15.3's offset bookkeeping on compacted topics.

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


def apply() -> None:
    faust_consumer.Consumer._new_offset = new_offset  # type: ignore[method-assign]
