"""The aggregation: scope messages applied to scope-month state, then the headline rows and the
full evaluation in slices, when processors/flow.Schedule says they are due."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from processors import flow, metrics
from processors.aggregate import Aggregator
from processors.core import IndicatorValue
from processors.engine import NATION
from processors.written import Written
from streams import faust_compat
from streams.agents.assignment import assignment, backlog
from streams.agents.effects import catalogue, observe, write_indicators
from streams.app import app, scope_months, scope_topic, settings
from streams.failures import guarded, inject

STAGE = "aggregate_scopes"


async def write_changed(
    written: Written, rows: list[IndicatorValue], official: list[flow.OfficialRow]
) -> None:
    """Rows whose values differ from what this worker last wrote (processors/written.py),
    marked once durable."""
    fresh, marks = written.changed(rows)
    metrics.INDICATOR_ROWS_UNCHANGED.inc(len(rows) - len(fresh))
    await write_indicators(fresh, official)
    written.mark(marks)


@app.agent(scope_topic)
@guarded(STAGE)
async def aggregate_scopes(stream: Any) -> None:
    agg = Aggregator(scope_months, catalogue())
    plan = flow.Schedule()
    written = Written()
    official_rows: list[flow.OfficialRow] = []
    seen = assignment.generation
    # The evaluation date comes from the clock's ticks (one source for every worker); before
    # the first tick, from this worker's clock.
    as_of = settings.as_of()
    async for events in stream.take_events(flow.SCOPE_BATCH, within=flow.BATCH_WITHIN_S):
        if seen != assignment.generation:
            # A rebalance: what is held in memory may be stale, and some scopes may be another
            # worker's now.
            seen = assignment.generation
            plan.drop()
            agg.forget([scope for scope in flow.ALL_SCOPES if assignment.owns(scope)])
            written.forget()
        for event in events:
            scope = event.key.decode()
            if not assignment.owns(scope):
                # Read before the rebalance, from a partition revoked since: not committed, so
                # its new owner reads it again.
                continue
            # Internal messages: any failure applying one is a bug, not the record's fault, and
            # may leave the scope half-applied in memory, so it stops the worker (a restart
            # rebuilds from the changelog; deltas carry positions, none counts twice).
            inject(STAGE, "record")
            message = flow.decode(event.value)
            flow.apply(agg, scope, event.message.offset, message)
            if isinstance(message, flow.SurveyDeltas):
                plan.arrived(message.submitted)
            elif isinstance(message, flow.OfficialDeaths) and scope != NATION:
                official_rows.append(message.row())
            elif isinstance(message, flow.Tick):
                as_of = message.as_of  # the one clock: the leader's ticks
        metrics.REDELIVERED_DELTAS.inc(agg.redelivered)
        agg.redelivered = 0
        inject(STAGE, "batch")  # mid-batch: applied in memory, not committed
        agg.commit()
        behind = backlog()
        if plan.headline_due(bool(agg.fresh), behind):
            with metrics.EVALUATION_SECONDS.labels("headline").time():
                await write_changed(written, agg.evaluate_headline(as_of), official_rows)
            official_rows = []
            observe(metrics.PROCESSING_LATENCY, plan.headline_written())
        plan.start_if_due(time.monotonic(), agg.has_work(), behind, agg.scopes_with_work)
        started = time.monotonic()
        writing: asyncio.Task[None] | None = None
        # A rebalance ends the slice; the job is dropped at the next batch.
        while seen == assignment.generation and plan.slicing(
            started, time.monotonic(), faust_compat.waiting(stream) > 0
        ):
            # Computed while the previous chunk is written.
            rows = plan.next_chunk(
                functools.partial(agg.evaluate_scope_chunks, as_of=as_of, max_rows=flow.SLICE_ROWS)
            )
            if writing is not None:
                await writing
                writing = None
            if rows is None:  # the scope is done and its rows durable
                agg.commit()  # its pending marks, cleared
                continue
            writing = asyncio.ensure_future(write_changed(written, rows, official_rows))
            official_rows = []
            await asyncio.sleep(0)  # let the write send its batch before computing the next
        if writing is not None:
            await writing
        if plan.active:
            metrics.EVALUATION_SECONDS.labels("full").observe(time.monotonic() - started)
        completed = plan.end_slice(started, time.monotonic())
        if completed is not None:
            observe(metrics.COMPLETE_LATENCY, completed)
        if official_rows:
            await write_indicators([], official_rows)
            official_rows = []
        metrics.EVALUATION_PENDING.set(plan.pending(len(agg.scopes_with_work())))
