"""Unit events and population feed the structural indicators, all computed at the nation's key
(flow.scopes_for: a few hundred units, one scope holds them all, and catchments may cross
regions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processors import flow
from schemas import topics
from streams.agents.effects import record_failed
from streams.app import app, scope_topic, valid_topics
from streams.failures import guarded, inject


def _make_structure_forward(
    spec: topics.TopicSpec, kind: str, wrap: Callable[[dict[str, Any]], flow.ScopeMessage]
) -> Any:
    model = spec.model
    assert model is not None
    stage = f"structure-{kind}"

    @guarded(stage)
    async def forward(stream: Any) -> None:
        async for event in stream.events():
            try:
                inject(stage, "record")
                record = model.model_validate_json(event.value).model_dump(mode="json")
                message = flow.encode(wrap(record))
            except Exception as exc:
                await record_failed(stage, exc, event)
                continue
            inject(stage, "batch")
            for scope in flow.scopes_for(None):
                scope_topic.send_soon(key=scope.encode(), value=message)

    return forward


app.agent(valid_topics[topics.UNIT_EVENTS.name], name="structure-units")(
    _make_structure_forward(topics.UNIT_EVENTS, "unit", flow.UnitEvent)
)
app.agent(valid_topics[topics.POPULATION.name], name="structure-population")(
    _make_structure_forward(topics.POPULATION, "population", flow.Population)
)
