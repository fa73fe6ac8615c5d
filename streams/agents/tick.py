"""The clock reaches the aggregation through its own topic: one tick per scope, landing at
whichever worker owns it. The owner then writes what is pending and, when the date moved,
re-evaluates what the new date changes (daily windows, completeness, nowcasts) — with or
without events, and with one writer per scope's state."""

from __future__ import annotations

from processors import flow
from streams.app import app, scope_topic, settings


@app.timer(interval=settings.reevaluate_seconds, on_leader=True)
async def tick_scopes() -> None:
    body = flow.encode(flow.Tick(settings.as_of()))
    for scope in flow.ALL_SCOPES:
        scope_topic.send_soon(key=scope.encode(), value=body)
