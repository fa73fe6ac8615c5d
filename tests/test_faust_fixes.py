"""Faust's commit bookkeeping on a compacted partition, with Faust's own gap and ack code and
the replacement ``_new_offset``; and the seek after a rebalance (streams.faust_compat)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import random
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.transport.consumer import Consumer
from hypothesis import given, settings
from hypothesis import strategies as st
from intervaltree import IntervalTree

from streams.faust_compat import new_offset, perform_seek

TP = ("topic", 0)
FAUST_NEW_OFFSET = Consumer.__dict__["_new_offset"]
if FAUST_NEW_OFFSET is new_offset:  # the worker's module applied the fix in this process
    raise RuntimeError("tests must see Faust's original _new_offset")


class Taken:
    def __init__(self, offset: int) -> None:
        self.tp, self.offset, self.acked = TP, offset, False


class Bookkeeping:
    """The consumer state Faust's fetch loop, ``ack`` and ``_new_offset`` share."""

    _add_gap = Consumer._add_gap
    _should_commit = Consumer._should_commit

    def __init__(self, new_offset_impl: Any) -> None:
        self._new_offset_impl = new_offset_impl
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._gap: dict[Any, IntervalTree] = defaultdict(IntervalTree)
        self._acked: dict[Any, list[int]] = defaultdict(list)
        self._acked_index: dict[Any, set[int]] = defaultdict(set)
        self._unacked_messages: set[Taken] = set()  # taken by the stream, not acked yet

    def _new_offset(self, tp: Any) -> int | None:
        return self._new_offset_impl(self, tp)

    def take(self, offset: int) -> Taken:
        message = Taken(offset)
        self._unacked_messages.add(message)
        return message

    def ack(self, message: Taken) -> None:  # Consumer.ack
        message.acked = True
        self._unacked_messages.discard(message)
        offset = message.offset
        committed = self._committed_offset[TP]
        if (committed is None or offset >= committed) and offset not in self._acked_index[TP]:
            self._acked_index[TP].add(offset)
            self._acked[TP].append(offset)

    def commit(self) -> None:  # Consumer._filter_committable_offsets + the update after commit
        offset = self._new_offset(TP)
        if offset is not None and self._should_commit(TP, offset):
            self._committed_offset[TP] = offset


def run(impl: Any, offsets: list[int], rng: random.Random, check: Any = None) -> Bookkeeping:
    """Fetch ``offsets`` in chunks (recording holes as Faust's fetch loop does), ack them in
    order in batches, commit now and then; ``check(book, acked_upto)`` after every commit."""
    book = Bookkeeping(impl)

    async def go() -> None:
        last_read: int | None = None
        fetched: list[Taken] = []
        acked_upto = -1  # every offset <= this is acked or a hole
        i = 0
        while i < len(offsets) or fetched:
            for offset in offsets[i : i + rng.randint(1, 300)]:
                if last_read is not None and offset - last_read > 1 and last_read:
                    await book._add_gap(TP, last_read + 1, offset)
                last_read = offset
                fetched.append(book.take(offset))
                i += 1
            n = rng.randint(0, len(fetched)) if i < len(offsets) else len(fetched)
            for message in fetched[:n]:
                book.ack(message)
                acked_upto = message.offset
            fetched = fetched[n:]
            if rng.random() < 0.3 or i >= len(offsets):
                book.commit()
                if check is not None:
                    check(book, acked_upto, fetched)
        book.commit()

    asyncio.run(go())
    return book


def compacted(rng: random.Random, n: int, hole_rate: float) -> list[int]:
    return [o for o in range(n) if rng.random() >= hole_rate]


def test_faust_alone_stops_committing_after_compaction_holes() -> None:
    """The bug: every record acked, the committed offset far behind the end."""
    rng = random.Random(0)
    offsets = compacted(rng, 20_000, 0.035)
    book = run(FAUST_NEW_OFFSET, offsets, random.Random(1))
    assert (book._committed_offset[TP] or 0) < offsets[-1] // 2


def test_the_fix_commits_to_the_end_of_a_compacted_partition() -> None:
    rng = random.Random(0)
    offsets = compacted(rng, 20_000, 0.035)
    book = run(new_offset, offsets, random.Random(1))
    assert book._committed_offset[TP] == offsets[-1] + 1
    assert book._acked[TP] == []  # nothing kept once committed


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 3000),
    hole_rate=st.sampled_from([0.0, 0.01, 0.2, 0.6]),
)
def test_the_fix_never_commits_past_an_unacked_record(seed: int, n: int, hole_rate: float) -> None:
    rng = random.Random(seed)
    offsets = compacted(rng, n, hole_rate)
    if not offsets:
        return

    def check(book: Bookkeeping, acked_upto: int, fetched: list[Taken]) -> None:
        committed = book._committed_offset[TP]
        if committed is not None:
            # Everything below the committed offset is acked (or a hole); the first record not
            # acked yet is at or above it.
            assert committed <= acked_upto + 1
            if fetched:
                assert committed <= fetched[0].offset

    book = run(new_offset, offsets, rng, check)
    assert book._committed_offset[TP] == offsets[-1] + 1


# ---- partitions never committed, after a rebalance --------------------------------------------


class SeekingConsumer:
    """What ``perform_seek`` touches: the committed offsets aiokafka reports (it has sought to
    those > 0 itself), the consumer thread's seek to the beginning, Faust's read offsets."""

    def __init__(self, committed: dict[Any, int | None], changelogs: set[str]) -> None:
        self.committed = committed
        self.sought_to_beginning: list[Any] = []
        self._read_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self.app = type("App", (), {"tables": type("Tables", (), {})()})()
        self.app.tables.changelog_topics = changelogs
        consumer = self

        class Thread:
            async def seek_to_beginning(self, *tps: Any) -> None:
                consumer.sought_to_beginning += tps

        self._thread = Thread()

    async def seek_to_committed(self) -> dict[Any, int | None]:
        return self.committed


def test_partitions_never_committed_are_read_from_their_beginning() -> None:
    """Faust's own ``perform_seek`` leaves a never-committed partition where its fetcher got to
    while the flow was suspended (records it dropped): the fix seeks it to the beginning. A
    committed partition and the tables' changelogs (restored by Faust's recovery) are left
    alone."""
    never = TopicPartition("scope-deltas", 3)
    at_zero = TopicPartition("scope-deltas", 2)
    committed = TopicPartition("scope-deltas", 1)
    changelog = TopicPartition("app-people-changelog", 3)
    consumer = SeekingConsumer(
        {never: None, at_zero: 0, committed: 57, changelog: None}, {"app-people-changelog"}
    )
    asyncio.run(perform_seek(consumer))
    assert sorted(consumer.sought_to_beginning) == sorted([never, at_zero])
    assert consumer._read_offset[never] is None and consumer._read_offset[committed] == 57
    assert consumer._committed_offset[committed] == 57
    assert consumer._committed_offset[never] is None


def test_faust_own_seek_leaves_a_never_committed_partition_where_it_is() -> None:
    """The behaviour the fix replaces (so the test above can fail): Faust's ``perform_seek``
    only asks aiokafka to seek to committed offsets."""
    never = TopicPartition("scope-deltas", 3)
    consumer = SeekingConsumer({never: None}, set())
    asyncio.run(Consumer.__dict__["perform_seek"](consumer))
    assert consumer.sought_to_beginning == []


def test_the_workers_producer_is_idempotent_with_acks_all() -> None:
    """Faust asks aiokafka for idempotence only inside transactions; faust_compat makes every
    producer of the worker idempotent (a send retried after a broker failover is written once)."""
    import faust

    from streams import faust_compat

    faust_compat.apply()
    app = faust.App("palliwatch-test-idempotence", broker="kafka://127.0.0.1:1", producer_acks=-1)

    async def build() -> Any:
        return app.producer._new_producer()

    producer = asyncio.new_event_loop().run_until_complete(build())
    assert producer._txn_manager is not None  # aiokafka's idempotent sequence numbers
    assert producer._sender._acks == -1  # acks=all


def test_the_compat_module_refuses_a_faust_streaming_it_was_not_written_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One line says what to do, and nothing is patched."""
    from streams import faust_compat

    assert importlib.metadata.version("faust-streaming") == faust_compat.SUPPORTED
    faust_compat.check_version()  # the pinned release passes
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.16.0")
    before = Consumer.__dict__["_new_offset"]
    with pytest.raises(SystemExit) as refused:
        faust_compat.apply()
    message = str(refused.value)
    assert message == (
        "palliwatch: streams/faust_compat.py was written for faust-streaming 0.15.3, found "
        "0.16.0: check the patched internals against the new release and update SUPPORTED"
    )
    assert "\n" not in message
    assert Consumer.__dict__["_new_offset"] is before
