"""JSON Schema files generated from the pydantic models (checked in; a test guards drift)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.topics import CONTRACT_TOPICS

SCHEMA_DIR = Path(__file__).resolve().parent / "json"


def _models() -> dict[str, type[BaseModel]]:
    # The topic catalogue pairs each contract topic with its model; read it, don't repeat it.
    return {t.name: t.model for t in CONTRACT_TOPICS if t.model is not None}


MODELS = _models()


def render(topic: str) -> str:
    schema = MODELS[topic].model_json_schema(mode="validation")
    schema["$id"] = f"https://palliwatch.invalid/schemas/{topic}.schema.json"
    schema["title"] = topic
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def path_for(topic: str) -> Path:
    return SCHEMA_DIR / f"{topic}.schema.json"


def export() -> list[Path]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    written = []
    for topic in MODELS:
        path = path_for(topic)
        text = render(topic)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def drifted() -> list[str]:
    """Topics whose checked-in schema file differs from the models."""
    return [
        t
        for t in MODELS
        if not path_for(t).exists() or path_for(t).read_text(encoding="utf-8") != render(t)
    ]
