"""The framework's ceiling, measured in the pipeline bench's run: a Faust worker that does no work
of ours, reading the same survey topic with the worker's settings and batch size.

- ``consume``: every record read through ``take_events`` and counted;
- ``forward``: and, per record, what the pipeline cannot batch away under its contracts: one
  forward to a topic (the worker's `.valid` forward) and one changelog record (its person
  state's).

Run as ``python -m streams.tooling.bench_ceiling MODE TOPIC EXPECTED OUT`` with the bench
worker's environment; it writes {"records": n, "seconds": s} to OUT and exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import faust

from processors.flow import BATCH_WITHIN_S, SURVEY_BATCH
from streams import faust_compat, kafka_clients
from streams.settings import load


def main(mode: str, topic_name: str, expected: int, out: Path) -> None:
    settings = load()
    faust_compat.apply()  # the Faust the worker runs (its idempotent producer included)
    app = faust.App(
        # Under the bench's app id: the bench deletes what its run made (kafka_admin.run_topics).
        f"{settings.app_id}-ceiling-{mode}-{uuid.uuid4().hex[:6]}",
        **kafka_clients.faust_app_settings(settings),
        datadir=str(settings.state_dir / "faust-ceiling"),
        web_enabled=False,
    )
    source = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", internal=False)  # fmt: skip
    forward = app.topic(f"{app.conf.id}-forward", key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw", internal=True,
                        partitions=settings.partitions)  # fmt: skip
    # A table write is a changelog record sent (Faust's tables do not take writes from
    # ``take_events`` batches, so the record is sent directly, as the table would).
    changelog = app.topic(f"{app.conf.id}-people-changelog", key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw", internal=True,
                          partitions=settings.partitions)  # fmt: skip
    seen = 0
    first: float | None = None

    @app.agent(source)
    async def ceiling(stream: Any) -> None:
        nonlocal seen, first
        if mode == "forward":
            # Only topics an agent reads are made at startup.
            await forward.maybe_declare()
            await changelog.maybe_declare()
        async for events in stream.take_events(SURVEY_BATCH, within=BATCH_WITHIN_S):
            if first is None:
                first = time.perf_counter()
            if mode == "forward":
                for event in events:
                    forward.send_soon(key=event.key, value=event.value)
                    changelog.send_soon(key=event.key, value=event.value[:64])
            seen += len(events)
            if seen >= expected:
                await app.producer.flush()
                elapsed = time.perf_counter() - first
                out.write_text(json.dumps({"records": seen, "seconds": elapsed}))
                os._exit(0)  # a measurement, not a service: no orderly shutdown needed

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
