"""Official monthly deaths go to their region and to the nation (the aggregation stores them,
together with the indicators they feed)."""

from __future__ import annotations

from typing import Any

from processors import flow
from schemas import topics
from schemas.models import OfficialDeaths
from streams.agents.effects import record_failed
from streams.app import app, scope_topic, valid_topics
from streams.failures import guarded, inject

STAGE = "apply_official_deaths"


@app.agent(valid_topics[topics.OFFICIAL_DEATHS.name])
@guarded(STAGE)
async def apply_official_deaths(stream: Any) -> None:
    async for event in stream.events():
        try:
            inject(STAGE, "record")
            record = OfficialDeaths.model_validate_json(event.value)
            message = flow.encode(flow.OfficialDeaths(record.model_dump(mode="json")))
        except Exception as exc:
            await record_failed(STAGE, exc, event)
            continue
        inject(STAGE, "batch")
        for scope in flow.scopes_for(record.region_code):
            scope_topic.send_soon(key=scope.encode(), value=message)
