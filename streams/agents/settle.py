"""One survey per person, strictly increasing revisions per survey (else dead or stale): the
verdicts are processors/flow.settle's; this agent carries them out — person states written,
dead letters sent, the admitted forwarded to `.valid` and their facts stored, and their signed
contributions sent keyed by scope, one message per scope per batch."""

from __future__ import annotations

from typing import Any

from processors import flow, metrics
from schemas import topics
from streams.agents.effects import catalogue, in_hand, send_letter, sink
from streams.app import RECORD_KEYS, app, by_person_topic, people, scope_topic, valid_topics
from streams.failures import guarded, inject

STAGE = "settle_surveys"


def _check() -> None:
    inject(STAGE, "record")


@app.agent(by_person_topic)
@guarded(STAGE)
async def settle_surveys(stream: Any) -> None:
    cat = catalogue()
    label = topics.DEATH_SURVEYS.name
    valid = valid_topics[label]
    async for events in stream.take_events(flow.SETTLE_BATCH, within=flow.BATCH_WITHIN_S):
        in_hand["settle"] = sum(len(e.value) for e in events) // 1000  # ~1 kB a survey
        batch = [(e.message.partition, e.message.offset, e.value) for e in events]
        done = flow.settle(batch, people.get, cat, RECORD_KEYS, check=_check)
        for person, packed in done.states.items():
            people[person] = packed
        for letter in done.letters:
            await send_letter(STAGE, letter)
        metrics.STALE_REVISIONS.inc(done.stale)
        metrics.REDELIVERED_DELTAS.inc(done.redelivered)
        metrics.VALID.labels(label).inc(done.applied)
        for region, t in done.last_event.items():
            metrics.LAST_EVENT_TIME.labels(region).set(t)
        for key, raw in done.forward:
            valid.send_soon(key=key, value=raw)
        inject(STAGE, "batch")  # mid-batch: states written, facts and deltas not
        rejected = await sink("facts-surveys").write_records([s for s, _, _ in done.facts])
        for letter in done.rejected_facts(rejected):
            await send_letter(STAGE, letter)
        for scope, message in done.scope_messages():
            scope_topic.send_soon(key=scope.encode(), value=flow.encode(message))
        in_hand["settle"] = 0
