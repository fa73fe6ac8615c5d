"""Metrics only: consumer lag of the agents' source partitions and state table sizes."""

from __future__ import annotations

from streams import faust_compat
from streams.app import app, lag_sources


@app.timer(interval=5.0)
async def observe_lag_and_tables() -> None:
    await faust_compat.observe_lag(app, lag_sources)
